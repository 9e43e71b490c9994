"""Action probe on LAM latents: held-out R^2 from a real (briefly trained) LAM."""
from __future__ import annotations

import json

from synthetic import make_store, tiny_train_config
from lara_policy.cli import main as lara_main
from lara_policy.core.probe import TrainSeedOverlap, probe, r2_score
from lara_policy.core.train import train

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """Same tasks and look as the training store, layouts (seeds) the models never saw. 20
    episodes: with 6, the 2 held-out episodes of the probe made R^2 swing by +-0.3 between runs;
    with 10 the same LAM scored R^2 0.13 on one machine's float kernels and > 0.15 on another's
    (with 20: 0.36, shuffled control -0.02)."""
    d = tmp_path_factory.mktemp("heldout")
    return make_store(d / "heldout.hdf5", episodes=20, steps=30, size=40, seed=11)


def test_r2_score():
    y = np.random.default_rng(0).normal(size=(50, 3))
    assert abs(r2_score(y, y) - 1) < 1e-9
    assert abs(r2_score(y, np.tile(y.mean(0), (50, 1)))) < 1e-9


@pytest.fixture(scope="module")
def lam_run(stores, tmp_path_factory):
    """A LAM-only run long enough for its latent to carry the square's motion."""
    return train(tiny_train_config(tmp_path_factory.mktemp("lam"), [stores["demos"]], paradigm="lam-pretrain",
                                   steps=200, video=[str(stores["video"])]))


