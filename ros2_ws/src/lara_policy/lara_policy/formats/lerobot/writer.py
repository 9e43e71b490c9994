"""An episode store (or any episodes) -> a LeRobot v3 dataset folder, with the column types
LeRobot writes (schema.py)."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from lara_policy.formats.lerobot.layout import (ACTION_KEY, ACTION_NAMES, CODEBASE_VERSION, DATA_PATH,
                                               EPISODES_PATH, INDEX_FEATURES, SIDECAR, STATE_KEY, SUCCESS_KEY,
                                               VCODECS, VIDEO_PATH, LeRobotError, _pa, camera_key,
                                               is_lerobot_dir)
from lara_policy.formats.lerobot.schema import (aggregate as _aggregate, feature_stats as _feature_stats,
                                               image_stats as _image_stats, tasks_table, with_hf_metadata)
from lara_policy.formats.lerobot.video import _VideoFileWriter, video_info
from lara_policy.formats.store import Episode, EpisodeStore, StoreMeta


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
    sidecar = {"format": "lara-episodes", "version": 1, "written_by": "lara_policy.formats.lerobot",
               "source": source, "env": m.env, "action_space": m.action_space, "action_dim": m.action_dim,
               "state_names": list(m.state_names), "cameras": list(m.cameras), "image_size": [h, w],
               "dt": m.dt, "phrasings": m.phrasings, "created_by": m.created_by, "extra": m.extra,
               "episodes": [e["lara"] for e in eps]}
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=1))
    return {"episodes": len(eps), "frames": total, "tasks": len(tasks), "data_files": n_data,
            "video_files": n_video, "seconds": round(time.time() - t0, 2), "out": str(out)}
