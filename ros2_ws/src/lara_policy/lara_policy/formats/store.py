"""The LARA episode store: one HDF5 file of episodes (robomimic/LIBERO-like layout).

Schema (version 1; also documented in docs/episode_store.md):

    /                              attrs: format="lara-episodes", version=1,
                                          env (e.g. "metaworld-v3"), action_space,
                                          action_dim, state_dim, state_names (JSON list),
                                          cameras (JSON list), image_size [H, W], dt,
                                          phrasings (JSON {task: [instruction, ...]}),
                                          created_by, extra (JSON dict)
    /episodes/ep_000000            attrs: task, instruction, seed (int), success (bool),
                                          action_free (bool), source ("expert" | "video" |
                                          "rosbag" | ...), num_steps, extra (JSON dict)
        obs/<camera>               uint8  (T, H, W, 3)   RGB, row 0 = top of the image
        state                      float32 (T, state_dim) proprio state (+ goal where the
                                          env gives one; see state_names)
        actions                    float32 (T, action_dim) action taken at step t;
                                          ABSENT for action-free episodes
        step_success               bool   (T,)  optional, task success after step t

Additions (still version 1, backward compatible; older readers ignore them):
    root extra["seeds"]            {task: [seed, ...]} every seed a generator used,
                                   including failed expert attempts (see used_seeds())
    root extra["failed"]           {task: n} expert episodes discarded as unsuccessful
    root extra["action_free"]      true when the store holds action-free video only
    root extra["distractors"]      the distractor config (or null) for video stores
    episode extra["first_success_step"], extra["distractors"]

Step t pairs observation t with action t (the action applied after seeing it).
Episodes are appended by one writer; readers open read-only and may be many.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

FORMAT = "lara-episodes"
VERSION = 1


from lara_policy.common.errors import LaraError  # noqa: E402  (one error base for the CLI)


class StoreError(LaraError, RuntimeError):
    """The file is not a valid LARA episode store, or an episode does not fit it."""


@dataclass
class StoreMeta:
    env: str
    action_space: str
    action_dim: int
    state_dim: int
    cameras: list[str]
    image_size: tuple[int, int]
    dt: float
    state_names: list[str] = field(default_factory=list)
    phrasings: dict[str, list[str]] = field(default_factory=dict)
    created_by: str = "lara_policy"
    extra: dict = field(default_factory=dict)


@dataclass
class Episode:
    images: dict[str, np.ndarray]          # camera -> (T, H, W, 3) uint8
    state: np.ndarray                      # (T, state_dim) float32
    actions: np.ndarray | None             # (T, action_dim) float32, None if action-free
    instruction: str
    task: str
    seed: int
    success: bool
    source: str = "expert"
    step_success: np.ndarray | None = None  # (T,) bool
    extra: dict = field(default_factory=dict)

    @property
    def action_free(self) -> bool:
        return self.actions is None

    @property
    def num_steps(self) -> int:
        return int(self.state.shape[0])


def _validate(ep: Episode, meta: StoreMeta) -> None:
    t = ep.num_steps
    if t < 1:
        raise StoreError("episode has no steps")
    if ep.state.shape != (t, meta.state_dim):
        raise StoreError(f"state shape {ep.state.shape} != ({t}, {meta.state_dim})")
    if set(ep.images) != set(meta.cameras):
        raise StoreError(f"episode cameras {sorted(ep.images)} != store cameras {meta.cameras}")
    for cam, img in ep.images.items():
        if img.shape != (t, *meta.image_size, 3) or img.dtype != np.uint8:
            raise StoreError(f"camera {cam}: images {img.shape} {img.dtype}, "
                             f"expected ({t}, {meta.image_size[0]}, {meta.image_size[1]}, 3) uint8")
    if ep.actions is not None:
        if ep.actions.shape != (t, meta.action_dim):
            raise StoreError(f"actions shape {ep.actions.shape} != ({t}, {meta.action_dim})")
        if not np.all(np.isfinite(ep.actions)):
            raise StoreError("actions contain NaN/inf")
    if not ep.instruction.strip():
        raise StoreError("episode instruction is empty")


class EpisodeStore:
    """Read or append episodes of one HDF5 store. Use as a context manager."""

    def __init__(self, path: str | Path, mode: str = "r"):
        self.path = Path(path)
        if mode == "r" and not self.path.exists():
            raise StoreError(f"episode store {self.path} does not exist (generate one with `lara demos`)")
        try:
            self._f = h5py.File(self.path, mode)
        except OSError as exc:
            raise StoreError(f"cannot open episode store {self.path}: {exc}") from exc
        try:
            self._read_meta()
        except StoreError:
            self._f.close()
            raise
        except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:  # damaged / foreign file
            self._f.close()
            raise StoreError(f"{self.path} is not a readable LARA episode store "
                             f"({type(exc).__name__}: {exc})") from exc

    def _read_meta(self) -> None:
        if self._f.attrs.get("format") != FORMAT:
            raise StoreError(f"{self.path} is not a LARA episode store (format attr missing)")
        if int(self._f.attrs["version"]) > VERSION:
            raise StoreError(f"{self.path} has store version {self._f.attrs['version']}, "
                             f"this lara_policy reads <= {VERSION}; upgrade lara_policy")
        a = self._f.attrs
        self.meta = StoreMeta(
            env=str(a["env"]), action_space=str(a["action_space"]),
            action_dim=int(a["action_dim"]), state_dim=int(a["state_dim"]),
            cameras=json.loads(a["cameras"]), image_size=tuple(int(x) for x in a["image_size"]),
            dt=float(a["dt"]), state_names=json.loads(a["state_names"]),
            phrasings=json.loads(a["phrasings"]), created_by=str(a["created_by"]),
            extra=json.loads(a["extra"]),
        )
        self._names = sorted(self._f["episodes"].keys())

    # -- creation / writing ---------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, meta: StoreMeta, overwrite: bool = False) -> "EpisodeStore":
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} exists; pass overwrite=True (or --overwrite) to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            f.attrs.update({
                "format": FORMAT, "version": VERSION, "env": meta.env,
                "action_space": meta.action_space, "action_dim": meta.action_dim,
                "state_dim": meta.state_dim, "state_names": json.dumps(meta.state_names),
                "cameras": json.dumps(meta.cameras), "image_size": list(meta.image_size),
                "dt": meta.dt, "phrasings": json.dumps(meta.phrasings),
                "created_by": meta.created_by, "extra": json.dumps(meta.extra),
            })
            f.create_group("episodes")
        return cls(path, "a")

    def append(self, ep: Episode, compression: str | None = "lzf") -> str:
        _validate(ep, self.meta)
        name = f"ep_{len(self._names):06d}"
        g = self._f["episodes"].create_group(name)
        for cam, img in ep.images.items():
            g.create_dataset(f"obs/{cam}", data=img, chunks=(1, *img.shape[1:]), compression=compression)
        g.create_dataset("state", data=ep.state.astype(np.float32))
        if ep.actions is not None:
            g.create_dataset("actions", data=ep.actions.astype(np.float32))
        if ep.step_success is not None:
            g.create_dataset("step_success", data=np.asarray(ep.step_success, dtype=bool))
        g.attrs.update({
            "task": ep.task, "instruction": ep.instruction, "seed": int(ep.seed),
            "success": bool(ep.success), "action_free": ep.actions is None,
            "source": ep.source, "num_steps": ep.num_steps, "extra": json.dumps(ep.extra),
        })
        self._names.append(name)
        self._f.flush()
        return name

    def set_phrasings(self, phrasings: dict[str, list[str]]) -> None:
        self.meta.phrasings = dict(phrasings)
        self._f.attrs["phrasings"] = json.dumps(self.meta.phrasings)

    def update_extra(self, **items) -> None:
        """Merge items into the store-level `extra` JSON attribute (writer only)."""
        self.meta.extra.update(items)
        self._f.attrs["extra"] = json.dumps(self.meta.extra)
        self._f.flush()

    def record_seeds(self, seeds: dict[str, list[int]] | dict[str, set[int]]) -> None:
        """Record the seeds a generator USED per task (including failed attempts) in
        extra["seeds"]; evaluation refuses any of them (see used_seeds)."""
        cur = {t: set(v) for t, v in self.meta.extra.get("seeds", {}).items()}
        for t, v in seeds.items():
            cur.setdefault(t, set()).update(int(x) for x in v)
        self.update_extra(seeds={t: sorted(v) for t, v in sorted(cur.items())})

    # -- reading --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._names)

    def episode_attrs(self, i: int) -> dict:
        a = self._f["episodes"][self._names[i]].attrs
        return {"task": str(a["task"]), "instruction": str(a["instruction"]), "seed": int(a["seed"]),
                "success": bool(a["success"]), "action_free": bool(a["action_free"]),
                "source": str(a["source"]), "num_steps": int(a["num_steps"]),
                "extra": json.loads(a["extra"])}

    def episode(self, i: int) -> Episode:
        """Episode i, checked as on append (shapes, cameras, finite actions, instruction):
        a damaged or hand-edited store gives a StoreError naming the file and episode."""
        name = self._names[i]
        try:
            g = self._f["episodes"][name]
            a = self.episode_attrs(i)
            ep = Episode(
                images={cam: g[f"obs/{cam}"][()] for cam in self.meta.cameras},
                state=g["state"][()],
                actions=g["actions"][()] if "actions" in g else None,
                instruction=a["instruction"], task=a["task"], seed=a["seed"], success=a["success"],
                source=a["source"],
                step_success=g["step_success"][()] if "step_success" in g else None,
                extra=a["extra"],
            )
            _validate(ep, self.meta)
        except StoreError as exc:
            raise StoreError(f"{self.path} episode {name}: {exc}") from None
        except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:   # damaged file
            raise StoreError(f"{self.path} episode {name} is unreadable ({type(exc).__name__}: {exc})") from exc
        return ep

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)

    def seeds_by_task(self) -> dict[str, set[int]]:
        """Seeds used per task: evaluation must not reuse any of them."""
        out: dict[str, set[int]] = {}
        for i in range(len(self)):
            a = self.episode_attrs(i)
            out.setdefault(a["task"], set()).add(a["seed"])
        return out

    def used_seeds(self) -> dict[str, set[int]]:
        """Every seed this store's data came from or was tried on, per task: the union of
        the episodes' seeds and extra["seeds"] (which also lists failed expert attempts)."""
        out = self.seeds_by_task()
        for t, v in self.meta.extra.get("seeds", {}).items():
            out.setdefault(t, set()).update(int(x) for x in v)
        return out

    def tasks(self) -> list[str]:
        """Tasks present in the store, sorted."""
        return sorted({self.episode_attrs(i)["task"] for i in range(len(self))})

    def summary(self) -> dict:
        """Counts per task / source, action-free episodes, total steps."""
        return episode_summary(self)

    def content_digest(self) -> str:
        """sha256 of what the store holds: its metadata (less the generating command line) and every
        episode's attributes and arrays. Two stores generated from the same seeds digest alike even
        though HDF5 writes object times into the file (its bytes differ on every run)."""
        import hashlib  # noqa: PLC0415
        h = hashlib.sha256()
        extra = {k: v for k, v in self.meta.extra.items() if k != "command"}
        h.update(json.dumps({**self.meta.__dict__, "extra": extra}, sort_keys=True, default=str).encode())
        for name in self._names:
            g = self._f["episodes"][name]
            h.update(name.encode() + json.dumps({k: str(v) for k, v in g.attrs.items()}, sort_keys=True).encode())
            arrays = [k for k in ("state", "actions", "step_success") if k in g]
            arrays += [f"obs/{c}" for c in sorted(g["obs"].keys())] if "obs" in g else []
            for key in sorted(arrays):
                a = g[key][...]
                h.update(f"{key}{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None

    def __enter__(self) -> "EpisodeStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def episode_summary(source) -> dict:
    """Counts per task / source, action-free episodes and total steps of any episode source
    with `__len__` and `episode_attrs(i)` (an EpisodeStore, a LeRobot v3 reader)."""
    per_task: dict[str, int] = {}
    sources: dict[str, int] = {}
    steps = action_free = 0
    for i in range(len(source)):
        a = source.episode_attrs(i)
        per_task[a["task"]] = per_task.get(a["task"], 0) + 1
        sources[a["source"]] = sources.get(a["source"], 0) + 1
        steps += a["num_steps"]
        action_free += int(a["action_free"])
    return {"episodes": len(source), "steps": steps, "per_task": per_task, "sources": sources,
            "action_free": action_free}


def seed_ranges(v: list[int]) -> str:
    """Sorted seeds as compact ranges for messages: [1, 2, 3, 7] -> "1..3, 7" (first 6 runs)."""
    out, start, prev = [], v[0], v[0]
    for x in v[1:] + [None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        out.append(f"{start}" if start == prev else f"{start}..{prev}")
        if x is not None:
            start = prev = x
    return ", ".join(out[:6]) + (" ..." if len(out) > 6 else "")
