"""Reference policies for the harness (both implement lara_policy.common.policy_api.Policy) and
picklable factories for worker processes.

- OraclePolicy: Meta-World's scripted expert, reading the privileged obs.raw; horizon 1.
  The task is given, or recovered from the instruction (phrasings are unique per task).
- RandomPolicy: uniform actions in [-1, 1]^4; the floor any real policy must beat.
- CheckpointPolicyFactory: loads a LARA checkpoint lazily in each worker.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lara_policy.common.policy_api import ChunkPrediction, Observation, PolicyMeta

_DT = 0.0125
_STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper", "goal_x", "goal_y", "goal_z"]


def _instruction_to_task() -> dict[str, str]:
    from lara_policy.sim.phrasings import TASK_PHRASINGS
    return {p: t for t, ps in TASK_PHRASINGS.items() for p in ps}


class OraclePolicy:
    """The scripted expert through the policy API (uses obs.raw; needs no images)."""

    def __init__(self, task: str | None = None):
        self.meta = PolicyMeta(action_space="ee_delta_xyz_gripper", action_dim=4, horizon=1, dt=_DT,
                               cameras=[], image_size=(128, 128), state_dim=7,
                               state_names=list(_STATE_NAMES), model_id="metaworld-scripted-expert")
        self.task = task
        self._experts: dict = {}
        self._by_instruction = _instruction_to_task()

    def reset(self) -> None:
        pass

    def _expert(self, task: str):
        if task not in self._experts:
            from metaworld.policies import ENV_POLICY_MAP
            self._experts[task] = ENV_POLICY_MAP[task]()
        return self._experts[task]

    def predict_chunk(self, obs: Observation, num_candidates: int = 1,
                      seed: int | None = None) -> ChunkPrediction:
        if obs.raw is None:
            raise ValueError("the oracle needs the simulator's raw observation (obs.raw)")
        task = self.task or self._by_instruction.get(obs.instruction)
        if task is None:
            raise ValueError(f"oracle: cannot tell the task from instruction '{obs.instruction}'; "
                             "construct OraclePolicy(task=...)")
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = self._expert(task).get_action(np.asarray(obs.raw))
        a = np.clip(np.asarray(a, dtype=np.float32), -1, 1)[None]
        return ChunkPrediction(actions=a, info={"oracle_task": task})


class RandomPolicy:
    """Uniform random actions in [-1, 1]^4 (chunk of `horizon`)."""

    def __init__(self, horizon: int = 1, seed: int = 0):
        self.meta = PolicyMeta(action_space="ee_delta_xyz_gripper", action_dim=4, horizon=int(horizon),
                               dt=_DT, cameras=[], image_size=(128, 128), state_dim=7,
                               state_names=list(_STATE_NAMES), model_id="random-uniform")
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def predict_chunk(self, obs: Observation, num_candidates: int = 1,
                      seed: int | None = None) -> ChunkPrediction:
        rng = np.random.default_rng([self.seed, seed]) if seed is not None else self._rng
        a = rng.uniform(-1, 1, size=(self.meta.horizon, 4)).astype(np.float32)
        return ChunkPrediction(actions=a)


# -- picklable factories (spawned workers call them) ----------------------------------------
@dataclass(frozen=True)
class OracleFactory:
    def __call__(self):
        return OraclePolicy()


@dataclass(frozen=True)
class RandomFactory:
    horizon: int = 1
    seed: int = 0

    def __call__(self):
        return RandomPolicy(self.horizon, self.seed)


@dataclass(frozen=True)
class CheckpointPolicyFactory:
    path: str
    runtime: str = "torch"          # torch | onnxruntime | onnxruntime-int8 (core/export.py)

    def __call__(self):
        from lara_policy.core.policy import LaraPolicy  # lazy: only for checkpoints
        return LaraPolicy.from_checkpoint(self.path, runtime=self.runtime)


def checkpoint_train_seeds(path: str | Path) -> dict[str, set[int]] | None:
    """{task: seeds} from 'train_seeds.json' beside/in a checkpoint, or None if absent."""
    p = Path(path)
    d = p if p.is_dir() else p.parent
    f = d / "train_seeds.json"
    if not f.exists():
        return None
    data = json.loads(f.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{f}: expected a JSON object {{task: [seeds]}}")
    return {str(t): {int(s) for s in v} for t, v in data.items()}


def policy_factory_from_spec(spec: str, seed: int = 0, runtime: str = "torch"):
    """'oracle' | 'random' | a checkpoint path -> picklable factory (runtime: a checkpoint's)."""
    if spec == "oracle":
        return OracleFactory()
    if spec == "random":
        return RandomFactory(seed=seed)
    if not Path(spec).exists():
        raise FileNotFoundError(f"policy '{spec}' is neither 'oracle', 'random' nor an existing checkpoint path")
    return CheckpointPolicyFactory(str(Path(spec).resolve()), runtime)