def test_probe_reads_actions_from_lam_latents(stores, heldout, lam_run, tmp_path, capsys):
    final = lam_run
    # the training store is refused (evaluation leak), with a clear message and exit code 2
    with pytest.raises(TrainSeedOverlap, match="train_seeds"):
        probe(final, [str(stores["demos"])])
    capsys.readouterr()
    assert lara_main(["probe", "--lam", str(final), "--data", str(stores["demos"]), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "trained on" in err and "--allow-train-seeds" in err and "Traceback" not in err
    # ... unless asked for explicitly
    assert probe(final, [str(stores["demos"])], holdout=0.34, allow_train_seeds=True)["test_samples"] > 0
    result = probe(final, [str(heldout)], kind="linear", holdout=0.34)
    assert result["test_samples"] > 0 and result["latent_size"] == 4 * 8
    # the square's motion is in the frame pair: the latent must carry it; shuffled targets must not
    assert result["r2"] > 0.15, result
    assert result["r2"] - result["r2_shuffled_control"] > 0.15, result
    out = tmp_path / "probe.json"
    assert lara_main(["probe", "--lam", str(final), "--data", str(heldout), "--holdout", "0.34",
                      "--kind", "mlp", "--threads", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["kind"] == "mlp"


def test_alignment_diagnostic_flags_a_constant_latent(stores, heldout, trained_run, tmp_path, monkeypatch, capsys):
    from lara_policy.core import probe as probe_mod
    from lara_policy.core.modeling import LatentActionModel

    # trained_run saw demos AND the action-free video: both are refused
    for store in ("demos", "video"):
        with pytest.raises(TrainSeedOverlap):
            probe_mod.alignment(trained_run, [str(stores[store])], limit=8)
    assert lara_main(["probe", "--alignment", "--lam", str(trained_run), "--data", str(stores["demos"]),
                      "--threads", "1"]) == 2
    assert "trained on" in capsys.readouterr().err
    r = probe_mod.alignment(trained_run, [str(heldout)], holdout=0.34, limit=64)
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
    c = probe_mod.alignment(trained_run, [str(heldout)], holdout=0.34, limit=32)
    assert c["l_lara_constant"] < 1e-6 and c["future_sensitivity"] < 1e-6, c
    out = tmp_path / "align.json"
    monkeypatch.undo()
    assert lara_main(["probe", "--alignment", "--lam", str(trained_run), "--data", str(heldout),
                      "--holdout", "0.34", "--threads", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["variant"] == "lara"


def test_effective_dims_sees_dimensional_collapse():
    from lara_policy.core.modeling import VectorQuantizer
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(2000, 4, 16, generator=g)
    line = torch.randn(2000, 4, 1, generator=g) * torch.randn(1, 4, 16, generator=g)   # each token on a line
    assert VectorQuantizer.effective_dims(iso) > 14
    assert VectorQuantizer.effective_dims(line) < 1.01


def test_probe_reads_the_checkpoints_lam_camera(stores, tmp_path, capsys):
    """A store with several cameras: the probe feeds the LAM the camera it was trained on
    (the checkpoint's first), not the store's first; a store without it is refused."""
    from lara_policy.core.checkpoint import save_checkpoint
    from lara_policy.core.modeling import LaraModel
    from lara_policy.core.probe import latent_dataset, load_lam
    from lara_policy.core.processing import ChunkDataset, NormStats
    from synthetic import tiny_model_config

    cfg = tiny_model_config()
    cfg.components, cfg.vla.cameras = ["lam"], ["gripperPOV"]          # the store's SECOND camera
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "lam_wrist", LaraModel(cfg).eval(), cfg)
    model, config = load_lam(ckpt)
    xtr, _, xte, _ = latent_dataset(model, config, [str(stores["two_cams"])], holdout=0.5)
    c = config.offset
    ds = ChunkDataset([str(stores["two_cams"])], cameras=["gripperPOV"], image_size=16, horizon=c, offset=c)
    ds.attach_text(np.zeros((len(ds.instructions), 1, 1), np.float32), np.ones((len(ds.instructions), 1), bool))
    idx = np.flatnonzero(np.arange(len(ds)) + c <= ds.ep_end)
    b = ds.batch(idx, NormStats([0.0] * 4, [1.0] * 4, [0.0] * 7, [1.0] * 7))
    with torch.no_grad():
        want = model.lam.encode(b["image_t"], b["image_tc"]).flatten(1).numpy()
    np.testing.assert_allclose(np.concatenate([xtr, xte]), want, rtol=1e-5, atol=1e-6)
    # a store without the LAM's camera: clear error, exit 2
    capsys.readouterr()
    assert lara_main(["probe", "--lam", str(ckpt), "--data", str(stores["demos"]), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "gripperPOV" in err and "Traceback" not in err


def test_surprise_separates_executed_from_blocked(lam_run):
    """Surprise against a prediction of the typical motion (the mean latent of moving right,
    as f_psi predicts a conditional mean): moving right elsewhere in the scene is less
    surprising than the arm blocked, (I_t, I_t). A latent blind to the future frame gives 0.5."""
    from lara_policy.core.policy import image_to_tensor
    from lara_policy.core.probe import load_lam, roc_auc
    from synthetic import draw

    model, config = load_lam(lam_run)
    img = lambda x, y: image_to_tensor(draw(x, y, 40), config.lam.image_size)[None]   # noqa: E731
    rng = np.random.default_rng(0)
    with torch.no_grad():
        predicted = torch.cat([model.lam.encode(img(x, y), img(x + 0.13, y))
                               for x, y in rng.uniform(0.2, 0.5, (20, 2))]).mean(0, keepdim=True)
    executed, blocked = [], []
    for x, y in rng.uniform(0.2, 0.5, (40, 2)):
        executed.append(model.surprise(predicted, img(x, y), img(x + 0.13, y)))
        blocked.append(model.surprise(predicted, img(x, y), img(x, y)))
    executed, blocked = np.array(executed), np.array(blocked)
    assert roc_auc(blocked, executed) >= 0.65, (executed, blocked)
    assert blocked.mean() > 1.2 * executed.mean(), (executed.mean(), blocked.mean())


def test_dynamics_check_auc(stores, heldout, trained_run, tmp_path, capsys):
    """`lara probe --dynamics-check`: on held-out steps the shipped consensus score ranks the
    expert's chunk above corrupted ones (the earlier effect score was at chance); refuses the
    training store like every probe mode."""
    from lara_policy.core.probe import CORRUPTIONS, dynamics_check_auc, roc_auc

    assert roc_auc([2, 3], [1, 1]) == 1.0 and roc_auc([1], [1]) == 0.5 and roc_auc([0], [1, 2]) == 0.0
    with pytest.raises(TrainSeedOverlap):
        dynamics_check_auc(trained_run, [str(stores["demos"])], limit=8)
    r = dynamics_check_auc(trained_run, [str(heldout)], limit=64, samples=4)
    assert r["steps"] == 64 and set(r["check"]) >= {"shipped", "consensus"}
    consensus = np.mean([r["check"]["consensus"][c]["paired"] for c in CORRUPTIONS])
    assert consensus > 0.65, r["check"]["consensus"]
    assert 0.0 <= r["surprise"]["blocked_start"]["auc"] <= 1.0
    out = tmp_path / "dc.json"
    assert lara_main(["probe", "--dynamics-check", "--lam", str(trained_run), "--data", str(heldout), "--limit", "16",
                      "--samples", "2", "--threads", "1", "--out", str(out)]) == 0
    assert "consensus" in capsys.readouterr().out and json.loads(out.read_text())["steps"] == 16


def test_heldout_split_takes_every_task():
    """A store written task by task (as `lara demos` does): the held-out episodes are the last
    of EACH task, not the store's last (which would all be one task)."""
    from lara_policy.core.probe import heldout_mask

    class Flat:                                    # 8 episodes of 5 steps: 4 of task a, then 4 of b
        ep_end = np.repeat(np.arange(8) * 5 + 4, 5)

        def __len__(self):
            return 40

    tasks = np.repeat(["a"] * 4 + ["b"] * 4, 5)
    held = heldout_mask(Flat(), tasks, 0.25)
    assert set(tasks[held]) == {"a", "b"} and held.sum() == 10
    assert held[15:20].all() and held[35:40].all() and not held[:15].any()
