"""Tiny procedurally drawn episode stores for the core tests: a coloured square moves on a
grey background by exactly the commanded action (dx, dy), so latent actions, probes and the
policy have something real to learn."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lara_policy.core.configuration import ModelConfig, TrainConfig
from lara_policy.formats.store import Episode, EpisodeStore, StoreMeta

STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper", "goal_x", "goal_y", "goal_z"]
TASKS = {"move-right": "move the square to the right", "move-down": "push the square down"}


def draw(x: float, y: float, size: int, colour=(220, 40, 40), background=110) -> np.ndarray:
    img = np.full((size, size, 3), background, np.uint8)
    s = max(3, size // 4)
    cx, cy = int(round(x * (size - s))), int(round(y * (size - s)))
    img[cy:cy + s, cx:cx + s] = colour
    return img


def make_episode(rng: np.random.Generator, task: str, steps: int, size: int, action_free: bool,
                 cameras: list[str]) -> Episode:
    pos = rng.uniform(0.2, 0.5, size=2)
    direction = np.array([1.0, 0.0]) if task == "move-right" else np.array([0.0, 1.0])
    images = {c: [] for c in cameras}
    states, actions = [], []
    for t in range(steps):
        speed = 0.6 + 0.4 * np.sin(0.3 * t + rng.uniform(0, 0.1))
        act = np.concatenate([direction * speed, [0.0], [1.0 if t > steps // 2 else -1.0]]).astype(np.float32)
        colour = (220, 40, 40) if act[3] < 0 else (40, 40, 220)      # the gripper state is visible
        for i, c in enumerate(cameras):
            images[c].append(draw(pos[0], pos[1], size, colour=colour, background=110 + 30 * i))
        states.append(np.array([pos[0], pos[1], 0.0, act[3], 0.9, 0.9, 0.0], np.float32))
        actions.append(act)
        pos = np.clip(pos + 0.02 * act[:2], 0.0, 1.0)
    return Episode(images={c: np.stack(v) for c, v in images.items()}, state=np.stack(states),
                   actions=None if action_free else np.stack(actions), instruction=TASKS[task], task=task,
                   seed=int(rng.integers(1 << 30)), success=True, source="video" if action_free else "expert")


def make_store(path: Path, episodes: int = 6, steps: int = 30, size: int = 40, action_free: bool = False,
               cameras: tuple[str, ...] = ("corner4",), seed: int = 0) -> Path:
    meta = StoreMeta(env="synthetic-square", action_space="ee_delta_xyz_gripper", action_dim=4, state_dim=7,
                     cameras=list(cameras), image_size=(size, size), dt=0.0125, state_names=STATE_NAMES,
                     phrasings={k: [v] for k, v in TASKS.items()})
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, meta, overwrite=True) as store:
        for i in range(episodes):
            task = list(TASKS)[i % len(TASKS)]
            store.append(make_episode(rng, task, steps, size, action_free, list(cameras)))
    return path


def tiny_model_config(variant: str = "lara") -> ModelConfig:
    m = ModelConfig(name="tiny", variant=variant)
    m.vla.image_size, m.vla.width, m.vla.depth, m.vla.heads = 32, 64, 4, 4
    m.vla.vision_channels = [16, 32, 64]
    m.vla.horizon, m.vla.euler_steps = 8, 4
    m.lam.image_size, m.lam.width, m.lam.num_queries, m.lam.latent_dim, m.lam.codebook_size = 16, 32, 4, 8, 16
    m.lam.channels, m.lam.patch_size = [16, 32], 4
    return m


def tiny_train_config(tmp: Path, data: list, **kw) -> TrainConfig:
    model = kw.pop("model", None) or tiny_model_config(kw.get("variant", "lara"))
    base = dict(data=[str(p) for p in data], out=str(tmp), steps=20, batch_size=16, lr=2e-3, warmup_steps=5,
                threads=1, progress=False, log_every=5, save_every=0, aug_shift=2, model=model)
    base.update(kw)
    return TrainConfig(**base)
