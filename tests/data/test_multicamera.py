"""Several cameras through the formats: a bag with two camera streams (a recorder episode of a
two-camera sim_node, and any bag through a mapping naming two image topics) converts to a store
with both cameras, each step's frames from the same tick; the same to LeRobot v3 and back; a
camera that stops mid-bag costs the steps after max_age_s, never a stale frame."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("lara_msgs.msg")

sys.path.insert(0, str(Path(__file__).parent))
from bagmaker import plan, recorder_episode  # noqa: E402

from lara_policy.cli import main as lara  # noqa: E402
from lara_policy.formats.rosbag.mapping import extra_cameras, policy_mapping, recorder_mapping  # noqa: E402
from lara_policy.formats.store import EpisodeStore  # noqa: E402


def _aligned(ep, a="corner4", b="gripperPOV") -> np.ndarray:
    """Per step: True when the second camera's frame is the first's tick's (bagmaker: 255 - it)."""
    x, y = ep.images[a].astype(int), ep.images[b].astype(int)
    return np.all(x + y == 255, axis=(1, 2, 3))


def test_recorder_bag_with_two_cameras_converts_to_both_aligned(tmp_path, capsys):
    rec = tmp_path / "rec"
    # the wrist frames stamped 4 ms after the scene camera's (unsynchronised drivers) and, in the
    # second episode, identically (sim_node stamps every camera of a tick alike)
    for i, off in enumerate([0.004, 0.0]):
        recorder_episode(rec, f"episode_{i}", seed=i, t0=1000.0 + 100 * i, extra_cameras={"gripperPOV": off})
    out = tmp_path / "two.hdf5"
    assert lara(["convert", str(rec), "--out", str(out), "--print-mapping"]) == 0
    assert "/camera/gripperPOV/image_raw" in capsys.readouterr().out
    with EpisodeStore(out) as s:
        assert s.meta.cameras == ["corner4", "gripperPOV"] and s.meta.image_size == (32, 32)
        assert len(s) == 2
        for i in range(2):
            ep = s.episode(i)
            assert ep.num_steps == len(plan(40, seed=i))          # no step lost to the second camera
            assert _aligned(ep).all(), f"episode {i}: a wrist frame from another tick"
            assert not np.array_equal(ep.images["gripperPOV"][0], ep.images["gripperPOV"][-1])


def test_mapping_with_two_image_topics(tmp_path):
    rec = tmp_path / "rec"
    recorder_episode(rec, "episode_0", extra_cameras={"wrist": 0.004})
    mp = tmp_path / "map.yaml"
    mp.write_text("cameras:\n  front: /camera/image_raw\n  wrist: /camera/wrist/image_raw\n"
                  "state:\n  - {name: hand_x, topic: /lara/ee_pose, field: pose.position.x}\n"
                  "action: {topic: /servo_node/delta_twist_cmds, type: twist}\n"
                  "gripper: {topic: /lara/gripper_command, field: data}\n"
                  "instruction: {topic: /lara/instruction, field: data}\n")
    out = tmp_path / "m.hdf5"
    assert lara(["convert", str(rec / "episode_0"), "--mapping", str(mp), "--out", str(out)]) == 0
    with EpisodeStore(out) as s:
        assert s.meta.cameras == ["front", "wrist"]
        ep = s.episode(0)
        assert _aligned(ep, "front", "wrist").all() and ep.num_steps >= 40


