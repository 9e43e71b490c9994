"""The column types LeRobot itself writes in a v3.0 dataset, in one place (formats/lerobot/writer.py writes
through these helpers; docs/lerobot_v3.md has the table, checked against LeRobot 0.4.4).

- Episode stats (meta/episodes/*.parquet, `stats/<feature>/<stat>`): `min` and `max` keep the
  feature's own type (list<bool> for a bool feature such as next.success, list<int64> for the
  index columns frame_index / episode_index / index / task_index, list<double> for float ones);
  mean, std and the quantiles are list<double>; count is list<int64>. Images: (3, 1, 1) nested
  lists of double. LeRobot's merge_datasets concatenates these columns and fails on a mix of
  double and bool ("Cannot mix NumPy dtypes float64 and bool").
- Data parquet: the `huggingface` schema metadata {"info": {"features": ...}} that the
  `datasets` library writes (fixed-size vectors as {"_type": "List", "length": n, "feature":
  Value}, scalars as Value), so `datasets` loads the file with LeRobot's feature types.
- meta/tasks.parquet: task_index plus the task text as the pandas index, whose column pandas
  names `__index_level_0__` (LeRobot builds it as DataFrame({"task_index": ...}, index=tasks)).
"""
from __future__ import annotations

import json

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def _typed(v: np.ndarray, like: np.dtype) -> list:
    """min/max values as LeRobot stores them: bool stays bool, integers stay int64, else float."""
    if like == np.bool_:
        return np.asarray(v, bool).tolist()
    if np.issubdtype(like, np.integer):
        return np.asarray(v, np.int64).tolist()
    return np.asarray(v, np.float64).tolist()


def feature_stats(x: np.ndarray) -> dict[str, list]:
    """x (N, D) or (N,) -> min/max (x's own type) / mean / std / quantiles (double), each a (D,)
    list, and count [N] (int)."""
    x = np.asarray(x)
    x = x.reshape(len(x), -1)
    f = x.astype(np.float64)
    out = {"min": _typed(x.min(0), x.dtype), "max": _typed(x.max(0), x.dtype),
           "mean": f.mean(0).tolist(), "std": f.std(0).tolist()}
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(f, q, axis=0).tolist()
    out["count"] = [int(len(x))]
    return out


def image_stats(frames: np.ndarray, max_frames: int = 100) -> dict[str, list]:
    """(T, H, W, 3) uint8 -> per-channel stats in [0, 1], each shaped (3, 1, 1) as LeRobot does;
    count = the frames used (at most max_frames, evenly spaced)."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int))
    px = frames[idx].reshape(-1, 3).astype(np.float64) / 255.0
    s = feature_stats(px)
    return {k: (v if k == "count" else [[[c]] for c in v]) for k, v in {**s, "count": [int(len(idx))]}.items()}


def aggregate(stats: list[dict[str, list]]) -> dict[str, list]:
    """Combine per-episode stats: min/max exact (type kept), mean/std by the parallel formula,
    quantiles count-weighted (LeRobot's aggregate_stats)."""
    arr = {k: np.stack([np.asarray(s[k], np.float64) for s in stats]) for k in stats[0]}
    like = {k: np.asarray(stats[0][k]).dtype for k in ("min", "max")}
    counts = arr.pop("count").reshape(-1)
    w = counts.reshape((-1,) + (1,) * (arr["mean"].ndim - 1))
    total = counts.sum()
    mean = (arr["mean"] * w).sum(0) / total
    var = ((arr["std"] ** 2 + (arr["mean"] - mean) ** 2) * w).sum(0) / total
    res = {"min": _typed(arr["min"].min(0), like["min"]), "max": _typed(arr["max"].max(0), like["max"]),
           "mean": mean.tolist(), "std": np.sqrt(var).tolist()}
    for k in arr:
        if k.startswith("q"):
            res[k] = ((arr[k] * w).sum(0) / total).tolist()
    res["count"] = [int(total)]
    return res


def hf_feature(ft: dict) -> dict:
    """One LeRobot feature -> its `datasets` Features.to_dict() entry (datasets 4.x)."""
    shape = list(ft["shape"])
    value = {"dtype": ft["dtype"], "_type": "Value"}
    if shape == [1]:
        return value
    if len(shape) == 1:
        return {"feature": value, "length": int(shape[0]), "_type": "List"}
    return {"shape": shape, "dtype": ft["dtype"], "_type": f"Array{len(shape)}D"}


def with_hf_metadata(table, features: dict):
    """The data table with the `huggingface` schema metadata of its (non-video) features."""
    feats = {k: hf_feature(ft) for k, ft in features.items() if ft["dtype"] not in ("video", "image")
             and k in table.column_names}
    meta = dict(table.schema.metadata or {})
    meta[b"huggingface"] = json.dumps({"info": {"features": feats}}).encode()
    return table.replace_schema_metadata(meta)


TASK_INDEX_COLUMN = "__index_level_0__"


def tasks_table(tasks: list[str]):
    """meta/tasks.parquet as LeRobot writes it with pandas: column task_index plus the task text
    as the unnamed pandas index (stored as column __index_level_0__), so pandas.read_parquet
    gives a frame indexed by task."""
    import pyarrow as pa
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      TASK_INDEX_COLUMN: pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": [TASK_INDEX_COLUMN],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": TASK_INDEX_COLUMN, "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
