"""Rotation actions (ee_delta_6d_gripper) from a bag to a trained model: a bag whose Servo twists
rotate the tool converts to 7-D actions equal to the truth (rotation vectors in the twists' base
frame, composed on the left: MoveIt Servo's convention), and `lara train` on that store trains a
model with action_dim 7 (normalisation stats, chunk, ONNX export, `lara eval bag` per dimension)."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("lara_msgs.msg")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

from rotbag import FRAME, ROT_MAPPING, ROT_SCALE, SCALE, rotation_bag  # noqa: E402

from lara_policy.cli import main as lara  # noqa: E402
from lara_policy.formats.store import EpisodeStore  # noqa: E402

DIMS = ["dx", "dy", "dz", "drot_x", "drot_y", "drot_z", "gripper"]


def convert(*argv) -> int:
    return lara(["convert", *map(str, argv)])


@pytest.fixture(scope="module")
def rot_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("rot")
    truths = []
    for i in range(2):
        _, truth = rotation_bag(d / "bags" / f"ep{i}", steps=60, seed=i, t0=300.0 + 100 * i)
        truths.append(truth)
    (d / "map.yaml").write_text(ROT_MAPPING)
    out = d / "rot.hdf5"
    assert convert(d / "bags", "--mapping", d / "map.yaml", "--out", out) == 0
    return out, truths, d


def test_rotating_bag_converts_to_7d_actions_equal_to_the_truth(rot_store):
    out, truths, _ = rot_store
    with EpisodeStore(out) as s:
        assert s.meta.action_space == "ee_delta_6d_gripper" and s.meta.action_dim == 7
        assert s.meta.extra["action_dims"] == DIMS and s.meta.extra["action_frame"] == FRAME
        assert len(s) == 2
        for i, truth in enumerate(truths):
            ep = s.episode(i)
            assert ep.num_steps == len(truth["actions"])
            # every step: the twist commanded after that frame, back in action units
            np.testing.assert_allclose(ep.actions, truth["actions"], atol=1e-5)
            assert np.abs(ep.actions[:, 3:6]).max() > 0.5          # the rotation is really there
            # the store's rotation delta explains the recorded tool orientation: R_{k+1} = exp(a_rot *
            # ee_rot_scale_rad) R_k (base frame, left), not R_k exp(...) (tool frame, right)
            R = Rotation.from_quat(ep.state[:, 3:7].astype(np.float64))
            step = Rotation.from_rotvec(ep.actions[:-1, 3:6].astype(np.float64) * ROT_SCALE)
            left = (R[1:] * (step * R[:-1]).inv()).magnitude()
            right = (R[1:] * (R[:-1] * step).inv()).magnitude()
            assert left.max() < 1e-5, left.max()
            assert right.max() > 1e-3                                # the test can tell the two apart
            np.testing.assert_allclose(np.diff(ep.state[:, :3], axis=0), ep.actions[:-1, :3] * SCALE, atol=1e-6)


def test_rotating_twists_need_a_rotation_scale(rot_store, capsys):
    _, _, d = rot_store
    no_scale = d / "no_scale.yaml"
    no_scale.write_text(ROT_MAPPING.replace(f", ee_rot_scale_rad: {ROT_SCALE:g}", ""))
    assert convert(d / "bags", "--mapping", no_scale, "--out", d / "x.hdf5") == 2
    err = capsys.readouterr().err
    assert "ee_rot_scale_rad" in err and "rotate" in err and not (d / "x.hdf5").exists()
    # 0 drops the rotation knowingly: xyz + gripper
    drop = d / "drop.yaml"
    drop.write_text(ROT_MAPPING.replace(f"ee_rot_scale_rad: {ROT_SCALE:g}", "ee_rot_scale_rad: 0"))
    assert convert(d / "bags", "--mapping", drop, "--out", d / "drop.hdf5") == 0
    with EpisodeStore(d / "drop.hdf5") as s:
        assert s.meta.action_space == "ee_delta_xyz_gripper" and s.meta.action_dim == 4


def test_twists_of_another_frame_are_not_mixed_into_one_store(rot_store, tmp_path, capsys):
    """The rotation delta lives in the twists' frame: bags whose twists are in another frame
    (e.g. the tool frame) cannot share a store with base-frame ones."""
    _, _, d = rot_store
    bags = tmp_path / "bags"
    rotation_bag(bags / "a", steps=20, seed=3)
    rotation_bag(bags / "b", steps=20, seed=4, t0=600.0, frame="tool0")
    assert convert(bags, "--mapping", d / "map.yaml", "--out", tmp_path / "mixed.hdf5") == 2
    assert "'tool0'" in capsys.readouterr().err


TINY = ["--image-size", "32", "--width", "32", "--horizon", "8", "--euler-steps", "2",
        "--threads", "1", "--quiet", "--batch-size", "8", "--log-every", "2"]


def test_lara_train_on_the_rotation_store_gives_a_7d_policy_and_onnx(rot_store, tmp_path):
    pytest.importorskip("onnxruntime")
    from lara_policy.common.policy_api import Observation
    from lara_policy.core.policy import LaraPolicy

    out, _, _ = rot_store
    run = tmp_path / "run"
    assert lara(["train", "--paradigm", "pretrain", "--variant", "dit_only", "--data", str(out), "--out", str(run),
                 "--steps", "4", *TINY]) == 0
    ckpt = run / "final"
    pol = LaraPolicy.from_checkpoint(ckpt, device="cpu")
    assert pol.meta.action_space == "ee_delta_6d_gripper" and pol.meta.action_dim == 7
    # normalisation stats per action dimension, from the store's 7-D actions
    with EpisodeStore(out) as s:
        acts = np.concatenate([s.episode(i).actions for i in range(len(s))])
        state = s.episode(0).state[0]
        img = s.episode(0).images["front"][0]
    np.testing.assert_allclose(np.asarray(pol._action_mean).reshape(-1), acts.mean(0), atol=1e-5)
    np.testing.assert_allclose(np.asarray(pol._action_std).reshape(-1), np.maximum(acts.std(0), 1e-2), rtol=1e-4)
    obs = Observation(images={"front": img}, state=state, instruction="turn the handle")
    chunk = pol.predict_chunk(obs, seed=0).actions
    assert chunk.shape == (8, 7) and np.all(np.isfinite(chunk))
    # the chunk goes out in the store's action space (what command_node checks at arrival)
    from lara_policy.ros.codec import chunk_to_msg, msg_to_chunk
    back = msg_to_chunk(chunk_to_msg(chunk.astype(np.float32), 1.0, 1 / 30, pol.meta.action_space, "x", "m"))
    assert back.action_space == "ee_delta_6d_gripper" and back.actions.shape == (8, 7)
    # ONNX export of the 7-D model, parity with PyTorch
    onnx = tmp_path / "onnx"
    assert lara(["export", str(ckpt), "--to", "onnx", "--out", str(onnx)]) == 0
    info = json.loads((onnx / "export.json").read_text())
    assert info["parity"]["n1"]["actions_max_abs"] < 1e-4, info["parity"]
    ort = LaraPolicy.from_checkpoint(ckpt, device="cpu", runtime="onnxruntime", onnx_dir=onnx)
    np.testing.assert_allclose(ort.predict_chunk(obs, seed=0).actions, chunk, atol=1e-4)
    # `lara eval bag` replays the rotating bag through the 7-D checkpoint, scored per dimension
    _, _, d = rot_store
    assert lara(["eval", "bag", "--policy", str(ckpt), str(d / "bags"), "--mapping", str(d / "map.yaml"),
                 "--out", str(tmp_path / "ev")]) == 0
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["action_dims"] == DIMS and res["policy"]["action_space"] == "ee_delta_6d_gripper"
    assert all(np.isfinite(res["mae_per_dim"][k]) for k in DIMS)
