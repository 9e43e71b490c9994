"""LeRobotDataset v3.0 in and out: the episode store <-> a LeRobot v3 dataset directory.

The v3 layout (LeRobot's `codebase_version` "v3.0"; docs/lerobot_v3.md has the mapping):

    DIR/meta/info.json                                   fps, features, path templates, counts
    DIR/meta/tasks.parquet                               task (text, the pandas index), task_index
    DIR/meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks,
                                                         data/ and videos/<key>/ chunk+file indices,
                                                         dataset_from/to_index, from/to_timestamp,
                                                         stats/<feature>/<stat>
    DIR/meta/stats.json                                  dataset statistics per feature
    DIR/data/chunk-XXX/file-YYY.parquet                  one row per frame (several episodes a file)
    DIR/videos/<key>/chunk-XXX/file-YYY.mp4              several episodes back to back per file
    DIR/meta/lara.json                                   (ours; LeRobot ignores it) what v3 has no
                                                         field for: task ids, seeds, success, ...

Writing: `write_lerobot(store, DIR)`. Reading: `LeRobotV3Source(DIR)` has the read API of
`EpisodeStore` (`.meta`, `len`, `episode(i)`, iteration over `Episode`, `episode_attrs`, `tasks`,
`summary`, `used_seeds`, context manager), so training reads a v3 directory directly
(`store.open_episode_source`); `read_lerobot(DIR, STORE.hdf5)` converts it into a store.
Only pyarrow and PyAV are needed (LeRobot itself cannot share this venv: it pins torch < 2.8).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from lara_policy.formats.lerobot_schema import (QUANTILES, aggregate, feature_stats, image_stats,  # noqa: F401
                                             tasks_table, with_hf_metadata)
from lara_policy.formats.store import Episode, EpisodeStore, StoreError, StoreMeta, episode_summary

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
SIDECAR = "meta/lara.json"
STATE_KEY, ACTION_KEY, SUCCESS_KEY = "observation.state", "action", "next.success"
IMAGE_PREFIX = "observation.images."
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
VCODECS = ("libsvtav1", "h264", "hevc")          # what LeRobot's encoder accepts
# names for the action vector of known action spaces (else "<action_space>_<i>")
ACTION_NAMES = {("ee_delta_xyz_gripper", 4): ["delta_x", "delta_y", "delta_z", "gripper"]}


class LeRobotError(StoreError):
    """A directory is not a readable LeRobot v3 dataset, or a store cannot be written as one."""


def _pa():
    import pyarrow as pa
    import pyarrow.parquet as pq
    return pa, pq


def camera_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def _camera_name(key: str) -> str:
    """observation.images.wrist -> wrist; observation.image -> image; other.key -> other_key."""
    if key.startswith(IMAGE_PREFIX):
        return key[len(IMAGE_PREFIX):]
    return key.split(".")[-1] if key.startswith("observation.") else key.replace(".", "_")


# ----------------------------------------------------------------------------------------
# Statistics and column types: lara_policy.formats.lerobot_schema (what LeRobot writes)

_feature_stats, _image_stats, _aggregate = feature_stats, image_stats, aggregate


# ----------------------------------------------------------------------------------------
# Video


class _VideoFileWriter:
    """Episodes appended back to back into one mp4 (what LeRobot's concatenation produces):
    frame k of the file has pts k / fps."""

    def __init__(self, path: Path, fps: int, size: tuple[int, int], vcodec: str, crf: int | None,
                 g: int | None, pix_fmt: str):
        import av
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.frames, self.bytes, self.packets = path, fps, 0, 0, 0
        self.raw_frame = size[0] * size[1] * 3
        opts = {}
        if g is not None:
            opts["g"] = str(g)
        if crf is not None:
            opts["crf"] = str(crf)
        if vcodec == "libsvtav1":
            opts["preset"] = "12"
            os.environ.setdefault("SVT_LOG", "1")       # the SVT-AV1 library logs to stderr otherwise
        self._c = av.open(str(path), "w")
        self._s = self._c.add_stream(vcodec, rate=fps, options=opts)
        self._s.height, self._s.width = size
        self._s.pix_fmt = pix_fmt
        self._tb = Fraction(1, fps)

    def _mux(self, packets) -> None:
        for p in packets:
            self.bytes += p.size
            self.packets += 1
            self._c.mux(p)

    def frame_mb(self) -> float:
        """Encoded MB per frame so far; before the encoder's first output (it looks ahead), a
        conservative guess of 1/30 of the raw frame."""
        per = self.bytes / self.packets if self.packets else self.raw_frame / 30
        return per / 2 ** 20

    def add(self, frames: np.ndarray) -> tuple[float, float]:
        """Append (T, H, W, 3) uint8 frames; returns (from_timestamp, to_timestamp) in the file."""
        import av
        start = self.frames
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts, vf.time_base = self.frames, self._tb
            self._mux(self._s.encode(vf))
            self.frames += 1
        return start / self.fps, self.frames / self.fps

    def close(self) -> None:
        self._mux(self._s.encode())
        self._c.close()


def video_info(path: Path) -> dict:
    """The `info` block LeRobot puts under a video feature in info.json (from the file itself)."""
    import av
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return {"video.height": s.height, "video.width": s.width, "video.codec": s.codec_context.codec.canonical_name
                if hasattr(s.codec_context.codec, "canonical_name") else s.codec_context.name,
                "video.pix_fmt": s.pix_fmt, "video.is_depth_map": False, "video.fps": int(s.base_rate),
                "video.channels": 3, "has_audio": len(c.streams.audio) > 0}


class _VideoReader:
    """Decodes the frames of one episode out of a (shared) mp4 by timestamp, as LeRobot does:
    the frame nearest to from_timestamp + timestamp, within 1/fps - 1e-4 s."""

    def __init__(self):
        self._open: dict[Path, object] = {}

    def frames(self, path: Path, from_ts: float, timestamps: np.ndarray, fps: float) -> np.ndarray:
        import av
        if path not in self._open:
            if not path.is_file():
                raise LeRobotError(f"video file {path} does not exist")
            try:
                self._open[path] = av.open(str(path))
            except av.error.FFmpegError as exc:
                raise LeRobotError(f"cannot open video {path}: {exc}") from exc
        c = self._open[path]
        s = c.streams.video[0]
        tol = 1.0 / fps - 1e-4
        want = from_ts + np.asarray(timestamps, np.float64)
        lo, hi = want.min() - tol, want.max() + tol
        c.seek(max(0, int(math.floor(lo / float(s.time_base)))), stream=s, backward=True, any_frame=False)
        got_t, got = [], []
        for fr in c.decode(s):
            if fr.pts is None:
                continue
            t = float(fr.pts * fr.time_base)
            if t > hi:
                break
            if t >= lo:
                got_t.append(t)
                got.append(fr.to_ndarray(format="rgb24"))
        if not got:
            raise LeRobotError(f"{path}: no frames between {lo:.4f} s and {hi:.4f} s")
        got_t = np.asarray(got_t)
        nearest = np.abs(want[:, None] - got_t[None]).argmin(1)
        err = np.abs(got_t[nearest] - want)
        if (err >= tol).any():
            bad = int(np.argmax(err))
            raise LeRobotError(f"{path}: no frame within {tol:.4f} s of timestamp {want[bad]:.4f} s "
                               f"(nearest {got_t[nearest[bad]]:.4f} s)")
        return np.stack([got[i] for i in nearest])

    def close(self) -> None:
        for c in self._open.values():
            c.close()
        self._open.clear()


# ----------------------------------------------------------------------------------------
# Writing


def _fixed(values: np.ndarray, dtype):
    pa, _ = _pa()
    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), dtype), values.shape[1])


@dataclass
class _Cursor:
    chunk: int = 0
    file: int = 0
    size: float = 0.0          # MB written to the current file

    def next(self, chunks_size: int) -> None:
        self.chunk, self.file = (self.chunk + 1, 0) if self.file == chunks_size - 1 else (self.chunk, self.file + 1)
        self.size = 0.0


def write_lerobot(store: EpisodeStore | str | Path, out: str | Path, **options) -> dict:
    """Write every episode of an episode store (an open EpisodeStore or a path) as a LeRobot
    v3.0 dataset in directory `out`; options as write_episodes."""
    own = not isinstance(store, EpisodeStore)
    src = EpisodeStore(store) if own else store
    try:
        return write_episodes(out, src.meta, iter(src), source=str(src.path), **options)
    finally:
        if own:
            src.close()


def write_episodes(out: str | Path, meta: StoreMeta, episodes: Iterable[Episode], *, source: str = "",
                   vcodec: str = "libsvtav1", crf: int | None = 30, g: int | None = 2,
                   pix_fmt: str = "yuv420p", chunks_size: int = 1000, data_files_size_in_mb: float = 100,
                   video_files_size_in_mb: float = 200, overwrite: bool = False, progress: bool = False) -> dict:
    """Write episodes (with the store metadata `meta`) as a LeRobot v3.0 dataset in directory `out`.

    Cameras become `observation.images.<camera>` videos, encoded with PyAV with LeRobot's
    defaults (AV1 via libsvtav1, yuv420p, crf 30, a keyframe every 2 frames). Episodes are
    appended to the current data / video file until it would pass data_files_size_in_mb /
    video_files_size_in_mb; then the next file starts (chunks_size files per chunk folder), as
    LeRobot does. Images are streamed to the encoders; states/actions are kept until the end
    (a few bytes per frame) so the schema can follow what the episodes hold (an `action` column
    unless every episode is action-free; `next.success` if every episode has step_success).
    Returns a summary dict (episodes, frames, tasks, data/video files, seconds)."""
    pa, pq = _pa()
    t0 = time.time()
    if vcodec not in VCODECS:
        raise LeRobotError(f"video codec {vcodec!r}: LeRobot reads {', '.join(VCODECS)}")
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise LeRobotError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
        if not out.is_dir() or (any(out.iterdir()) and not is_lerobot_dir(out)):
            raise LeRobotError(f"{out} exists and is not a LeRobot dataset folder; refusing to replace it")
    m = meta
    fps = int(round(1.0 / m.dt))
    if abs(fps * m.dt - 1.0) > 1e-3:
        print(f"lara: dt {m.dt} s is not 1/integer; info.json says fps {fps} "
              f"(the exact dt is kept in {SIDECAR})", file=sys.stderr)
    h, w = m.image_size
    if m.cameras and (h % 2 or w % 2) and pix_fmt == "yuv420p":
        raise LeRobotError(f"image size {h}x{w} is odd; {pix_fmt} video needs even sizes")
    from lara_policy.common.fileio import staged_output
    # written under a temporary name, renamed to `out` when complete: never half a dataset at
    # `out`, and a dataset it replaces stays until the new one is whole
    with staged_output(out, overwrite=True) as tmp:
        res = _write(tmp, m, episodes, source, fps, vcodec, crf, g, pix_fmt, chunks_size,
                     data_files_size_in_mb, video_files_size_in_mb, progress, pa, pq, t0)
    return {**res, "out": str(out)}


def _write(out, m, episodes, source, fps, vcodec, crf, g, pix_fmt, chunks_size, data_mb, video_mb,
           progress, pa, pq, t0):
    h, w = m.image_size
    vid_cur = {cam: _Cursor() for cam in m.cameras}
    vid_writer: dict[str, _VideoFileWriter | None] = {cam: None for cam in m.cameras}
    n_video = 0
    eps: list[dict] = []               # per episode: rows of episode metadata + arrays for the data
    tasks: dict[str, int] = {}
    total = 0
    try:
        for i, ep in enumerate(episodes):
            if set(ep.images) != set(m.cameras):
                raise LeRobotError(f"episode {i}: cameras {sorted(ep.images)} != {m.cameras}")
            t = ep.num_steps
            tasks.setdefault(ep.instruction, len(tasks))
            row = {"episode_index": i, "tasks": [ep.instruction], "length": t}
            stats = {}
            for cam in m.cameras:
                img = ep.images[cam]
                if img.shape[1:] != (h, w, 3) or img.dtype != np.uint8:
                    raise LeRobotError(f"episode {i} camera {cam}: images {img.shape} {img.dtype}, expected (T, {h}, {w}, 3) uint8")
                vw, cur = vid_writer[cam], vid_cur[cam]
                if vw is not None and vw.frame_mb() * (vw.frames + t) >= video_mb:
                    vw.close()
                    vid_writer[cam] = vw = None
                    cur.next(chunks_size)
                if vw is None:
                    path = out / VIDEO_PATH.format(video_key=camera_key(cam), chunk_index=cur.chunk, file_index=cur.file)
                    vid_writer[cam] = vw = _VideoFileWriter(path, fps, (h, w), vcodec, crf, g, pix_fmt)
                    n_video += 1
                f_ts, t_ts = vw.add(img)
                key = camera_key(cam)
                row.update({f"videos/{key}/chunk_index": cur.chunk, f"videos/{key}/file_index": cur.file,
                            f"videos/{key}/from_timestamp": f_ts, f"videos/{key}/to_timestamp": t_ts})
                stats[key] = _image_stats(img)
            eps.append({"row": row, "img_stats": stats, "state": ep.state.astype(np.float32),
                        "actions": None if ep.actions is None else ep.actions.astype(np.float32),
                        "step_success": None if ep.step_success is None else np.asarray(ep.step_success, bool),
                        "lara": {"episode_index": i, "task": ep.task, "seed": int(ep.seed), "success": bool(ep.success),
                                 "source": ep.source, "action_free": ep.actions is None, "extra": ep.extra}})
            total += t
            if progress:
                print(f"\r  episode {i + 1}", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
    except BaseException:
        for vw in vid_writer.values():           # end each encoder cleanly: no encoder noise on stderr
            if vw is not None:
                try:
                    vw.close()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
        raise
    for vw in vid_writer.values():
        if vw is not None:
            vw.close()
    if not eps:
        raise LeRobotError("no episode to write")

    free = [e["actions"] is None for e in eps]
    has_action = not all(free)
    if has_action and any(free):
        print(f"lara: {sum(free)} of {len(eps)} episodes are action-free; their `action` rows are zeros "
              f"in the v3 data (marked action_free in {SIDECAR}, restored as action-free on reading)",
              file=sys.stderr)
    has_success = all(e["step_success"] is not None for e in eps)

    # features, in LeRobot's order: the data features, then the index features
    features: dict[str, dict] = {STATE_KEY: {"dtype": "float32", "shape": [m.state_dim],
                                             "names": list(m.state_names) or None}}
    if has_action:
        names = m.extra.get("action_names") or ACTION_NAMES.get((m.action_space, m.action_dim)) \
            or [f"{m.action_space}_{k}" for k in range(m.action_dim)]
        features[ACTION_KEY] = {"dtype": "float32", "shape": [m.action_dim], "names": list(names)}
    for cam in m.cameras:
        features[camera_key(cam)] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                                     "info": video_info(out / VIDEO_PATH.format(video_key=camera_key(cam),
                                                                                chunk_index=0, file_index=0))}
    if has_success:
        features[SUCCESS_KEY] = {"dtype": "bool", "shape": [1], "names": None}
    features.update({"timestamp": {"dtype": "float32", "shape": [1], "names": None},
                     **{k: {"dtype": "int64", "shape": [1], "names": None} for k in INDEX_FEATURES[1:]}})

    # data files
    cur, writer, n_data, start = _Cursor(), None, 0, 0
    ep_stats = []
    for i, e in enumerate(eps):
        t = len(e["state"])
        ti = tasks[e["row"]["tasks"][0]]
        frame = np.arange(t, dtype=np.int64)
        ts = (frame / fps).astype(np.float32)
        cols = {STATE_KEY: _fixed(e["state"], pa.float32())}
        stats = {STATE_KEY: _feature_stats(e["state"])}
        if has_action:
            acts = e["actions"] if e["actions"] is not None else np.zeros((t, m.action_dim), np.float32)
            cols[ACTION_KEY] = _fixed(acts, pa.float32())
            stats[ACTION_KEY] = _feature_stats(acts)
        stats.update(e["img_stats"])
        if has_success:
            cols[SUCCESS_KEY] = pa.array(e["step_success"])
            stats[SUCCESS_KEY] = _feature_stats(e["step_success"])
        index = np.arange(start, start + t, dtype=np.int64)
        cols.update({"timestamp": pa.array(ts, pa.float32()), "frame_index": pa.array(frame),
                     "episode_index": pa.array(np.full(t, i, np.int64)), "index": pa.array(index),
                     "task_index": pa.array(np.full(t, ti, np.int64))})
        stats.update({"timestamp": _feature_stats(ts), "frame_index": _feature_stats(frame),
                      "episode_index": _feature_stats(np.full(t, i, np.int64)), "index": _feature_stats(index),
                      "task_index": _feature_stats(np.full(t, ti, np.int64))})
        table = with_hf_metadata(pa.table(cols), features)
        est = table.nbytes / 2 ** 20
        if writer is not None and cur.size + est >= data_mb:
            writer.close()
            writer = None
            cur.next(chunks_size)
        if writer is None:
            path = out / DATA_PATH.format(chunk_index=cur.chunk, file_index=cur.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            n_data += 1
        writer.write_table(table)
        cur.size += est
        row = dict(e["row"])
        row_data = {"data/chunk_index": cur.chunk, "data/file_index": cur.file,
                    "dataset_from_index": start, "dataset_to_index": start + t}
        row = {**{k: row[k] for k in ("episode_index", "tasks", "length")}, **row_data,
               **{k: v for k, v in row.items() if k.startswith("videos/")}}
        for feat, s in stats.items():
            for k, v in s.items():
                row[f"stats/{feat}/{k}"] = v
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        e["row"] = row
        ep_stats.append(stats)
        start += t
    writer.close()

    ep_path = out / EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([e["row"] for e in eps]), ep_path, compression="snappy")
    pq.write_table(tasks_table(list(tasks)), out / "meta" / "tasks.parquet")
    stats_all = {feat: _aggregate([s[feat] for s in ep_stats]) for feat in ep_stats[0]}
    (out / "meta" / "stats.json").write_text(json.dumps(stats_all, indent=4))
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": m.extra.get("robot_type") or m.env,
        "total_episodes": len(eps), "total_frames": total, "total_tasks": len(tasks),
        "chunks_size": chunks_size, "data_files_size_in_mb": data_mb, "video_files_size_in_mb": video_mb,
        "fps": fps, "splits": {"train": f"0:{len(eps)}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH if m.cameras else None,
        "features": features,
    }
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    sidecar = {"format": "lara-episodes", "version": 1, "written_by": "lara_policy.formats.lerobot_v3",
               "source": source, "env": m.env, "action_space": m.action_space, "action_dim": m.action_dim,
               "state_names": list(m.state_names), "cameras": list(m.cameras), "image_size": [h, w],
               "dt": m.dt, "phrasings": m.phrasings, "created_by": m.created_by, "extra": m.extra,
               "episodes": [e["lara"] for e in eps]}
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=1))
    return {"episodes": len(eps), "frames": total, "tasks": len(tasks), "data_files": n_data,
            "video_files": n_video, "seconds": round(time.time() - t0, 2), "out": str(out)}


# ----------------------------------------------------------------------------------------
# Reading


def _column_2d(table, name: str, path: Path) -> np.ndarray:
    """A fixed-size-list or list column (one vector per row) -> (N, D) array."""
    pa, _ = _pa()
    col = table.column(name).combine_chunks()
    n = len(col)
    if pa.types.is_fixed_size_list(col.type):
        return col.flatten().to_numpy(zero_copy_only=False).reshape(n, col.type.list_size)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lengths = col.value_lengths().to_numpy(zero_copy_only=False)
        if n and (lengths != lengths[0]).any():
            raise LeRobotError(f"{path}: column {name!r} has rows of different lengths")
        return col.flatten().to_numpy(zero_copy_only=False).reshape(n, int(lengths[0]) if n else 0)
    return col.to_numpy(zero_copy_only=False).reshape(n, 1)


def _names(ft: dict, dim: int, key: str) -> list[str]:
    names = ft.get("names")
    if isinstance(names, dict):            # e.g. {"motors": [...]} in older LeRobot datasets
        names = [n for v in names.values() for n in (v if isinstance(v, list) else [v])]
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return list(names)
    return [f"{key}_{i}" for i in range(dim)]


class LeRobotV3Source:
    """Read a LeRobot v3.0 dataset directory with the read API of EpisodeStore.

    One episode = one store Episode: `observation.state` -> state, `action` -> actions (absent:
    action-free), each video (or image) feature -> a camera, the episode's first task text ->
    instruction, `next.success` (if present) -> step_success. Videos are decoded with PyAV by
    timestamp as LeRobot does. Cameras of different sizes are resized to the first camera's."""

    def __init__(self, root: str | Path):
        pa, pq = _pa()
        self.path = self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise LeRobotError(f"{info_path}: missing (a LeRobot v3 dataset folder has meta/info.json beside "
                               "meta/tasks.parquet, meta/episodes/ and data/); is this the dataset's root folder?")
        try:
            self.info = info = json.loads(info_path.read_text())
        except json.JSONDecodeError as exc:
            raise LeRobotError(f"{info_path}: not valid JSON ({exc})") from exc
        version = str(info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise LeRobotError(f"{info_path}: codebase_version {version!r}; this reader reads v3.x "
                               f"(convert v2.1 datasets with LeRobot's convert_dataset_v21_to_v30 first)")
        for k in ("fps", "features", "data_path"):
            if k not in info:
                raise LeRobotError(f"{info_path}: field {k!r} missing")
        self.fps = float(info["fps"])
        feats = info["features"]
        if STATE_KEY not in feats:
            raise LeRobotError(f"{info_path}: no {STATE_KEY!r} feature (the episode store needs a state vector)")
        self.camera_keys = [k for k, f in feats.items() if f.get("dtype") in ("video", "image")]
        self.cameras = [_camera_name(k) for k in self.camera_keys]
        if len(set(self.cameras)) != len(self.cameras):
            raise LeRobotError(f"{info_path}: camera names {self.cameras} collide")
        if not self.camera_keys:
            raise LeRobotError(f"{info_path}: no video or image feature (the episode store needs a camera)")
        for k in self.camera_keys:
            if feats[k].get("dtype") == "video" and not info.get("video_path"):
                raise LeRobotError(f"{info_path}: video feature {k!r} but no video_path")
        self.has_action = ACTION_KEY in feats
        self.has_success = SUCCESS_KEY in feats
        state_dim = int(np.prod(feats[STATE_KEY]["shape"]))
        action_dim = int(np.prod(feats[ACTION_KEY]["shape"])) if self.has_action else 0
        shape0 = feats[self.camera_keys[0]]["shape"]
        self.image_size = self._hw(self.camera_keys[0], shape0)

        # tasks
        tpath = self.root / "meta" / "tasks.parquet"
        if not tpath.is_file():
            raise LeRobotError(f"{self.root}: meta/tasks.parquet missing")
        tt = _read_parquet(tpath, "tasks")
        text_col = next((c for c in ("task", "__index_level_0__") if c in tt.column_names), None)
        if text_col is None or "task_index" not in tt.column_names:
            raise LeRobotError(f"{tpath}: expected columns task (or the pandas index) and task_index, "
                               f"found {tt.column_names}")
        self.task_text = dict(zip(tt.column("task_index").to_pylist(), tt.column(text_col).to_pylist()))

        # episodes
        ep_files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not ep_files:
            raise LeRobotError(f"{self.root}: no meta/episodes/chunk-*/file-*.parquet")
        tables = []
        for f in ep_files:
            t = _read_parquet(f, "episode metadata")
            tables.append(t.select([c for c in t.column_names if not c.startswith("stats/")]))
        eps = pa.concat_tables(tables, promote_options="default")
        need = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        need += [f"videos/{k}/{x}" for k in self.camera_keys if feats[k]["dtype"] == "video"
                 for x in ("chunk_index", "file_index", "from_timestamp")]
        missing = [c for c in need if c not in eps.column_names]
        if missing:
            raise LeRobotError(f"{ep_files[0].parent.parent}: episode metadata columns {missing} missing")
        order = np.argsort(eps.column("episode_index").to_numpy())
        self._eps = eps.take(order).to_pylist()
        self._data_cache: tuple[Path, object] | None = None
        self._video = _VideoReader()

        # our sidecar, when it describes exactly these episodes
        sc_path = self.root / SIDECAR
        sc = json.loads(sc_path.read_text()) if sc_path.is_file() else None
        if sc is not None and [e["episode_index"] for e in sc.get("episodes", [])] != \
                [e["episode_index"] for e in self._eps]:
            print(f"lara: {sc_path} does not list the dataset's episodes (edited by another tool?); ignoring it",
                  file=sys.stderr)
            sc = None
        self._sidecar = sc
        self._sc_eps = {e["episode_index"]: e for e in sc["episodes"]} if sc else {}
        cams_ok = sc is not None and sc.get("cameras") == self.cameras
        tasks = {}
        for e in self._eps:
            a = self.episode_attrs_row(e)
            tasks.setdefault(a["task"], [])
            if a["instruction"] not in tasks[a["task"]]:
                tasks[a["task"]].append(a["instruction"])
        self.meta = StoreMeta(
            env=sc["env"] if sc else str(info.get("robot_type") or "lerobot"),
            action_space=sc["action_space"] if sc else ("lerobot:action" if self.has_action else "none"),
            action_dim=int(sc["action_dim"]) if sc else action_dim, state_dim=state_dim,
            cameras=list(self.cameras), image_size=tuple(sc["image_size"]) if cams_ok else self.image_size,
            dt=float(sc["dt"]) if sc else 1.0 / self.fps,
            state_names=list(sc["state_names"]) if sc else _names(feats[STATE_KEY], state_dim, "state"),
            phrasings=sc["phrasings"] if sc else tasks,
            created_by=sc["created_by"] if sc else f"LeRobot {version} dataset",
            extra={**(sc["extra"] if sc else {}),
                   "lerobot": {"root": str(self.root), "codebase_version": version, "fps": info["fps"],
                               "robot_type": info.get("robot_type"), "total_episodes": len(self._eps)}},
        )

    def _hw(self, key: str, shape) -> tuple[int, int]:
        names = self.info["features"][key].get("names") or ["height", "width", "channels"]
        shape = list(shape)
        if len(shape) != 3:
            raise LeRobotError(f"{self.root}/meta/info.json: feature {key!r} shape {shape} is not 3-D")
        if list(names)[:1] == ["channels"] or (shape[0] == 3 and shape[2] != 3):
            return int(shape[1]), int(shape[2])
        return int(shape[0]), int(shape[1])

    # -- EpisodeStore-like read API -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._eps)

    def episode_attrs_row(self, e: dict) -> dict:
        sc = self._sc_eps.get(e["episode_index"])
        tasks = e.get("tasks") or []
        text = tasks[0] if tasks else None
        if sc is not None:
            return {"task": sc["task"], "instruction": text, "seed": int(sc["seed"]), "success": bool(sc["success"]),
                    "action_free": bool(sc["action_free"]) or not self.has_action, "source": sc["source"],
                    "num_steps": int(e["length"]), "extra": sc["extra"]}
        return {"task": text, "instruction": text, "seed": -1, "success": False,
                "action_free": not self.has_action, "source": "lerobot", "num_steps": int(e["length"]),
                "extra": {"lerobot_episode_index": int(e["episode_index"]), "lerobot_tasks": list(tasks)}}

    def episode_attrs(self, i: int) -> dict:
        return self.episode_attrs_row(self._eps[i])

    def _data_table(self, e: dict):
        _, pq = _pa()
        path = self.root / self.info["data_path"].format(chunk_index=e["data/chunk_index"],
                                                         file_index=e["data/file_index"])
        if self._data_cache is None or self._data_cache[0] != path:
            if not path.is_file():
                raise LeRobotError(f"data file {path} (episode {e['episode_index']}) does not exist")
            table = _read_parquet(path, f"data (episode {e['episode_index']})")
            for c in ("episode_index", "frame_index", STATE_KEY):
                if c not in table.column_names:
                    raise LeRobotError(f"{path}: column {c!r} missing")
            self._data_cache = (path, table, table.column("episode_index").to_numpy())
        return self._data_cache

    def episode(self, i: int) -> Episode:
        pa, _ = _pa()
        e = self._eps[i]
        idx = int(e["episode_index"])
        path, table, ep_col = self._data_table(e)
        rows = np.flatnonzero(ep_col == idx)
        if len(rows) == 0:
            raise LeRobotError(f"{path}: no rows of episode {idx}")
        t = table.take(pa.array(rows))
        frame = t.column("frame_index").to_numpy()
        order = np.argsort(frame, kind="stable")
        t = t.take(pa.array(order))
        n = len(t)
        if n != int(e["length"]) or not np.array_equal(np.sort(frame), np.arange(n)):
            raise LeRobotError(f"{path}: episode {idx} has {n} rows with frame_index not 0..{int(e['length']) - 1}")
        state = _column_2d(t, STATE_KEY, path).astype(np.float32)
        attrs = self.episode_attrs(i)
        actions = None
        if self.has_action and not attrs["action_free"]:
            actions = _column_2d(t, ACTION_KEY, path).astype(np.float32)
        ts = (t.column("timestamp").to_numpy().astype(np.float64) if "timestamp" in t.column_names
              else np.arange(n) / self.fps)
        task_idx = t.column("task_index").to_numpy() if "task_index" in t.column_names else None
        if attrs["instruction"] is None:
            if task_idx is None or int(task_idx[0]) not in self.task_text:
                raise LeRobotError(f"{path}: episode {idx} has no task")
            attrs["instruction"] = self.task_text[int(task_idx[0])]
            if attrs["task"] is None:
                attrs["task"] = attrs["instruction"]
        images = {}
        for key, cam in zip(self.camera_keys, self.cameras):
            ft = self.info["features"][key]
            if ft["dtype"] == "video":
                vpath = self.root / self.info["video_path"].format(
                    video_key=key, chunk_index=e[f"videos/{key}/chunk_index"], file_index=e[f"videos/{key}/file_index"])
                img = self._video.frames(vpath, float(e[f"videos/{key}/from_timestamp"]), ts, self.fps)
            else:
                img = self._decode_images(t, key, path)
            if img.shape[1:3] != tuple(self.meta.image_size):
                import cv2
                img = np.stack([cv2.resize(x, (self.meta.image_size[1], self.meta.image_size[0]),
                                           interpolation=cv2.INTER_AREA) for x in img])
            images[cam] = img
        step_success = t.column(SUCCESS_KEY).to_numpy(zero_copy_only=False).reshape(n).astype(bool) \
            if self.has_success else None
        success = attrs["success"] if self._sidecar else bool(step_success is not None and step_success.any())
        return Episode(images=images, state=state, actions=actions, instruction=attrs["instruction"],
                       task=attrs["task"], seed=attrs["seed"], success=success, source=attrs["source"],
                       step_success=step_success, extra=attrs["extra"])

    @staticmethod
    def _decode_images(t, key: str, path: Path) -> np.ndarray:
        """`image` features: PNG/JPEG bytes in a struct {bytes, path} column."""
        import cv2
        out = []
        for v in t.column(key).to_pylist():
            data = v.get("bytes") if isinstance(v, dict) else v
            if data is None:
                raise LeRobotError(f"{path}: image column {key!r} holds a path, not embedded bytes")
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return np.stack(out)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)

    def seeds_by_task(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for i in range(len(self)):
            a = self.episode_attrs(i)
            if a["seed"] >= 0:
                out.setdefault(a["task"] or "", set()).add(a["seed"])
        return out

    def used_seeds(self) -> dict[str, set[int]]:
        out = self.seeds_by_task()
        for t, v in self.meta.extra.get("seeds", {}).items():
            out.setdefault(t, set()).update(int(x) for x in v)
        return out

    def tasks(self) -> list[str]:
        return sorted({self.episode_attrs(i)["task"] or self.task_text.get(0, "") for i in range(len(self))})

    def summary(self) -> dict:
        return episode_summary(self)

    def close(self) -> None:
        self._video.close()
        self._data_cache = None

    def __enter__(self) -> "LeRobotV3Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_lerobot(src: str | Path, out: str | Path, overwrite: bool = False, progress: bool = False) -> dict:
    """Convert a LeRobot v3 dataset directory into an episode store (HDF5)."""
    t0 = time.time()
    with LeRobotV3Source(src) as ds:
        meta = StoreMeta(**{**ds.meta.__dict__, "created_by": f"lara convert (from {ds.meta.created_by})"})
        n = steps = 0
        from lara_policy.common.fileio import staged_output
        if Path(out).exists() and not overwrite:
            raise LeRobotError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
        with staged_output(out, overwrite=True) as tmp, EpisodeStore.create(tmp, meta) as store:
            for i, ep in enumerate(ds):
                store.append(ep)
                n += 1
                steps += ep.num_steps
                if progress:
                    print(f"\r  episode {i + 1}/{len(ds)}", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
    return {"episodes": n, "frames": steps, "out": str(out), "seconds": round(time.time() - t0, 2)}


def _read_parquet(path: Path, what: str):
    """pq.read_table, a truncated or corrupt file as one LeRobotError line naming it."""
    _, pq = _pa()
    import pyarrow as pa
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        msg = " ".join(str(exc).split())
        raise LeRobotError(f"{path}: cannot read the {what} parquet file ({type(exc).__name__}: {msg}); "
                           "the file is truncated or corrupt") from None


def is_lerobot_dir(path: str | Path) -> bool:
    return (Path(path) / "meta" / "info.json").is_file()


# ----------------------------------------------------------------------------------------
# `lara convert` format hooks (registered as "lerobot" in lara_policy.formats.convert)


def detect(path: Path) -> bool:
    """A LeRobot dataset folder: a directory with meta/info.json, or one laid out as a v3 dataset
    (meta/tasks.parquet, meta/episodes/ or data/chunk-*/) whose info.json is missing: reading it
    then names the missing file instead of "format not recognised"."""
    p = Path(path)
    if not p.is_dir():
        return False
    return is_lerobot_dir(p) or (p / "meta" / "tasks.parquet").is_file() or (p / "meta" / "episodes").is_dir() \
        or any(p.glob("data/chunk-*/*.parquet"))


def read(sources: list[Path], args) -> tuple[StoreMeta, Iterator[Episode]]:
    """One or more v3 folders -> (StoreMeta, episodes); --action-free / --trim-idle applied."""
    from lara_policy.formats.convert import read_concatenated
    return read_concatenated(sources, LeRobotV3Source, LeRobotError, args)


def write(dst: Path, meta: StoreMeta, episodes: Iterable[Episode], args) -> dict:
    """`lara convert SRC --to lerobot --out DIR`: LeRobot's default encoding (AV1, crf 30)."""
    summary = write_episodes(dst, meta, episodes, overwrite=getattr(args, "overwrite", False),
                             source=" ".join(str(s) for s in getattr(args, "sources", [])))
    return {**summary, "steps": summary["frames"]}
