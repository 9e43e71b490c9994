"""Chunk execution with an inference delay, with and without real-time chunking (RTC; Black et
al. 2025, "Real-Time Execution of Action Chunking Flow Policies"), and the hand-over figures.

A robot does not stop while the next chunk is computed. Inference of chunk k+1 starts on the
frame at which chunk k has run `s` actions and takes `delay` control steps; meanwhile chunk k keeps
executing, and at the switch chunk k+1 is entered at index `delay` (its first `delay` actions
were meant for steps already executed by chunk k). One inference at a time: s >= delay. When
s + delay > H the executing chunk runs out before the next one arrives and the arm holds (zero
motion, gripper kept): `starved_steps`.

RTC: chunk k+1 is sampled with inpainting guidance toward what chunk k will still execute during
the delay (weight 1: kept exactly) and, with decaying weight, toward what it planned after that,
so that the hand-over is continuous (LaraModel.sample's guide). Figures per episode: the jumps
|a_t - a_t-1| (L2 over the action dims) at chunk switches and inside chunks.
"""
from __future__ import annotations

import numpy as np

from lara_policy.core.rtc import rtc_guide
from lara_policy.evaluation.harness import ChunkExecutor

class DelayedChunkExecutor(ChunkExecutor):
    """ChunkExecutor's prediction (seeding, timing, listener, output checks) with a delayed,
    optionally guided hand-over between chunks."""

    def __init__(self, policy, execute_k: int | None, delay_steps: int, rtc: bool, num_candidates: int = 1):
        self.policy = policy
        self.h = int(policy.meta.horizon)
        self.delay = int(delay_steps)
        k = self.h // 2 if execute_k is None else int(execute_k)
        if not 1 <= k <= self.h or not 0 <= self.delay < self.h:
            raise ValueError(f"execute_k={execute_k} must be in [1, {self.h}] and the delay ({self.delay} steps) "
                             f"below the horizon {self.h}")
        self.s = max(k, self.delay, 1)          # the next inference cannot start before this one ended
        self.rtc = bool(rtc)
        self.num_candidates = int(num_candidates)
        self.listener = None
        self.reset(0)

    def reset(self, episode_seed: int) -> None:
        super().reset(episode_seed)
        self._cur, self._cur_p, self._pending = None, 0, None
        self._last: np.ndarray | None = None
        self.boundary_jumps: list[float] = []
        self.inner_jumps: list[float] = []
        self.starved = 0

    def _guide(self) -> tuple[np.ndarray, np.ndarray]:
        """What the executing chunk will still do from the new chunk's first step on (core/rtc.py)."""
        return rtc_guide(self._cur, self.s, self.delay, self.h)

    def act(self, obs) -> np.ndarray:
        t = self._t
        self._t += 1
        switched = False
        if self._cur is None:                   # the first chunk is awaited: nothing moves before it
            self._cur, self._cur_p = self._predict(obs, t), t
        else:
            if self._pending is not None and t >= self._pending[1] + self.delay:
                (self._cur, self._cur_p), self._pending, switched = self._pending, None, True
            if self._pending is None and t >= self._cur_p + self.s:
                guide = self._guide() if self.rtc else (None, None)
                self._pending = (self._predict(obs, t, guide=guide[0], guide_weights=guide[1]), t)
                if self.delay == 0:
                    (self._cur, self._cur_p), self._pending, switched = self._pending, None, True
        i = t - self._cur_p
        if i < len(self._cur):
            a = self._cur[i]
        else:                                   # ran out before the next chunk arrived: hold
            self.starved += 1
            a = np.zeros_like(self._cur[0])
            a[3:] = self._cur[-1][3:]
        if self._last is not None:
            (self.boundary_jumps if switched else self.inner_jumps).append(float(np.linalg.norm(a - self._last)))
        self._last = a
        return a

    def chunking_record(self) -> dict:
        return {"chunking": {"boundary_jumps": [round(j, 5) for j in self.boundary_jumps],
                             "inner_jump_mean": float(np.mean(self.inner_jumps)) if self.inner_jumps else None,
                             "starved_steps": self.starved, "delay_steps": self.delay, "execute_s": self.s,
                             "rtc": self.rtc}}


def summarise_chunking(results: list[dict]) -> dict:
    jumps = [j for r in results for j in r.get("chunking", {}).get("boundary_jumps", [])]
    inner = [r["chunking"]["inner_jump_mean"] for r in results if r.get("chunking", {}).get("inner_jump_mean") is not None]
    first = next((r["chunking"] for r in results if "chunking" in r), {})
    return {"boundary_jump_mean": float(np.mean(jumps)) if jumps else None,
            "boundary_jump_max": float(np.max(jumps)) if jumps else None,
            "boundary_jump_p95": float(np.percentile(jumps, 95)) if jumps else None,
            "inner_jump_mean": float(np.mean(inner)) if inner else None,
            "switches": len(jumps), "starved_steps": int(sum(r.get("chunking", {}).get("starved_steps", 0) for r in results)),
            "delay_steps": first.get("delay_steps"), "execute_s": first.get("execute_s"), "rtc": first.get("rtc")}
