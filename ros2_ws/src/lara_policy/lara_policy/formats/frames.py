"""Random access to episode sources for loaders that read lazily (`lara train --workers N`):
an episode's low-dimensional part (state, actions, instruction) without its images, and the
frames of one camera at chosen steps, for an episode store (HDF5) or a LeRobot v3 folder.

    with open_frame_reader(path) as r:       # r.meta: the source's StoreMeta
        low = r.lowdim(i)                    # LowDim: state (T, s), actions (T, a) | None, ...
        img = r.frames(i, "corner4", steps, low.timestamps)   # (len(steps), H, W, 3) uint8

The frames equal those of `open_episode_source(path).episode(i).images[camera][steps]`
(same decode by timestamp, same resize to the source's image size): a loader that reads this
way gives the same training samples as one that loads whole episodes. A reader holds open file
handles: open one per process (h5py and PyAV handles must not cross a fork)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lara_policy.formats.lerobot import LeRobotV3Source
from lara_policy.formats.lerobot.layout import ACTION_KEY, STATE_KEY, LeRobotError
from lara_policy.formats.store import EpisodeStore, StoreError, StoreMeta


@dataclass
class LowDim:
    state: np.ndarray                    # (T, state_dim) float32
    actions: np.ndarray | None           # (T, action_dim) float32; None = action-free
    instruction: str
    task: str
    extra: dict = field(default_factory=dict)
    timestamps: np.ndarray | None = None  # (T,) float64 s, where frames are found by time (LeRobot video)

    @property
    def num_steps(self) -> int:
        return int(self.state.shape[0])


def open_frame_reader(path: str | Path):
    """A frame reader for an episode store (HDF5 file) or a LeRobot v3 dataset directory."""
    return LeRobotFrames(path) if Path(path).is_dir() else StoreFrames(path)


class _Reader:
    meta: StoreMeta

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoreFrames(_Reader):
    """An episode store, read frame by frame (its images are chunked one frame per chunk)."""

    def __init__(self, path: str | Path):
        self.store = EpisodeStore(path)
        self.meta, self.path = self.store.meta, self.store.path
        # HDF5's metadata cache grows adaptively to 32 MB a file as random reads touch the groups
        # of more episodes (measured: +61 MB RSS over a 1200-episode store, +6 MB over 120); 2 MB
        # keeps a reader's memory flat (+14 MB over 1200) at no measurable cost per frame
        fid = self.store._f.id
        mdc = fid.get_mdc_config()
        mdc.set_initial_size, mdc.initial_size, mdc.min_size, mdc.max_size = True, 1 << 20, 1 << 20, 2 << 20
        fid.set_mdc_config(mdc)

    def __len__(self) -> int:
        return len(self.store)

    def _group(self, i: int):
        # not cached: an open HDF5 object pins its metadata (~0.3 MB an episode measured), so a
        # cache of every episode touched would grow with the store
        return self.store._f["episodes"][self.store._names[i]]

    def lowdim(self, i: int) -> LowDim:
        name = self.store._names[i]
        try:
            g, a, m = self._group(i), self.store.episode_attrs(i), self.meta
            state = g["state"][()].astype(np.float32)
            actions = g["actions"][()].astype(np.float32) if "actions" in g else None
            t = state.shape[0]
            if t < 1 or state.shape != (t, m.state_dim):
                raise StoreError(f"state shape {state.shape} != (T, {m.state_dim})")
            if actions is not None and (actions.shape != (t, m.action_dim) or not np.all(np.isfinite(actions))):
                raise StoreError(f"actions {actions.shape} are not ({t}, {m.action_dim}) finite values")
            for cam in m.cameras:
                if g[f"obs/{cam}"].shape != (t, *m.image_size, 3):
                    raise StoreError(f"camera {cam}: images {g[f'obs/{cam}'].shape}, expected "
                                     f"({t}, {m.image_size[0]}, {m.image_size[1]}, 3)")
            if not a["instruction"].strip():
                raise StoreError("episode instruction is empty")
        except StoreError as exc:
            raise StoreError(f"{self.path} episode {name}: {exc}") from None
        except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
            raise StoreError(f"{self.path} episode {name} is unreadable ({type(exc).__name__}: {exc})") from exc
        return LowDim(state, actions, a["instruction"], a["task"], a["extra"])

    def frames(self, i: int, camera: str, steps, timestamps: np.ndarray | None = None) -> np.ndarray:
        steps = np.asarray(steps, np.int64)
        uniq, inverse = np.unique(steps, return_inverse=True)       # h5py wants increasing indices
        try:
            got = self._group(i)[f"obs/{camera}"][uniq]
        except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
            raise StoreError(f"{self.path} episode {self.store._names[i]} camera {camera}: frames {uniq.tolist()[:8]} "
                             f"unreadable ({type(exc).__name__}: {exc})") from exc
        return got[inverse]

    def close(self) -> None:
        self.store.close()


class LeRobotFrames(_Reader):
    """A LeRobot v3 folder, frame by frame: a video frame is decoded from the keyframe before it
    (seek), so a sample costs a GOP's worth of decoding, not its whole episode."""

    def __init__(self, path: str | Path):
        self.src = LeRobotV3Source(path)
        self.meta, self.path = self.src.meta, self.src.path

    def __len__(self) -> int:
        return len(self.src)

    def _episode_table(self, i: int):
        import pyarrow as pa
        src, e = self.src, self.src._eps[i]
        idx = int(e["episode_index"])
        path, table, ep_col = src._data_table(e)
        rows = np.flatnonzero(ep_col == idx)
        t = table.take(pa.array(rows))
        frame = t.column("frame_index").to_numpy()
        order = np.argsort(frame, kind="stable")
        t = t.take(pa.array(order))
        n = len(t)
        if n == 0 or n != int(e["length"]) or not np.array_equal(np.sort(frame), np.arange(n)):
            raise LeRobotError(f"{path}: episode {idx} has {n} rows with frame_index not 0..{int(e['length']) - 1}")
        ts = (t.column("timestamp").to_numpy().astype(np.float64) if "timestamp" in t.column_names
              else np.arange(n) / src.fps)
        return path, t, ts

    def lowdim(self, i: int) -> LowDim:
        from lara_policy.formats.lerobot.reader import _column_2d
        src = self.src
        path, t, ts = self._episode_table(i)
        attrs = src.episode_attrs(i)
        state = _column_2d(t, STATE_KEY, path).astype(np.float32)
        actions = None
        if src.has_action and not attrs["action_free"]:
            actions = _column_2d(t, ACTION_KEY, path).astype(np.float32)
        if attrs["instruction"] is None:
            task_idx = t.column("task_index").to_numpy() if "task_index" in t.column_names else None
            if task_idx is None or int(task_idx[0]) not in src.task_text:
                raise LeRobotError(f"{path}: episode {int(src._eps[i]['episode_index'])} has no task")
            attrs["instruction"] = src.task_text[int(task_idx[0])]
            attrs["task"] = attrs["task"] or attrs["instruction"]
        return LowDim(state, actions, attrs["instruction"], attrs["task"], attrs["extra"], ts)

    def frames(self, i: int, camera: str, steps, timestamps: np.ndarray | None = None) -> np.ndarray:
        """timestamps: the episode's (LowDim.timestamps); without them they are read again (a
        parquet file per call where episodes span several files)."""
        src, e = self.src, self.src._eps[i]
        steps = np.asarray(steps, np.int64)
        key = src.camera_keys[src.cameras.index(camera)]
        ft = src.info["features"][key]
        if ft["dtype"] == "video":
            ts = timestamps if timestamps is not None else self._episode_table(i)[2]
            vpath = src.root / src.info["video_path"].format(
                video_key=key, chunk_index=e[f"videos/{key}/chunk_index"], file_index=e[f"videos/{key}/file_index"])
            from_ts = float(e[f"videos/{key}/from_timestamp"])
            # one seek + decode per distinct step: far apart steps would decode everything between
            uniq, inverse = np.unique(steps, return_inverse=True)
            img = np.stack([src._video.frames(vpath, from_ts, ts[s:s + 1], src.fps)[0] for s in uniq])[inverse]
        else:
            path, t, _ = self._episode_table(i)
            import pyarrow as pa
            img = src._decode_images(t.take(pa.array(steps)), key, path)
        if img.shape[1:3] != tuple(self.meta.image_size):
            import cv2
            img = np.stack([cv2.resize(x, (self.meta.image_size[1], self.meta.image_size[0]),
                                       interpolation=cv2.INTER_AREA) for x in img])
        return img

    def close(self) -> None:
        self.src.close()
