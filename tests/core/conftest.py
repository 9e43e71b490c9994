"""Shared fixtures of the LARA core tests: tiny stores and one tiny trained run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import make_store, tiny_train_config  # noqa: E402


torch.set_num_threads(1)


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
