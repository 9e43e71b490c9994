"""Real-time chunking (issue 24): the flow sampler's inpainting guide. Weight 1 ends exactly on the
guide, weight 0 leaves the sample as without a guide (same noise), and LaraPolicy takes the guide
in physical units."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic import TASKS, draw
from lara_policy.common.policy_api import Observation
from lara_policy.core.policy import LaraPolicy


@pytest.fixture(scope="module")
def policy(trained_run):
    return LaraPolicy.from_checkpoint(trained_run, device="cpu")


def _inputs(policy):
    obs = Observation(images={"corner4": draw(0.3, 0.3, 40)}, state=np.array([0.3, 0.3, 0, -1, 0.9, 0.9, 0], np.float32),
                      instruction=TASKS["move-right"])
    return policy._observation_tensors(obs)


def test_guide_weights_one_keep_the_guide_and_zero_leave_the_sample(policy):
    images, state, text, mask = _inputs(policy)
    v = policy.config.vla
    noise = torch.randn(2, v.horizon, v.action_dim, generator=torch.Generator().manual_seed(0))
    free, _ = policy.model.sample(images, state, text, mask, noise, v.euler_steps)
    guide = torch.randn(1, v.horizon, v.action_dim, generator=torch.Generator().manual_seed(1))
    w = torch.zeros(v.horizon)
    w[:3] = 1.0
    guided, _ = policy.model.sample(images, state, text, mask, noise, v.euler_steps, guide, w)
    torch.testing.assert_close(guided[:, :3], guide.expand(2, -1, -1)[:, :3], atol=1e-5, rtol=0)
    assert not torch.allclose(guided[:, 3:], free[:, 3:])        # the rest follows the kept prefix
    unguided, _ = policy.model.sample(images, state, text, mask, noise, v.euler_steps, guide, torch.zeros(v.horizon))
    torch.testing.assert_close(unguided, free)


def test_policy_guide_in_physical_units(policy):
    obs = Observation(images={"corner4": draw(0.3, 0.3, 40)}, state=np.array([0.3, 0.3, 0, -1, 0.9, 0.9, 0], np.float32),
                      instruction=TASKS["move-right"])
    plan = np.tile(np.array([[0.5, -0.2, 0.0, 1.0]], np.float32), (4, 1))
    out = policy.predict_chunk(obs, seed=3, guide=plan, guide_weights=np.array([1, 1, 0.5, 0], np.float32))
    np.testing.assert_allclose(out.actions[:2], plan[:2], atol=1e-4)
    with pytest.raises(ValueError, match="guide"):
        policy.predict_chunk(obs, seed=3, guide=np.zeros((99, 4), np.float32))
    with pytest.raises(ValueError, match="guide"):
        policy.predict_chunk(obs, seed=3, guide=plan, guide_weights=np.array([2, 1, 1, 1], np.float32))
