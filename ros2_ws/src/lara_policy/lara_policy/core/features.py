"""Frozen vision features, computed once per frame and cached (`lara train --feature-cache auto`).

When the VLA's vision backbone has a frozen part (`vision.cacheable`: a pretrained backbone with
vision_train frozen or last, core/backbones.py) and the VLA's images are not augmented
(--aug-shift 0, --aug-photometric 0), the frozen part's output for a frame never changes during
the run. It is computed once for every frame of the training data (each camera, in batches, on the
training device) and the batches then carry `vision_features` (B, n_cam, C, h, w) instead of running
the frozen trunk on every sample of every step; LaraModel.compute_losses feeds them to the
trainable rest (`vision(features=...)`). Any other case (the conv encoder, vision_train full, an
augmentation, --feature-cache off) trains on images as before.

Where: a memory-mapped .npy file beside the run (RUN/feature_cache/<key>.npy, float16), not
process memory. The cache is as large as the data (112 x 8 x 8 features = 14 KB a frame and camera
at 128 px in float16, ~0.3x the decoded 128 px image), so in memory it would undo the lazy loader's
point (--workers: memory independent of the data's size); mapped, the operating system's page
cache holds what fits and reads the rest from disk, the DataLoader's worker processes and the DDP
ranks of one machine share one copy, and a resumed run (same frozen weights, same data: the key)
reuses it instead of computing it again. float16: half the disk and page cache of float32; the
features are BatchNorm-projected activations of order 1-10, where float16 keeps ~3 significant
digits (the trainable layers after them see a rounding far below the run-to-run noise; the test
bounds it). The images are still in the batch (the LAM watches them)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from lara_policy.common.fileio import write_json


def vision_module(model):
    enc = getattr(model, "observation_encoder", None)
    return getattr(enc, "vision", None)


def cache_reason(model, cfg) -> str | None:
    """None when the frozen features of this run can be cached, else why not (one phrase)."""
    vision = vision_module(model)
    if cfg.feature_cache == "off":
        return "--feature-cache off"
    if vision is None or cfg.paradigm == "lam-pretrain":
        return "no VLA"
    if not getattr(vision, "cacheable", False):
        return "the vision encoder trains fully (no frozen part)"
    if cfg.aug_shift > 0 or cfg.aug_photometric > 0:
        return "image augmentation changes the frozen features every step"
    return None


def cache_key(model, data) -> str:
    """Hash of what the features depend on: the vision module's frozen tensors (parameters that do
    not train, buffers), the image size, the cameras and the data (paths, sizes, mtimes, frames)."""
    vision = vision_module(model)
    h = hashlib.sha256()
    frozen = [(n, p) for n, p in vision.named_parameters() if not p.requires_grad] + list(vision.named_buffers())
    for name, t in sorted(frozen, key=lambda x: x[0]):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    ident = {"image_size": data.image_size, "cameras": list(data.info.cameras), "frames": len(data),
             "sources": [[str(Path(p).resolve()), *_stat(p)] for p in getattr(data, "paths", [])]}
    h.update(json.dumps(ident, sort_keys=True).encode())
    return h.hexdigest()[:20]


def _stat(path) -> list:
    p = Path(path)
    files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
    return [sum(f.stat().st_size for f in files), max((f.stat().st_mtime_ns for f in files), default=0)]


class FeatureCache:
    """The features of every frame, memory-mapped read-only: cache[index] -> (B, n_cam, C, h, w) float32."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.array = np.load(self.path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index) -> torch.Tensor:
        index = np.asarray(index, np.int64)
        order = np.argsort(index, kind="stable")          # ascending reads from the mapped file
        rows = np.empty((len(index), *self.array.shape[1:]), np.float32)
        rows[order] = self.array[index[order]]
        return torch.from_numpy(rows)


@torch.no_grad()
def build_feature_cache(model, data, device: torch.device, folder: str | Path, precision: str = "fp32",
                        batch: int = 64, rank: int = 0, world: int = 1, log=print) -> FeatureCache:
    """Compute (rank 0; the others wait) or reuse RUN/feature_cache/<key>.npy for `data`."""
    from lara_policy.core.step import autocast
    vision = vision_module(model)
    folder = Path(folder)
    key = cache_key(model, data)
    path = folder / f"{key}.npy"
    if rank == 0 and not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        n, n_cam = len(data), len(data.info.cameras)
        was = vision.training
        vision.eval()
        probe = vision.features(data.frames(np.zeros(1, np.int64)).flatten(0, 1).float().to(device) / 255.0)
        tmp = folder / f"{key}.{os.getpid()}.tmp.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, n_cam, *probe.shape[1:]))
        import time
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            idx = np.arange(i, min(n, i + batch))
            images = data.frames(idx).to(device).float() / 255.0
            with autocast(device, precision):
                f = vision.features(images.flatten(0, 1))
            out[i:i + len(idx)] = f.float().view(len(idx), n_cam, *f.shape[1:]).cpu().numpy().astype(np.float16)
        out.flush()
        del out
        vision.train(was)
        os.replace(tmp, path)
        write_json(folder / f"{key}.json", {"frames": n, "cameras": list(data.info.cameras),
                                            "shape": list(probe.shape[1:]), "dtype": "float16",
                                            "seconds": round(time.perf_counter() - t0, 1)})
        log(f"feature cache: {n} frames x {n_cam} cameras of frozen features {tuple(probe.shape[1:])} -> {path} "
            f"({path.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t0:.0f} s)")
    elif rank == 0:
        log(f"feature cache: reusing {path}")
    if world > 1:
        torch.distributed.barrier()
    return FeatureCache(path)
