"""A two-camera graph from lara_bringup/config/sim.yaml over real DDS: `lara bringup`'s overrides
for a checkpoint that reads corner4 + gripperPOV make sim_node render both, policy_node subscribe
to both and the recorder record both; an episode runs, and its bag converts to a store with both
cameras, every step's pair of frames from one sim tick."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from graph_helpers import GoalSeekingTestPolicy, build_tiny_checkpoint

pytestmark = pytest.mark.ros

CAMS = ["corner4", "gripperPOV"]


def test_two_camera_checkpoint_runs_and_records_both_cameras(ros, tmp_path):
    from lara_policy.formats.rosbag.convert import convert_bags
    from lara_policy.formats.rosbag.reader import iter_messages
    from lara_policy.ros.bringup import Graph, build_overrides, resolve_config
    from lara_policy.ros.params import load_params_yaml

    ckpt = build_tiny_checkpoint(tmp_path / "tiny2", cameras=CAMS)
    config = load_params_yaml(resolve_config("sim"))
    over = build_overrides(config, argparse.Namespace(checkpoint=str(ckpt), record_dir=str(tmp_path / "bags"),
                                                      task="reach-v3", num_candidates=None, device=None))
    assert over["sim_node"]["cameras"] == CAMS
    assert over["policy_node"]["image_topics"] == ["/camera/image_raw", "/camera/gripperPOV/image_raw"]
    assert "/camera/gripperPOV/image_raw" in over["recorder_node"]["topics"]
    assert "/camera/image_raw" in over["recorder_node"]["topics"]
    # a one-camera checkpoint changes nothing
    one = build_tiny_checkpoint(tmp_path / "tiny1")
    plain = build_overrides(config, argparse.Namespace(checkpoint=str(one), record_dir="", task="reach-v3",
                                                       num_candidates=None, device=None))
    assert "cameras" not in plain["sim_node"] and "image_topics" not in plain["policy_node"]

    policy = GoalSeekingTestPolicy()          # a double that reads both cameras (fast, reaches the goal)
    policy.meta.cameras = list(CAMS)
    seen = []
    orig = policy.predict_chunk
    policy.predict_chunk = lambda obs, num_candidates=1, seed=None: (seen.append(obs), orig(obs, num_candidates))[1]
    over["policy_node"].pop("checkpoint", None)
    graph = Graph(config, ["sim_node", "policy_node", "command_node", "recorder_node"], policy=policy,
                  overrides=over)
    try:
        result = graph.run_episode(1, "reach-v3", 1003, max_steps=60)
        pol = graph.nodes["policy_node"]
        assert pol.chunks_published >= 2, (dict(pol.rejections), pol.last_rejection)
        assert result.steps > 0 and result.bag_path, result
    finally:
        graph.close()
    assert all(set(o.images) == set(CAMS) for o in seen) and seen
    assert all(not np.array_equal(o.images["corner4"], o.images["gripperPOV"]) for o in seen)

    # the bag holds both camera streams, one frame of each per sim tick with one stamp
    stamps = {}
    for topic, _type, _t, msg in iter_messages(result.bag_path, ["/camera/image_raw", "/camera/gripperPOV/image_raw"]):
        stamps.setdefault(topic, []).append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
    assert sorted(stamps) == ["/camera/gripperPOV/image_raw", "/camera/image_raw"]
    a, b = (set(stamps[t]) for t in ("/camera/image_raw", "/camera/gripperPOV/image_raw"))
    assert len(a) > 20 and len(a ^ b) <= 2, "every tick's frames of both cameras were recorded"

    meta, episodes = convert_bags([result.bag_path])
    assert meta.cameras == CAMS
    ep = next(episodes)
    assert ep.num_steps > 20 and set(ep.images) == set(CAMS)
    assert ep.images["gripperPOV"].shape == ep.images["corner4"].shape == (ep.num_steps, 64, 64, 3)

    # lara eval bag replays the two-camera bag through the two-camera checkpoint (both cameras fed)
    from lara_policy.cli import main as lara_main
    out = tmp_path / "bag_eval"
    assert lara_main(["eval", "bag", "--policy", str(ckpt), str(result.bag_path), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["policy"]["cameras"] == CAMS and res["episodes"] == 1 and res["chunks"] >= 3, res.get("policy")
