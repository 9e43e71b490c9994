"""Training data of any format, opened read-only with one API (`.meta`, `len`, `episode(i)`,
iteration over Episode, `used_seeds()`, context manager): an episode store (HDF5 file) or a
LeRobot v3.0 dataset folder. Above both formats, so neither imports the other."""
from __future__ import annotations

import json
from pathlib import Path

from lara_policy.formats.lerobot import LeRobotV3Source
from lara_policy.formats.store import EpisodeStore


def open_episode_source(path: str | Path):
    """Open training data read-only: an episode store (HDF5 file) or a LeRobot v3.0 dataset
    directory (`lara_policy.formats.lerobot.LeRobotV3Source`: same .meta, len, episode(i),
    iteration over Episode, used_seeds(), context manager)."""
    if Path(path).is_dir():
        return LeRobotV3Source(path)
    return EpisodeStore(path)


def write_train_seeds(checkpoint_dir: str | Path, stores: list[str | Path]) -> Path:
    """Write `train_seeds.json` ({task: [seeds]}, the union of the stores' used_seeds())
    into a checkpoint directory; `lara eval sim --policy DIR` then refuses those seeds."""
    seeds: dict[str, set[int]] = {}
    for p in stores:
        with open_episode_source(p) as s:
            for t, v in s.used_seeds().items():
                seeds.setdefault(t, set()).update(v)
    out = Path(checkpoint_dir) / "train_seeds.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({t: sorted(v) for t, v in sorted(seeds.items())}))
    return out
