"""Action probe on LAM latents: held-out R^2 from a real (briefly trained) LAM."""
from __future__ import annotations

import json

from synthetic import tiny_train_config
from lara_policy.cli import main as lara_main
from lara_policy.core.probe import probe, r2_score
from lara_policy.core.train import train

import numpy as np


def test_r2_score():
    y = np.random.default_rng(0).normal(size=(50, 3))
    assert abs(r2_score(y, y) - 1) < 1e-9
    assert abs(r2_score(y, np.tile(y.mean(0), (50, 1)))) < 1e-9


def test_probe_reads_actions_from_lam_latents(stores, tmp_path):
    final = train(tiny_train_config(tmp_path / "lam", [stores["demos"]], paradigm="lam-pretrain", steps=120,
                                    video=[str(stores["video"])]))
    result = probe(final, [str(stores["demos"])], kind="linear", holdout=0.34)
    assert result["test_samples"] > 0 and result["latent_size"] == 4 * 8
    # the square's motion is in the frame pair: the latent must carry it; shuffled targets must not
    assert result["r2"] > 0.15, result
    assert result["r2"] - result["r2_shuffled_control"] > 0.15, result
    out = tmp_path / "probe.json"
    assert lara_main(["probe", "--lam", str(final), "--data", str(stores["demos"]), "--holdout", "0.34",
                      "--kind", "mlp", "--threads", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["kind"] == "mlp"
