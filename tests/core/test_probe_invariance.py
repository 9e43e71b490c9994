"""`lara probe --invariance`: distractor invariance of a LAM on paired clean / distracted stores.

A tiny random-init LAM (2 training steps) on tiny synthetic stores: the measure must be 0 when
the two stores are the same rendering, clearly above 0 when the second store's pixels are
altered (same states, same transitions), and the command must refuse stores that do not pair up."""
from __future__ import annotations

import json

import numpy as np
import pytest

from synthetic import make_store, tiny_train_config
from lara_policy.cli import main as lara_main
from lara_policy.core.probe_invariance import PairingError, invariance
from lara_policy.formats.store import Episode, EpisodeStore
from lara_policy.core.train import train


@pytest.fixture(scope="module")
def tiny_lam(stores, tmp_path_factory):
    """A (nearly) random-init LAM-only checkpoint, trained on the shared demos store."""
    return train(tiny_train_config(tmp_path_factory.mktemp("lam_inv"), [stores["demos"]], paradigm="lam-pretrain",
                                   steps=2, warmup_steps=1))


def _altered_copy(src_path, dst_path, fn, state_fn=None, steps=None):
    """The same episodes (states, actions, seeds) with fn applied to every image (and state_fn to
    the states, when given; cut to their first `steps` steps, when given)."""
    with EpisodeStore(src_path) as src, EpisodeStore.create(dst_path, src.meta, overwrite=True) as dst:
        for i, ep in enumerate(src):
            if steps is not None:
                ep.images = {c: v[:steps] for c, v in ep.images.items()}
                ep.state, ep.actions, ep.step_success = ep.state[:steps], ep.actions[:steps], None
            dst.append(Episode(images={c: fn(v, i) for c, v in ep.images.items()}, state=ep.state if state_fn is None else state_fn(ep.state.copy(), i),
                               actions=ep.actions, instruction=ep.instruction, task=ep.task, seed=ep.seed,
                               success=ep.success, source=ep.source, step_success=ep.step_success,
                               extra=ep.extra))
    return dst_path


def _distract(img: np.ndarray, i: int) -> np.ndarray:
    """A per-episode colour gain and a bright moving blob: pixels only."""
    rng = np.random.default_rng(i)
    out = img.astype(np.float32) * rng.uniform(0.6, 1.4, size=3)
    t = np.arange(len(img))
    for k, x in enumerate((4 + 2 * t) % (img.shape[2] - 6)):
        out[k, 2:8, x:x + 6] = (250, 250, 40)
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    d = tmp_path_factory.mktemp("inv")
    clean = make_store(d / "clean.hdf5", episodes=4, steps=20, size=32, seed=21)
    same = make_store(d / "same.hdf5", episodes=4, steps=20, size=32, seed=21)   # same rendering, another file
    return {"clean": clean, "same": same, "distracted": _altered_copy(clean, d / "dist.hdf5", _distract), "dir": d}


def test_invariance_zero_on_identical_and_positive_on_distracted(tiny_lam, paired, tmp_path, capsys):
    r0 = invariance(tiny_lam, [str(paired["clean"])], [str(paired["same"])], limit=200)
    assert r0["steps"] == 4 * (20 - r0["chunk"]) > 20 and set(r0["per_task"]) == {"move-right", "move-down"}
    for s in [r0["overall"], *r0["per_task"].values()]:
        assert s["dist_same_cos"] == pytest.approx(0.0, abs=1e-6) and s["ratio"] == pytest.approx(0.0, abs=1e-5)
        assert s["ratio_l2"] == pytest.approx(0.0, abs=1e-5) and s["codes_identical_same"] == 1.0
        assert s["code_change_ratio"] == pytest.approx(0.0) and s["dist_different_cos"] > 0
    r1 = invariance(tiny_lam, [str(paired["clean"])], [str(paired["distracted"])], limit=200)
    assert r1["steps"] == r0["steps"]
    # the different-transition baseline is the clean store's own: identical in both runs
    assert r1["overall"]["dist_different_cos"] == pytest.approx(r0["overall"]["dist_different_cos"])
    for s in [r1["overall"], *r1["per_task"].values()]:
        assert s["ratio"] > 0.05 and s["ratio_l2"] > 0.05, s
    # through the CLI: a table on stdout, the JSON file
    out = tmp_path / "inv.json"
    assert lara_main(["probe", "--invariance", "--lam", str(tiny_lam), "--data", str(paired["clean"]),
                      "--distractor-data", str(paired["distracted"]), "--limit", "100", "--threads", "1",
                      "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| move-right |" in text and "| all |" in text and "ratio (1-cos)" in text
    j = json.loads(out.read_text())
    assert j["steps"] == min(100, r0["steps"]) and j["overall"]["ratio"] > 0.05 and "move-down" in j["per_task"]


def _expect_exit2(args, needle, capsys):
    assert lara_main(["probe", "--invariance", *args, "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    return err


def test_invariance_refuses_stores_that_do_not_pair(tiny_lam, paired, capsys):
    d, clean = paired["dir"], str(paired["clean"])
    other_seeds = make_store(d / "other_seeds.hdf5", episodes=4, steps=20, size=32, seed=22)
    shorter = _altered_copy(clean, d / "shorter.hdf5", lambda v, i: v, steps=18)
    fewer = make_store(d / "fewer.hdf5", episodes=3, steps=20, size=32, seed=21)
    other_cam = make_store(d / "other_cam.hdf5", episodes=4, steps=20, size=32, seed=21, cameras=("gripperPOV",))
    bigger = make_store(d / "bigger.hdf5", episodes=4, steps=20, size=40, seed=21)

    def nudge(state, i):                     # same seeds and lengths, another trajectory
        if i == 1:
            state[3, 0] += 0.1
        return state

    moved = _altered_copy(clean, d / "moved.hdf5", lambda v, i: v, nudge)
    lam = ["--lam", str(tiny_lam), "--data", clean, "--distractor-data"]
    err = _expect_exit2([*lam, str(other_seeds)], str(other_seeds), capsys)
    assert "seed" in err
    assert "num_steps" in _expect_exit2([*lam, str(shorter)], str(shorter), capsys)
    assert "episodes" in _expect_exit2([*lam, str(fewer)], str(fewer), capsys)
    assert "corner4" in _expect_exit2([*lam, str(other_cam)], str(other_cam), capsys)
    assert "image size" in _expect_exit2([*lam, str(bigger)], str(bigger), capsys)
    assert "states differ" in _expect_exit2([*lam, str(moved)], str(moved), capsys)
    assert "pair up" in _expect_exit2([*lam, str(paired["same"]), str(paired["same"])], "--distractor-data", capsys)
    _expect_exit2(["--lam", str(tiny_lam), "--data", clean], "--distractor-data", capsys)
    with pytest.raises(PairingError, match="seed"):
        invariance(tiny_lam, [clean], [str(other_seeds)])


def test_invariance_refuses_training_stores(tiny_lam, stores, capsys):
    # the checkpoint trained on stores["demos"]: measuring on it is refused as in every probe mode
    _expect_exit2(["--lam", str(tiny_lam), "--data", str(stores["demos"]), "--distractor-data",
                   str(stores["demos"])], "--allow-train-seeds", capsys)
    assert lara_main(["probe", "--lam", str(tiny_lam), "--data", str(stores["demos"]), "--distractor-data",
                      str(stores["demos"]), "--threads", "1"]) == 2
    assert "--invariance only" in capsys.readouterr().err
