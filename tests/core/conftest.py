"""Shared fixtures of the LARA core tests: tiny stores and one tiny trained run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import make_store  # noqa: E402

from lara_policy.core.configuration import ModelConfig, TrainConfig  # noqa: E402

torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    return {
        "demos": make_store(d / "demos.hdf5", episodes=6, steps=30, size=40, seed=0),
        "video": make_store(d / "video.hdf5", episodes=4, steps=30, size=40, action_free=True, seed=1),
        "two_cams": make_store(d / "two_cams.hdf5", episodes=2, steps=20, size=32,
                               cameras=("corner4", "gripperPOV"), seed=2),
    }


@pytest.fixture(scope="session")
def trained_run(stores, tmp_path_factory):
    """One small joint (lara) run, shared by the inference and checkpoint tests."""
    from lara_policy.core.train import train
    out = tmp_path_factory.mktemp("run_lara")
    final = train(tiny_train_config(out, [stores["demos"]], video=[str(stores["video"])], steps=40))
    return final
