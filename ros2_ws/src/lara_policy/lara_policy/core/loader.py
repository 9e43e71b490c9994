"""Where `lara train` gets each step's batches.

    --workers 0 (default)  every store decoded into memory once (core.processing.ChunkDataset);
                           the next step's batches are assembled on a thread while a step trains
                           (train_data.BatchPrefetcher). Fastest where the data fits in memory
                           (no per-sample file reads or video decoding on a 2-core machine), and the
                           path every result so far was trained with.
    --workers N            LazyChunkDataset: only the low-dimensional part (state, actions, episode
                           boundaries, instruction ids, ~90 bytes a frame) is held in memory; the
                           images of each sample are read from the files when its batch is made,
                           in N DataLoader worker processes, each with its own file handles (HDF5
                           frames one by one; LeRobot v3 video frames decoded in the worker by
                           seek from the previous keyframe). Memory does not grow with the images.

Both give the same batches: a DataLoader item is a whole STEP (`train_data.step_batches`: the
global batch plan of (seed, step), this rank's slice, its micro-batches), so which samples, shifts,
noise and flow times a step sees do not depend on the loader, the number of workers or the
number of DDP ranks; the lazy reader decodes and resizes the same frames the in-memory one holds
(tests/core/test_loader.py compares them bit for bit)."""
from __future__ import annotations

import gc
import os

import numpy as np
import torch

from lara_policy.core.processing import ChunkDataset, resize_uint8, source_info
from lara_policy.core.train_data import BatchPrefetcher, step_batches
from lara_policy.formats.frames import open_frame_reader
from lara_policy.formats.store import StoreError


class LazyChunkDataset(ChunkDataset):
    """ChunkDataset's samples (same `.batch`, stats, indices), images read on demand from the files."""

    def __init__(self, data: list[str], video: list[str] = (), cameras: list[str] | None = None,
                 image_size: int = 64, horizon: int = 16, offset: int = 16):
        self.horizon, self.offset, self.image_size = horizon, offset, image_size
        sources = [(str(p), False) for p in data] + [(str(p), True) for p in video]
        if not sources:
            raise StoreError("no episode store given (--data)")
        states, actions, has_action, ep_end, instr, where = [], [], [], [], [], []
        self.instructions: list[str] = []
        self.paths, self.source_cameras = [p for p, _ in sources], []
        self.timestamps: dict[tuple[int, int], np.ndarray] = {}
        info, n = None, 0
        for s, (path, force_free) in enumerate(sources):
            with open_frame_reader(path) as reader:
                m = reader.meta
                cams, info = source_info(path, m, cameras, info)
                self.source_cameras.append(cams)
                for e in range(len(reader)):
                    low = reader.lowdim(e)
                    t = low.num_steps
                    states.append(low.state)
                    free = force_free or low.actions is None
                    actions.append(np.zeros((t, info.action_dim), np.float32) if free else low.actions)
                    has_action.append(np.full(t, 0.0 if free else 1.0, np.float32))
                    ep_end.append(np.full(t, n + t - 1, np.int64))
                    if low.instruction not in self.instructions:
                        self.instructions.append(low.instruction)
                    instr.append(np.full(t, self.instructions.index(low.instruction), np.int64))
                    where.append(np.stack([np.full(t, s), np.full(t, e), np.arange(t)], 1).astype(np.int32))
                    if low.timestamps is not None:
                        self.timestamps[(s, e)] = low.timestamps
                    n += t
        if n == 0:
            raise StoreError(f"the stores {self.paths} hold no episodes")
        self.info = info
        self.states = np.concatenate(states)
        self.actions = np.concatenate(actions)
        self.has_action = np.concatenate(has_action)
        self.ep_end = np.concatenate(ep_end)
        self.instruction_id = np.concatenate(instr)
        self.where = np.concatenate(where)                 # (N, 3): source, episode, step
        self.text = None
        self._readers: dict[int, object] = {}
        self._pid = None

    def __getstate__(self) -> dict:       # a spawned worker opens its own readers
        state = dict(self.__dict__)
        state["_readers"], state["_pid"], state["_inherited"] = {}, None, []
        return state

    def _reader(self, s: int):
        if self._pid != os.getpid():
            # a forked worker: never touch the parent's handles, not even by dropping them (freeing
            # a PyAV decoder whose threads did not survive the fork deadlocks); keep them unused
            self._inherited = getattr(self, "_inherited", []) + [self._readers]
            self._readers, self._pid = {}, os.getpid()
        if s not in self._readers:
            self._readers[s] = open_frame_reader(self.paths[s])
        return self._readers[s]

    def _read(self, index: np.ndarray, cameras: slice) -> torch.Tensor:
        index = np.asarray(index, np.int64)
        n_cam = len(self.info.cameras[cameras])
        out = torch.empty(len(index), n_cam, 3, self.image_size, self.image_size, dtype=torch.uint8)
        for k, i in enumerate(index):
            s, e, t = (int(x) for x in self.where[i])
            reader, ts = self._reader(s), self.timestamps.get((s, e))
            for c, cam in enumerate(self.source_cameras[s][cameras]):
                out[k, c] = resize_uint8(reader.frames(e, cam, [t], ts), self.image_size)[0]
        return out

    def frames(self, index: np.ndarray) -> torch.Tensor:
        return self._read(index, slice(None))

    def primary_frames(self, index: np.ndarray) -> torch.Tensor:
        return self._read(index, slice(0, 1))[:, 0]

    def close(self) -> None:
        if self._pid == os.getpid():
            for r in self._readers.values():
                r.close()
        self._readers = {}