def test_a_camera_that_stops_costs_its_steps_not_a_stale_frame(tmp_path):
    rec = tmp_path / "rec"
    recorder_episode(rec, "episode_0", extra_cameras={"gripperPOV": 0.0}, extra_until=20)
    mp = tmp_path / "map.yaml"
    mp.write_text("cameras: {corner4: /camera/image_raw, gripperPOV: /camera/gripperPOV/image_raw}\n"
                  "state:\n  - {name: hand_x, topic: /lara/ee_pose, field: pose.position.x}\n"
                  "action: {topic: /servo_node/delta_twist_cmds, type: twist}\n"
                  "instruction: go\nmax_age_s: 0.1\n")
    out = tmp_path / "stop.hdf5"
    assert lara(["convert", str(rec / "episode_0"), "--mapping", str(mp), "--out", str(out)]) == 0
    with EpisodeStore(out) as s:
        ep = s.episode(0)
        # 20 ticks with the wrist camera, then 3 more within max_age_s 0.1 s (a stale frame at most
        # 0.1 s old, what policy_node also accepts), then none
        assert 20 <= ep.num_steps <= 24, ep.num_steps
        assert _aligned(ep)[:20].all()


def test_two_cameras_to_lerobot_v3_and_back(tmp_path):
    from lara_policy.formats.lerobot import LeRobotV3Source

    rec = tmp_path / "rec"
    for i in range(2):
        recorder_episode(rec, f"episode_{i}", steps=20, seed=i, t0=1000.0 + 100 * i,
                         extra_cameras={"gripperPOV": 0.004})
    assert lara(["convert", str(rec), "--out", str(tmp_path / "direct.hdf5")]) == 0
    assert lara(["convert", str(rec), "--to", "lerobot", "--out", str(tmp_path / "v3")]) == 0
    info = (tmp_path / "v3" / "meta" / "info.json").read_text()
    assert "observation.images.corner4" in info and "observation.images.gripperPOV" in info
    assert lara(["convert", str(tmp_path / "v3"), "--out", str(tmp_path / "back.hdf5")]) == 0
    with EpisodeStore(tmp_path / "direct.hdf5") as a, EpisodeStore(tmp_path / "back.hdf5") as b, \
            LeRobotV3Source(tmp_path / "v3") as v:
        assert a.meta.cameras == b.meta.cameras == v.meta.cameras == ["corner4", "gripperPOV"]
        for x, y in zip(a, b):
            assert x.num_steps == y.num_steps
            np.testing.assert_array_equal(x.actions, y.actions)
            for cam in a.meta.cameras:   # video is lossy: same frames within a codec's error, none shifted
                err = np.abs(x.images[cam].astype(int) - y.images[cam].astype(int)).mean(axis=(1, 2, 3))
                assert err.max() < 12, (cam, err.max())
                shifted = np.abs(x.images[cam][1:].astype(int) - y.images[cam][:-1].astype(int)).mean(axis=(1, 2, 3))
                moving = np.abs(np.diff(x.images[cam].astype(int), axis=0)).mean(axis=(1, 2, 3)) > 1
                assert np.all(err[1:][moving] < shifted[moving]), cam
            # the pair stays a pair: the wrist frame of a step is still 255 - the scene frame
            pair = np.abs(y.images["corner4"].astype(int) + y.images["gripperPOV"].astype(int) - 255).mean()
            assert pair < 12


def test_recorder_and_policy_mappings_name_every_camera():
    topics = {"/camera/image_raw": "sensor_msgs/msg/Image", "/camera/gripperPOV/image_raw": "sensor_msgs/msg/Image",
              "/camera/info": "x", "/lara/ee_pose": "geometry_msgs/msg/PoseStamped"}
    assert extra_cameras(topics) == {"gripperPOV": "/camera/gripperPOV/image_raw"}
    assert recorder_mapping(topics)["cameras"] == {"corner4": "/camera/image_raw",
                                                   "gripperPOV": "/camera/gripperPOV/image_raw"}
    m = policy_mapping(topics, ["hand_x"], ["corner4", "gripperPOV"], 30.0)
    assert list(m["cameras"]) == ["corner4", "gripperPOV"]
    assert list(policy_mapping(topics, ["hand_x"], "corner4", 30.0)["cameras"]) == ["corner4"]
    from lara_policy.common.errors import ConvertError
    with pytest.raises(ConvertError, match=r"no /camera/<name>/image_raw for \['behindGripper'\]"):
        policy_mapping(topics, ["hand_x"], ["corner4", "behindGripper"], 30.0)
