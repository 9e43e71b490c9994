"""Non-fixture helpers of the graph tests (importable by name from any test module)."""
from __future__ import annotations

import time

import numpy as np

from lara_policy.common.policy_api import ChunkPrediction, DynamicsCheckResult, PolicyMeta

STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper", "goal_x", "goal_y", "goal_z"]
# Meta-World judges reach success on the finger-pad centre (tcp_center), which sits 4.5 cm below
# the hand position the state reports. A double that put the HAND on the goal left the pads
# ~0.045 m away, on the edge of the 0.05 m success radius, and a CI run under load missed it.
TCP_BELOW_HAND_M = 0.045


class GoalSeekingTestPolicy:
    """TEST DOUBLE, not a learned policy: steers the hand so that the finger pads meet the goal
    read from the state (Meta-World units: one action unit = `action_scale` metres per step). It implements the
    core.api.Policy protocol plus `surprise`, so the ROS plumbing can be tested without a
    trained checkpoint. With num_candidates > 1 it returns a DynamicsCheckResult."""

    def __init__(self, horizon: int = 16, action_scale: float = 0.01, gain: float = 0.5,
                 delay_s: float = 0.0, camera: str = "corner4"):
        self.meta = PolicyMeta(action_space="ee_delta_xyz_gripper", action_dim=4, horizon=horizon,
                               dt=1 / 30, cameras=[camera], image_size=(64, 64), state_dim=7,
                               state_names=list(STATE_NAMES), model_id="test-double-goal-seeker")
        self.action_scale = action_scale
        self.gain = gain
        self.delay_s = delay_s
        self.calls = 0
        self.resets = 0
        self.last_obs = None

    def reset(self) -> None:
        self.resets += 1

    def predict_chunk(self, obs, num_candidates: int = 1, seed=None) -> ChunkPrediction:
        state = np.asarray(obs.state, dtype=np.float64)
        if state.shape != (7,) or not np.all(np.isfinite(state)):
            raise ValueError(f"bad state {state}")
        if not obs.instruction:
            raise ValueError("empty instruction")
        self.calls += 1
        self.last_obs = obs
        if self.delay_s:
            time.sleep(self.delay_s)
        pos, goal = state[:3].copy(), state[4:7] + np.array([0.0, 0.0, TCP_BELOW_HAND_M])
        actions = np.zeros((self.meta.horizon, 4), dtype=np.float32)
        for k in range(self.meta.horizon):
            a = np.clip((goal - pos) / self.action_scale * self.gain, -1.0, 1.0)
            actions[k, :3] = a
            actions[k, 3] = -1.0
            pos = pos + a * self.action_scale
        check = None
        if num_candidates > 1:
            check = DynamicsCheckResult(
                num_candidates=num_candidates, chosen_index=0,
                predicted_effect=np.linspace(1.0, 0.5, num_candidates).astype(np.float32),
                plausibility=np.full(num_candidates, 0.1, np.float32), accepted=True,
                predicted_latent=np.zeros((2, 3), np.float32))
        return ChunkPrediction(actions=actions, check=check)

    def surprise(self, predicted_latent, image_t, image_tC) -> float:
        return float(np.abs(image_tC.astype(np.float32) - image_t.astype(np.float32)).mean())


def build_tiny_checkpoint(path, horizon: int = 16, cameras: list[str] | None = None):
    """A tiny RANDOM-INIT LARA checkpoint (untrained: its actions are noise in physical
    units), built with the core's own API; for plumbing tests of the real LaraPolicy.
    cameras: the checkpoint's cameras (default the config's one)."""
    from lara_policy.core.checkpoint import save_checkpoint
    from lara_policy.core.configuration import ModelConfig
    from lara_policy.core.modeling import LaraModel
    from lara_policy.core.processing import NormStats, TextEmbedder
    from lara_policy.sim.phrasings import TASK_PHRASINGS

    import torch
    torch.manual_seed(0)
    m = ModelConfig(name="tiny-ros-test", variant="lara")
    m.state_names = list(STATE_NAMES)
    m.vla.image_size, m.vla.width, m.vla.depth, m.vla.heads = 32, 64, 4, 4
    m.vla.vision_channels = [16, 32, 64]
    m.vla.horizon, m.vla.euler_steps = horizon, 4
    if cameras:
        m.vla.cameras = list(cameras)
    m.lam.image_size, m.lam.width, m.lam.num_queries, m.lam.latent_dim, m.lam.codebook_size = 16, 32, 4, 8, 16
    model = LaraModel(m)
    stats = NormStats([0.0] * 4, [0.5] * 4, [0.0] * 7, [0.3] * 7)
    instructions = list(TASK_PHRASINGS["reach-v3"])
    emb, mask = TextEmbedder.get().embed(instructions, m.vla.text_tokens)
    return save_checkpoint(path, model, m, stats=stats, instructions=instructions, text=(emb, mask))