def open_dataset(lazy: bool, data: list[str], video: list[str] = (), cameras: list[str] | None = None,
                 image_size: int = 64, horizon: int = 16, offset: int = 16) -> ChunkDataset:
    cls = LazyChunkDataset if lazy else ChunkDataset
    return cls(data, video, cameras, image_size=image_size, horizon=horizon, offset=offset)


class _Steps(torch.utils.data.Dataset):
    """Item k: the batches of step k for one rank (a DataLoader over it keeps step order)."""

    def __init__(self, data, stats, cfg, rank: int, world: int, horizon: int, action_dim: int, stop: int):
        self.args = (data, stats, cfg)
        self.rank, self.world, self.horizon, self.action_dim, self.stop = rank, world, horizon, action_dim, stop

    def __len__(self) -> int:
        return self.stop

    def __getitem__(self, step: int) -> dict:
        data, stats, cfg = self.args
        return step_batches(data, stats, cfg, step, self.rank, self.world, self.horizon, self.action_dim,
                            torch.device("cpu"))


def _to(batches: dict, device: torch.device) -> dict:
    return {"micro": [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in batches["micro"]],
            "act_weights": batches["act_weights"]}


WORKER_TIMEOUT_S = 600      # a worker that delivers no step for this long is an error, not a hang


def _worker_init(_):
    torch.set_num_threads(1)


class StepLoader:
    """`get(step)` -> the step's {"micro": [batch, ...], "act_weights": [...]} on `device`, for
    steps start..stop-1 in order; workers = 0: a prefetch thread over in-memory data; N: a
    DataLoader with N processes (pinned memory on CUDA)."""

    def __init__(self, data: ChunkDataset, stats, cfg, rank: int, world: int, horizon: int, action_dim: int,
                 start: int, stop: int, device: torch.device, workers: int = 0):
        self.device, self.loader, self.prefetch = device, None, None
        if workers <= 0:
            self.prefetch = BatchPrefetcher(
                lambda k: step_batches(data, stats, cfg, k, rank, world, horizon, action_dim, device), start, stop)
            return
        steps = _Steps(data, stats, cfg, rank, world, horizon, action_dim, stop)
        self.loader = torch.utils.data.DataLoader(
            steps, batch_size=None, sampler=range(start, stop), num_workers=workers, worker_init_fn=_worker_init,
            pin_memory=device.type == "cuda", prefetch_factor=2, persistent_workers=False,
            generator=torch.Generator().manual_seed(0),   # its seed draw must not advance the global RNG
            timeout=WORKER_TIMEOUT_S,
            multiprocessing_context="fork" if hasattr(os, "fork") else None)
        self._iter = None
        if start < stop:
            # the workers fork here: collect the garbage now, where it can be freed safely (a
            # decoder freed in a forked child waits for threads it does not have), and keep what
            # the children inherit out of their garbage collector
            gc.collect()
            gc.freeze()
            try:
                self._iter = iter(self.loader)
            finally:
                gc.unfreeze()
        self._next = start

    def get(self, step: int) -> dict:
        if self.prefetch is not None:
            return self.prefetch.get(step)
        if step != self._next:
            raise RuntimeError(f"StepLoader: step {step} asked, {self._next} is next")
        self._next += 1
        return _to(next(self._iter), self.device)

    def close(self) -> None:
        if self.prefetch is not None:
            self.prefetch.close()
        self._iter = None
        self.loader = None
