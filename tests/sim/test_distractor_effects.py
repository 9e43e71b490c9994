"""Each visual distractor effect on its own ("high:lighting", ...): what `lara eval sim
--distractors` and `lara demos --distractors` take to measure which effect breaks a policy."""
from __future__ import annotations

import numpy as np
import pytest

from lara_policy.sim.distractors import DistractorConfig
from lara_policy.sim.metaworld_env import MetaWorldEnv

EFFECTS = ("lighting", "colour", "camera_jitter", "objects")


def test_effect_specs_parse_to_exactly_those_effects():
    one = DistractorConfig.parse("high:lighting")
    assert one.strength == 1.0 and [getattr(one, e) for e in EFFECTS] == [True, False, False, False]
    two = DistractorConfig.parse("0.5:colour, objects")
    assert two.strength == 0.5 and [getattr(two, e) for e in EFFECTS] == [False, True, False, True]
    assert DistractorConfig.parse("low:jitter").camera_jitter and not DistractorConfig.parse("low:jitter").objects
    assert DistractorConfig.parse("none:lighting") is None
    for bad in ("high:fog", "high:", "loud:lighting"):
        with pytest.raises(ValueError, match="distractor"):
            DistractorConfig.parse(bad)


def _frames(spec, steps: int = 12):
    with MetaWorldEnv("push-v3", image_size=48, distractors=spec) as env:
        obs = env.reset(seed=3)
        frames = [obs.images["corner4"]]
        for _ in range(steps):
            obs, _, _ = env.step(np.zeros(4, np.float32))
            frames.append(obs.images["corner4"])
    return np.stack(frames).astype(np.float32)


def test_each_effect_alone_changes_pixels_in_its_own_way():
    clean = _frames(None)
    diff = {e: np.abs(_frames(f"high:{e.replace('camera_', '')}") - clean) for e in EFFECTS}
    for e, d in diff.items():
        assert d.mean() > 0.5, (e, d.mean())
    # lighting and colour change the whole frame; objects only where they are drawn
    whole = lambda d: (d.max(-1) > 2).mean()   # noqa: E731 - share of changed pixels
    assert whole(diff["colour"]) > 0.5 and whole(diff["lighting"]) > 0.3
    assert whole(diff["objects"]) < 0.3
    # colour is a per-channel gain: the channel means move apart, lighting scales them alike
    col = _frames("high:colour").mean((0, 1, 2)) / clean.mean((0, 1, 2))
    assert np.ptp(col) > 0.05


def test_jitter_shakes_scene_cameras_and_leaves_a_robot_mounted_camera_rigid():
    """A wrist camera is bolted to the hand: it follows the hand, it does not shake on its own."""
    def frames(spec):
        with MetaWorldEnv("push-v3", cameras=("corner4", "gripperPOV"), image_size=32,
                          distractors=spec) as env:
            obs = [env.reset(seed=5)]
            for _ in range(6):
                obs.append(env.step(np.array([0.5, 0.3, 0.0, 0.0], np.float32))[0])
        return {c: np.stack([o.images[c] for o in obs]).astype(np.float32) for c in env.cameras}
    clean, shaken = frames(None), frames("high:jitter")
    assert np.abs(shaken["corner4"] - clean["corner4"]).mean() > 0.5
    np.testing.assert_array_equal(shaken["gripperPOV"], clean["gripperPOV"])
    assert np.abs(clean["gripperPOV"][-1] - clean["gripperPOV"][0]).mean() > 0.5   # the hand did move
