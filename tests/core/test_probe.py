"""Action probe on LAM latents: held-out R^2 from a real (briefly trained) LAM."""
from __future__ import annotations

import json

from synthetic import tiny_train_config
from lara_policy.cli import main as lara_main
from lara_policy.core.probe import probe, r2_score
from lara_policy.core.train import train

import numpy as np
import torch


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


def test_alignment_diagnostic_flags_a_constant_latent(stores, trained_run, tmp_path, monkeypatch):
    from lara_policy.core import probe as probe_mod
    from lara_policy.core.modeling import LatentActionModel

    r = probe_mod.alignment(trained_run, [str(stores["demos"])], holdout=0.34, limit=64)
    keys = ("l_lara", "l_lara_shuffled_targets", "l_lara_tau0", "l_lara_constant", "future_sensitivity")
    assert 0 < r["samples"] <= 64 and all(0.0 <= r[k] <= 2.0 for k in keys), r
    assert 1.0 <= r["latent_dims"] <= 8, r     # tiny LAM: d_z = 8
    # the frame pair differs (the square moves): z must depend on the future frame
    assert r["future_sensitivity"] > 1e-3, r
    # a LAM whose latent ignores its input (collapse): the constant prediction is perfect and z
    # ignores the future frame; the diagnostic must say so
    real_encode = LatentActionModel.encode
    monkeypatch.setattr(LatentActionModel, "encode",
                        lambda self, a, b: torch.ones_like(real_encode(self, a, b)))
    c = probe_mod.alignment(trained_run, [str(stores["demos"])], holdout=0.34, limit=32)
    assert c["l_lara_constant"] < 1e-6 and c["future_sensitivity"] < 1e-6, c
    out = tmp_path / "align.json"
    monkeypatch.undo()
    assert lara_main(["probe", "--alignment", "--lam", str(trained_run), "--data", str(stores["demos"]),
                      "--holdout", "0.34", "--threads", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["variant"] == "lara"


def test_effective_dims_sees_dimensional_collapse():
    from lara_policy.core.modeling import VectorQuantizer
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(2000, 4, 16, generator=g)
    line = torch.randn(2000, 4, 1, generator=g) * torch.randn(1, 4, 16, generator=g)   # each token on a line
    assert VectorQuantizer.effective_dims(iso) > 14
    assert VectorQuantizer.effective_dims(line) < 1.01
