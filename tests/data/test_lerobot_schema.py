"""The v3 parquet files this project writes have, column by column, the types LeRobot's own
writer gives them (tests/data/lerobot_0.4.4_schema.json: written by LeRobot 0.4.4 with
tests/data/lerobot_schema_probe.py, same features as below). Stats of a bool feature are bool,
of the index columns int64 (LeRobot's merge_datasets fails on a mix with double); the data
parquet carries the `huggingface` features metadata; tasks.parquet names its index as pandas
does. Also: what a truncated or missing file of a v3 folder gives `lara convert`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lara_policy.cli import main as lara
from lara_policy.formats.lerobot import write_episodes
from lara_policy.formats.store import Episode, StoreMeta

LEROBOT = json.loads((Path(__file__).parent / "lerobot_0.4.4_schema.json").read_text())


def _dataset(out: Path) -> Path:
    rng = np.random.default_rng(0)
    meta = StoreMeta(env="check", action_space="ee_delta_xyz_gripper", action_dim=4, state_dim=4, cameras=["front"],
                     image_size=(32, 32), dt=1 / 15, state_names=["a", "b", "c", "d"], phrasings={})
    eps = [Episode(images={"front": rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)},
                   state=rng.normal(size=(12, 4)).astype(np.float32), actions=rng.normal(size=(12, 4)).astype(np.float32),
                   instruction=f"task {e}", task=f"task {e}", seed=e, success=True, source="test",
                   step_success=np.arange(12) > 9, extra={}) for e in range(2)]
    write_episodes(out, meta, iter(eps))
    return out


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("schema") / "v3")


def _columns(path: Path) -> dict[str, str]:
    return {f.name: str(f.type) for f in pq.read_schema(path)}


@pytest.mark.parametrize("part", ["data", "episodes", "tasks"])
def test_columns_have_lerobots_types(ours, part):
    path = {"data": next(ours.glob("data/*/*.parquet")), "episodes": next(ours.glob("meta/episodes/*/*.parquet")),
            "tasks": ours / "meta/tasks.parquet"}[part]
    got, want = _columns(path), dict(LEROBOT[part]["columns"])
    if part == "tasks":
        # pandas 3 (LeRobot's venv) stores the index text as large_string, pandas 2 as string:
        # both read back as the same str index
        want = {k: ("string" if v == "large_string" else v) for k, v in want.items()}
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))
    for col in want:                                      # column by column, with its name in the message
        assert (col, got[col]) == (col, want[col])


def test_bool_and_index_stats_keep_their_type(ours):
    t = pq.read_table(next(ours.glob("meta/episodes/*/*.parquet")))
    assert t.column("stats/next.success/min").to_pylist() == [[False], [False]]
    assert t.column("stats/next.success/max").to_pylist() == [[True], [True]]
    assert t.column("stats/index/max").to_pylist() == [[11], [23]]
    stats = json.loads((ours / "meta/stats.json").read_text())
    assert stats["next.success"]["max"] == [True] and stats["index"]["max"] == [23]
    assert isinstance(stats["next.success"]["mean"][0], float)


def test_data_parquet_huggingface_metadata(ours):
    sch = pq.read_schema(next(ours.glob("data/*/*.parquet")))
    hf = json.loads(sch.metadata[b"huggingface"])
    assert hf["info"]["features"] == LEROBOT["data"]["huggingface"]["features"]


def test_tasks_index_named_as_lerobot(ours):
    sch = pq.read_schema(ours / "meta/tasks.parquet")
    assert json.loads(sch.metadata[b"pandas"])["index_columns"] == LEROBOT["tasks"]["pandas_index_columns"]
    t = pq.read_table(ours / "meta/tasks.parquet")
    assert t.column("__index_level_0__").to_pylist() == ["task 0", "task 1"]
    assert t.column("task_index").to_pylist() == [0, 1]


@pytest.mark.parametrize("damage, message", [
    ("data/chunk-000/file-000.parquet", "cannot read the data (episode 0) parquet file"),
    ("meta/episodes/chunk-000/file-000.parquet", "cannot read the episode metadata parquet file"),
    ("meta/tasks.parquet", "cannot read the tasks parquet file"),
    ("videos/observation.images.front/chunk-000/file-000.mp4", "video"),
    ("meta/info.json", "meta/info.json: missing"),
])
def test_a_damaged_v3_folder_is_one_line_exit_2(ours, tmp_path, capsys, damage, message):
    import shutil
    src = tmp_path / "v3"
    shutil.copytree(ours, src)
    f = src / damage
    if damage.endswith("info.json"):
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])          # a copy cut short
    out = tmp_path / "o.hdf5"
    assert lara(["convert", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lara convert: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert message in err and str(f) in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["v3"]
