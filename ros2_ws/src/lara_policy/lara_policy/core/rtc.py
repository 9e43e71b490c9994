"""Real-time chunking's guide (Black et al. 2025, "Real-Time Execution of Action Chunking Flow
Policies"): what the executing chunk will still do while the next one is computed, and how much
the next chunk must keep of it. One function for `lara eval sim --rtc` (evaluation/chunking.py)
and policy_node's `rtc` parameter.

The next chunk's index 0 is the step of the frame it is predicted from, which is index `start`
of the executing chunk. Its first `delay` actions are executed by the old chunk before the new one
arrives (weight 1: kept exactly); after that the old chunk's plan is followed with a weight that
decays exponentially to 0 at the end of the overlap (RTC's soft mask). When the old plan ends
before `min_soft` free steps, it is continued by its last action so that the first action the new
chunk executes is guided too.
"""
from __future__ import annotations

import numpy as np

MIN_SOFT = 4       # guided steps after the delay at least


def rtc_guide(executing: np.ndarray, start: int, delay: int, horizon: int,
              min_soft: int = MIN_SOFT) -> tuple[np.ndarray, np.ndarray]:
    """(guide (G, D) physical actions, weights (G,)) for LaraPolicy.predict_chunk(guide=...)."""
    executing = np.asarray(executing, np.float32)
    if executing.ndim != 2 or len(executing) == 0:
        raise ValueError(f"the executing chunk must be (H, D) actions, got {executing.shape}")
    if start < 0 or delay < 0:
        raise ValueError(f"start ({start}) and delay ({delay}) must be >= 0")
    need = min(horizon, delay + min_soft)
    rest = executing[start:horizon]
    if len(rest) < need:
        tail = rest[-1:] if len(rest) else executing[-1:]
        rest = np.concatenate([rest, np.repeat(tail, need - len(rest), axis=0)])
    n = len(rest)
    w = np.ones(n, np.float32)
    free = n - delay
    if free > 0:
        i = np.arange(free, dtype=np.float32)
        c = (free - i) / (free + 1)
        w[delay:] = c * (np.exp(c) - 1) / (np.e - 1)
    return rest, w
