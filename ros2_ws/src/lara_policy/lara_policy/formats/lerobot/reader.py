"""A LeRobot v3 dataset folder read as an episode source (the read API of EpisodeStore), and
converted into a store."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from lara_policy.formats.lerobot.layout import (ACTION_KEY, SIDECAR, STATE_KEY, SUCCESS_KEY, LeRobotError, _camera_name,
                                               _pa)
from lara_policy.formats.lerobot.video import _VideoReader
from lara_policy.formats.store import Episode, EpisodeStore, StoreMeta, episode_summary


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
