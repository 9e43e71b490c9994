"""`lara eval bag`: open-loop replay of recorder-written bags through a real (tiny) checkpoint,
the metric arithmetic against a known policy, and bad input -> exit 2."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("rclpy")
pytest.importorskip("lara_msgs.msg")

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
sys.path.insert(0, str(Path(__file__).parents[1] / "ros"))
from bagmaker import FOREIGN_MAPPING, foreign_bag, plan, recorder_episode  # noqa: E402
from graph_helpers import build_tiny_checkpoint  # noqa: E402

from lara_policy.cli import main as lara  # noqa: E402
from lara_policy.common.policy_api import ChunkPrediction, PolicyMeta  # noqa: E402
from lara_policy.evaluation.bag_eval import episodes_for_policy, evaluate_bags  # noqa: E402

STATE = ["hand_x", "hand_y", "hand_z", "gripper", "goal_x", "goal_y", "goal_z"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("bags")
    for i in range(2):
        recorder_episode(d, f"episode_{i}", steps=30, seed=i, t0=2000.0 + 50 * i, success=(i == 0))
    return d


def test_eval_bag_real_checkpoint_outputs_and_determinism(ckpt, bags, tmp_path):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    assert lara(["eval bag", "--policy", str(ckpt), str(bags), "--out", str(out1), "--seed", "3",
                 "--num-candidates", "4"]) == 0
    assert lara(["eval bag", "--policy", str(ckpt), str(bags), "--out", str(out2), "--seed", "3",
                 "--num-candidates", "4", "--no-plots"]) == 0
    r1 = json.loads((out1 / "results.json").read_text())
    r2 = json.loads((out2 / "results.json").read_text())
    assert r1["kind"] == "open-loop proxy" and "OPEN-LOOP" in (out1 / "results.md").read_text()
    assert r1["episodes"] == 2
    # trimmed to the 30 executed steps; a chunk every 8 steps -> 4 per episode
    assert [e["steps"] for e in r1["per_episode"]] == [30, 30] and r1["chunks"] == 8
    assert r1["action_dims"] == ["dx", "dy", "dz", "gripper"]
    assert r1["chunk_mae"] == r2["chunk_mae"] and r1["mae_per_dim"] == r2["mae_per_dim"]   # --seed: deterministic
    assert r1["dynamics_check"]["checked"] == 8 and 0 <= r1["dynamics_check"]["flagged"] <= 8
    assert r1["latency_ms"]["p50"] > 0 and r1["latency_ms"]["p95"] >= r1["latency_ms"]["p50"]
    # surprise pairs the frames t and t + C the LAM was trained on: finite exactly where the
    # episode still has the frame C steps later
    from lara_policy.core.checkpoint import read_config
    c = read_config(ckpt)[0].offset
    rows = r1["per_episode"][0]["surprise"]
    assert [np.isfinite(x["surprise"]) for x in rows] == [x["step"] + c < 30 for x in rows]
    assert any(np.isfinite(x["surprise"]) for x in rows)
    for f in ("pred_vs_exec_ep0.png", "pred_vs_exec_ep1.png", "error_hist.png", "surprise.png"):
        assert (out1 / f).stat().st_size > 1000
    assert r1["per_episode"][0]["success"] is True and r1["per_episode"][1]["success"] is False


class KnownPolicy:
    """A TEST DOUBLE of the Policy protocol that returns the executed actions plus a known offset,
    looked up by the observation's hand position (so the metric arithmetic can be checked)."""

    def __init__(self, offset):
        self.meta = PolicyMeta("ee_delta_xyz_gripper", 4, 8, 1 / 30, ["corner4"], (32, 32), 7, STATE, "known")
        self.offset = np.asarray(offset, np.float32)
        self.table = None

    def reset(self):
        pass

    def predict_chunk(self, obs, num_candidates=1, seed=None):
        k = int(np.argmin(np.abs(self.table[:, :3] - obs.state[:3]).sum(1)))
        acts = np.zeros((8, 4), np.float32)
        n = min(8, len(self.actions) - k)
        acts[:n] = self.actions[k:k + n]
        return ChunkPrediction(actions=acts + self.offset, info={"latency_ms": 1.0})


def test_metrics_against_a_known_policy(bags):
    pol = KnownPolicy([0.1, 0.0, -0.2, 0.0])
    eps = episodes_for_policy([bags / "episode_0"], pol.meta, None, None, trim=True)
    ep = eps[0][0].episode
    pol.table, pol.actions = ep.state, ep.actions
    np.testing.assert_allclose(ep.actions, plan(30, seed=0)[5:35], atol=1e-5)
    res = evaluate_bags(pol, eps, replan_steps=5)
    assert res["chunks"] == 6
    assert res["mae_per_dim"]["dx"] == pytest.approx(0.1, abs=1e-5)
    assert res["mae_per_dim"]["dz"] == pytest.approx(0.2, abs=1e-5)
    assert res["mae_per_dim"]["dy"] == pytest.approx(0.0, abs=1e-5)
    assert res["rmse_per_dim"]["dz"] == pytest.approx(0.2, abs=1e-5)
    assert res["first_step_mae"] == pytest.approx(0.075, abs=1e-5)
    assert res["dynamics_check"]["flagged_fraction"] is None and res["latency_ms"]["p50"] == 1.0


def test_bad_input_exit_2(ckpt, bags, tmp_path, capsys):
    fb = foreign_bag(tmp_path / "fb", steps=10)
    assert lara(["eval bag", "--policy", str(ckpt), str(fb), "--out", str(tmp_path / "o")]) == 2
    assert "give --mapping" in capsys.readouterr().err
    mp = tmp_path / "m.yaml"
    mp.write_text(FOREIGN_MAPPING)
    assert lara(["eval bag", "--policy", str(ckpt), str(fb), "--mapping", str(mp), "--out", str(tmp_path / "o")]) == 2
    assert "differ from the checkpoint's" in capsys.readouterr().err
    assert lara(["eval bag", "--policy", str(tmp_path), str(bags), "--out", str(tmp_path / "o")]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err


def test_a_rate_other_than_the_checkpoints_warns_once(ckpt, bags, tmp_path, capsys):
    """--rate other than the checkpoint's 1 / dt: one warning line (then the replay runs)."""
    from lara_policy.core.policy import LaraPolicy
    rate = 1.0 / LaraPolicy.from_checkpoint(ckpt).meta.dt
    out = tmp_path / "o"
    assert lara(["eval bag", "--policy", str(ckpt), str(bags), "--out", str(out), "--rate", str(2 * rate),
                 "--no-plots"]) == 0
    err = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert err == [f"lara eval bag: warning: --rate {2 * rate:g} Hz differs from the checkpoint's control rate "
                   f"{rate:g} Hz (dt {1 / rate:g} s): its chunks are scored against executed actions of "
                   f"{1000 / (2 * rate):.1f} ms steps, not {1000 / rate:.1f} ms"]
    assert lara(["eval bag", "--policy", str(ckpt), str(bags), "--out", str(out), "--rate", str(rate),
                 "--no-plots"]) == 0
    assert "warning" not in capsys.readouterr().err
