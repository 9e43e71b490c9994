"""The inference contract every policy implements (LARA checkpoints, the Meta-World
oracle, a random policy), and the one the evaluation harness and the ROS nodes use.

Actions are returned in PHYSICAL units of the policy's action space (normalisation
is internal to the policy), as an (H, D) float32 array: action k is meant for time
t + k * dt, where t is the capture time of the observation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class Observation:
    images: dict[str, np.ndarray]       # camera name -> (H, W, 3) uint8 RGB, row 0 = top
    state: np.ndarray                   # (state_dim,) float32 proprio (+ goal), see PolicyMeta.state_names
    instruction: str
    stamp: float = 0.0                  # capture time, seconds
    raw: object | None = None           # simulator-native observation (privileged; only the oracle may use it)


@dataclass
class DynamicsCheckResult:
    num_candidates: int
    chosen_index: int
    predicted_effect: np.ndarray        # (N,) >= 0, LAM-feature-space change predicted per candidate
    plausibility: np.ndarray            # (N,) >= 0, distance of predicted latent to nearest code
    accepted: bool
    reason: str = ""                    # why not accepted ("" when accepted)
    predicted_latent: np.ndarray | None = None  # (M, d_z) latent predicted for the chosen chunk (for surprise)


@dataclass
class ChunkPrediction:
    actions: np.ndarray                 # (H, D) float32, physical units
    check: DynamicsCheckResult | None = None
    info: dict = field(default_factory=dict)   # e.g. {"latency_ms": ...}


@dataclass
class PolicyMeta:
    action_space: str                   # e.g. "ee_delta_xyz_gripper"
    action_dim: int
    horizon: int                        # H
    dt: float                           # seconds between actions
    cameras: list[str]                  # cameras the policy reads, in order
    image_size: tuple[int, int]         # (H, W) the policy expects (it may resize)
    state_dim: int
    state_names: list[str] = field(default_factory=list)
    model_id: str = ""


@runtime_checkable
class Policy(Protocol):
    meta: PolicyMeta

    def reset(self) -> None:
        """Forget per-episode state (call at every episode start)."""

    def predict_chunk(self, obs: Observation, num_candidates: int = 1,
                      seed: int | None = None) -> ChunkPrediction:
        """Predict one action chunk; num_candidates > 1 runs the LAM dynamics check."""
