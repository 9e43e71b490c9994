"""Faults injected into Meta-World episodes (sim/faults.py): each does what it says from its
onset on, and only then; the onset is a function of (fault seed, episode seed)."""
from __future__ import annotations

import numpy as np
import pytest

from lara_policy.sim.faults import FaultSpec, FaultyEnv
from lara_policy.sim.metaworld_env import MetaWorldEnv

PUSH = np.array([0.6, 0.3, 0.0, -1.0], np.float32)     # a command that moves the hand every step


def _run(kind: str, steps: int = 30, onset=(10, 10)):
    env = FaultyEnv(MetaWorldEnv("push-v3", image_size=32), FaultSpec(kind, *onset))
    obs = env.reset(seed=5)
    hands, images, objects = [obs.state[:3].copy()], [obs.images["corner4"].copy()], [obs.raw[4:7].copy()]
    for _ in range(steps):
        obs, _, info = env.step(PUSH)
        hands.append(obs.state[:3].copy())
        images.append(obs.images["corner4"].copy())
        objects.append(obs.raw[4:7].copy())
    env.close()
    return env.onset, np.array(hands), np.array(images, np.float32), np.array(objects)


def test_onset_is_seeded_and_in_range():
    spec = FaultSpec("frozen-arm", 24, 56, seed=3)
    onsets = [spec.onset(s) for s in range(200)]
    assert min(onsets) >= 24 and max(onsets) <= 56 and len(set(onsets)) > 10
    assert onsets == [spec.onset(s) for s in range(200)]
    assert FaultSpec("none").onset(1) is None
    with pytest.raises(ValueError, match="unknown fault"):
        FaultSpec("meteor")


def test_frozen_arm_holds_the_hand_from_the_onset():
    onset, hands, _, _ = _run("frozen-arm")
    before = np.linalg.norm(hands[onset - 1] - hands[0])
    # a jam, not a coast: zeroing the command alone let Meta-World's hand creep ~4 cm after its
    # mocap target over ~2 s; from the step after the onset it now stays within millimetres
    after = np.abs(hands[onset + 1:] - hands[onset]).max()
    assert before > 0.02 and after < 0.002
    # and no creep once stopped (a 0.1 mm creep per 16 steps made a jammed hand look like a
    # hand pressed on an object to the shortfall detector): under 1 um over 16 steps
    onset, hands, _, _ = _run("frozen-arm", steps=60)
    assert np.linalg.norm(hands[-1] - hands[-17]) < 1e-6


def test_frozen_arm_is_released_for_the_next_episode():
    """The environment is reused by the next episode: the jam (joint damping) must not carry over."""
    env = FaultyEnv(MetaWorldEnv("push-v3", image_size=32), FaultSpec("frozen-arm", 5, 5))
    damping = env.raw_env.model.dof_damping.copy()
    for seed in (5, 6):
        obs = env.reset(seed=seed)
        start = obs.state[:3].copy()
        for _ in range(4):                       # before the onset the hand follows the commands
            obs, _, _ = env.step(PUSH)
        assert np.linalg.norm(obs.state[:3] - start) > 0.005
        for _ in range(10):
            env.step(PUSH)
        assert not np.array_equal(env.raw_env.model.dof_damping, damping)    # jammed now
    env.reset(seed=7)
    assert np.array_equal(env.raw_env.model.dof_damping, damping)
    env.close()


def test_frozen_camera_repeats_its_frame_while_the_arm_moves():
    onset, hands, images, _ = _run("frozen-camera")
    assert np.abs(images[onset - 1] - images[1]).mean() > 0.5          # frames changed before
    assert all(np.array_equal(images[onset], im) for im in images[onset:])
    assert np.linalg.norm(hands[-1] - hands[onset]) > 0.02             # the arm did not stop


def test_object_teleport_moves_the_object_once_at_the_onset():
    onset, _, _, objects = _run("object-teleport")
    jumps = np.linalg.norm(np.diff(objects, axis=0), axis=1)
    assert jumps[onset - 1] > 0.05 and np.delete(jumps, onset - 1).max() < 0.02
