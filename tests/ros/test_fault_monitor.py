"""The LAM fault monitor through ROS (issue 25): sim_node jams the arm at a known step (its
`fault` parameter), policy_node's monitor sees the observed change disagree with the predicted one
for `debounce` chunks, publishes the alarm on /diagnostics and /lara/monitor_alarm, and
command_node (hold_on_monitor_alarm) holds: FAULT with the monitor's reason, zero motion. The
LAM is a test double here (its surprise: 1 when the camera saw no change over the chunk, else
0.05: what a LAM says when motion was predicted and none happened), so the test checks the
plumbing and the semantics, not the LAM's accuracy (that is `experiments/monitor_eval.sh`)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from graph_helpers import GoalSeekingTestPolicy

pytestmark = pytest.mark.ros


class _JamSensingPolicy(GoalSeekingTestPolicy):
    """The LAM double: the 'latent' of a chunk is how far it commands the hand; the surprise is 1
    when a chunk commanding motion was followed by a camera that saw almost no change."""
    def predict_chunk(self, obs, num_candidates: int = 1, seed=None):
        pred = super().predict_chunk(obs, num_candidates, seed)
        commanded = float(np.abs(pred.actions[:, :3]).mean())
        pred.info["predicted_latent"] = np.full((2, 3), commanded, np.float32)   # LaraPolicy reports one at N = 1
        return pred

    def surprise(self, predicted_latent, image_t, image_tC) -> float:
        changed = float(np.abs(image_tC.astype(np.float32) - image_t.astype(np.float32)).mean())
        return 1.0 if float(np.mean(predicted_latent)) > 0.2 and changed < 0.5 else 0.05


def test_a_jammed_arm_raises_the_monitor_alarm_and_command_node_holds(ros):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from lara_policy.ros.bringup import Graph, resolve_config
    from lara_policy.ros.params import load_params_yaml

    config = load_params_yaml(resolve_config("sim"))
    over = {"sim_node": {"fault": "frozen-arm", "fault_onset_step": 15},
            "policy_node": {"fault_monitor_threshold": 0.5, "fault_monitor_debounce": 2},
            "command_node": {"hold_on_monitor_alarm": True}}
    graph = Graph(config, ["sim_node", "policy_node", "command_node"], policy=_JamSensingPolicy(), overrides=over)
    alarms, diags = [], []
    graph.client.create_subscription(String, "/lara/monitor_alarm", lambda m: alarms.append(m.data), 10)
    graph.client.create_subscription(DiagnosticArray, "/diagnostics",
                                     lambda m: diags.extend((s.level, s.name) for s in m.status), 10)
    try:
        sim, pol, cmd = (graph.nodes[n] for n in ("sim_node", "policy_node", "command_node"))
        sim.set_parameters([Parameter("seed", value=1002)])
        result = graph.run_episode(1, "push-v3", 1002, max_steps=140)
        t_end = time.monotonic() + 10
        while not alarms and time.monotonic() < t_end:
            time.sleep(0.1)
        assert alarms and "LAM monitor" in alarms[0], (alarms, pol.surprises[-5:], result, pol.chunks_published,
                                                        dict(pol.rejections))
        assert pol.monitor is not None and pol.monitor.alarms >= 1
        # no alarm while the arm still answered: the first high surprise belongs to a chunk after the onset
        assert all(s < 0.5 for _, _, s in pol.surprises[:3])
        assert any(level == DiagnosticStatus.ERROR and "LAM fault monitor" in name for level, name in diags)
        assert any(level == DiagnosticStatus.OK for level, _ in diags)
        # command_node holds with the monitor's reason and commands no motion from then on
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end and not any("LAM monitor" in r.reason for r in cmd.tick_log):
            time.sleep(0.05)
        from lara_policy.ros.command_loop import FAULT
        log = list(cmd.tick_log)
        first = next(i for i, r in enumerate(log) if "LAM monitor" in r.reason)
        assert any(r.moving for r in log[:first])                       # it moved before the alarm ...
        assert all(not r.moving for r in log[first:])                   # ... and never after it
        assert all(r.state == FAULT for r in log[first:] if "LAM monitor" in r.reason)
    finally:
        graph.close()
