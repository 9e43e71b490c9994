"""Action-free video and visual distractors (pixels change, robot motion does not)."""
import numpy as np
import pytest

from lara_policy.formats.demos import GenConfig, generate, rollout_expert
from lara_policy.formats.store import EpisodeStore
from lara_policy.sim.distractors import DistractorConfig
from lara_policy.sim.metaworld_env import MetaWorldEnv


def test_action_free_episodes_carry_no_actions(tmp_path):
    cfg = GenConfig(tasks=["button-press-v3"], episodes=2, image_size=(32, 32), action_free=True,
                    distractors="low", seed_start=500)
    generate(cfg, tmp_path / "v.hdf5", progress=False)
    with EpisodeStore(tmp_path / "v.hdf5") as s:
        assert s.meta.extra["action_free"] is True
        assert s.meta.extra["distractors"]["strength"] == pytest.approx(0.25)
        assert s.summary()["action_free"] == 2
        for i, ep in enumerate(s):
            assert ep.actions is None and ep.action_free and ep.source == "video"
            assert s.episode_attrs(i)["action_free"] is True
            assert ep.images["corner4"].shape[0] == ep.num_steps > 5
        g = s._f["episodes"]["ep_000000"]
        assert "actions" not in g


def _pair(strength, seed=7, task="push-v3"):
    with MetaWorldEnv(task, image_size=48) as clean, \
         MetaWorldEnv(task, image_size=48, distractors=strength) as noisy:
        return rollout_expert(clean, seed, 3), rollout_expert(noisy, seed, 3, keep_actions=False)


@pytest.mark.parametrize("strength", ["medium", 1.0])
def test_distractors_change_pixels_not_motion(strength):
    clean, noisy = _pair(strength)
    # identical robot/object motion
    assert clean.num_steps == noisy.num_steps
    np.testing.assert_array_equal(clean.state, noisy.state)
    x = clean.images["corner4"].astype(np.float32)
    y = noisy.images["corner4"].astype(np.float32)
    # visibly different frames ...
    assert np.abs(x - y).mean() > 8.0
    # ... and spurious change over time: global brightness fluctuates, frames change more
    assert y.mean(axis=(1, 2, 3)).std() > 3 * x.mean(axis=(1, 2, 3)).std() + 1.0
    assert np.abs(np.diff(y, axis=0)).mean() > 1.5 * np.abs(np.diff(x, axis=0)).mean()


def test_distractor_strength_scales_and_is_reproducible():
    c, low = _pair("low")
    _, high = _pair("high")
    _, low2 = _pair("low")
    d = lambda e: np.abs(e.images["corner4"].astype(float) - c.images["corner4"]).mean()  # noqa: E731
    assert d(high) > d(low) > 0
    assert np.abs(low.images["corner4"].astype(int) - low2.images["corner4"]).mean() < 0.5


def test_distractor_config_parsing():
    assert DistractorConfig.parse(None) is None and DistractorConfig.parse("none") is None
    assert DistractorConfig.parse("medium").strength == 0.5
    assert DistractorConfig.parse({"strength": 0.3, "objects": False}).objects is False
    with pytest.raises(ValueError, match="low"):
        DistractorConfig.parse("loud")
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\], got 2.0"):
        DistractorConfig.parse(2.0)
