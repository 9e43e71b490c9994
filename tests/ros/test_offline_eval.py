"""offline_eval: the graph of `lara bringup offline_eval.yaml --bag EPISODE` (real nodes over real
DDS) gets only the observation topics of a recorder-written episode replayed into policy_node,
the recorder (autostarted) records the chunks, and the same scoring as `lara eval bag` ends it."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from bagmaker import recorder_episode  # noqa: E402


def test_bringup_offline_eval_replays_observations_records_and_scores(tiny_checkpoint, tmp_path, ros):
    from geometry_msgs.msg import TwistStamped
    from std_msgs.msg import Float64

    src = recorder_episode(tmp_path / "src", "episode_0", steps=45, image_size=32)
    # a listener on the command topics the SOURCE bag holds: the replay must not publish them
    node = ros.create_node("command_listener")
    heard = []
    node.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", lambda m: heard.append(m), 10)
    node.create_subscription(Float64, "/lara/gripper_command", lambda m: heard.append(m), 10)
    from rclpy.executors import SingleThreadedExecutor
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    graph = None
    try:
        from lara_policy.ros.offline_eval import run_offline_eval
        from lara_policy.ros.bringup import Graph, resolve_config
        from lara_policy.ros.params import load_params_yaml
        out, rec = tmp_path / "score", tmp_path / "evalrec"
        # the graph `lara bringup offline_eval.yaml --bag SRC` builds (in this process: the
        # language model is already loaded by the checkpoint fixture, which keeps the test fast)
        config = load_params_yaml(resolve_config("offline_eval.yaml"))
        graph = Graph(config, overrides={"policy_node": {"checkpoint": str(tiny_checkpoint)},
                                         "recorder_node": {"output_dir": str(rec)}})
        assert sorted(graph.nodes) == ["policy_node", "recorder_node"]        # nothing that moves
        assert not graph.nodes["recorder_node"].recording      # autostarts on the first chunk, not before
        lines = []
        res = run_offline_eval(graph, [str(src)], out, log=lines.append)
    finally:
        if graph is not None:
            graph.close()
        ex.shutdown(timeout_sec=2.0)
        node.destroy_node()
    assert any("replayed" in x for x in lines), lines
    assert (out / "results.md").is_file() and (out / "error_hist.png").is_file()
    res = json.loads((out / "results.json").read_text())
    assert res["chunks_from"] == "recorded replay (policy_node)" and res["episodes"] == 1
    assert res["chunks"] >= 1 and res["action_dims"] == ["dx", "dy", "dz", "gripper"]
    # the recorder autostarted (no start service was called) and holds policy_node's chunks
    eps = [d for d in rec.iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert len(eps) == 1 and res["eval_recording"] == str(eps[0])
    meta = json.loads((eps[0] / "episode_meta.json").read_text())
    assert meta["state"] == "closed" and meta["written"].get("/lara/eval/action_chunk", 0) >= res["chunks"]
    assert res["dynamics_check"]["checked"] == res["chunks"]       # offline_eval.yaml: num_candidates 8
    assert heard == [], f"{len(heard)} recorded command messages were replayed into the graph"
    # bag/live parity: policy_node (seed 0, offline_eval.yaml) fed by the replay and the offline
    # path (lara eval bag's observation from the bag, same seed) give the SAME chunk for the same
    # observation. Not every chunk: policy_node snapshots when the image arrives, and the replay
    # (like sim_node) publishes the state of that tick just after the image, so some chunks were
    # predicted from the previous tick's state.
    import numpy as np

    from lara_policy.common.policy_api import Observation
    from lara_policy.core.policy import LaraPolicy
    from lara_policy.evaluation.bag_eval import episodes_for_policy, recorded_chunks
    pol = LaraPolicy.from_checkpoint(tiny_checkpoint, device="cpu")
    (be, _), = episodes_for_policy([src], pol.meta, None, None, trim=False)
    cam = pol.meta.cameras[0]
    same = 0
    for c in recorded_chunks(Path(res["eval_recording"])):
        k = int(np.argmin(np.abs(be.times - c["t0"])))
        assert abs(be.times[k] - c["t0"]) < 1e-6               # every chunk is stamped with a replayed frame
        ep = be.episode
        for kk in (k, max(k - 1, 0)):
            obs = Observation(images={cam: ep.images[cam][k]}, state=ep.state[kk], instruction=ep.instruction)
            if np.abs(pol.predict_chunk(obs, num_candidates=8, seed=0).actions - c["actions"]).max() < 1e-5:
                same += 1
                break
    assert same >= 1, "no recorded chunk equals the offline prediction from the same observation"
