"""Chunk execution with an injected inference delay (evaluation/chunking.py), on a scripted policy
whose chunks say when they were predicted: the switch times, the entry index, the hold when the
chunk runs out, the guide RTC passes, and the hand-over figures."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lara_policy.evaluation.chunking import DelayedChunkExecutor, summarise_chunking

H = 16


class _Scripted:
    """Chunk predicted at step t: action k = [t, k, 0, 1] (so executed actions show their origin)."""
    def __init__(self):
        self.meta = SimpleNamespace(horizon=H)
        self.calls = []

    def predict_chunk(self, obs, num_candidates=1, seed=None, guide=None, guide_weights=None):
        self.calls.append((obs, None if guide is None else (np.array(guide), np.array(guide_weights))))
        acts = np.stack([[obs, k, 0, 1] for k in range(H)]).astype(np.float32)
        return SimpleNamespace(actions=acts, check=None, info={})


def _run(delay, k, rtc, steps=40):
    pol = _Scripted()
    ex = DelayedChunkExecutor(pol, k, delay, rtc)
    acts = [ex.act(t) for t in range(steps)]          # the "observation" is the step index
    return pol, ex, np.array(acts)


def test_delay_keeps_the_executing_chunk_until_the_next_arrives():
    pol, ex, a = _run(delay=4, k=8, rtc=False)
    assert [c[0] for c in pol.calls][:4] == [0, 8, 16, 24]            # inference every s=8 steps
    # steps 0..11 from chunk 0 (index = step), step 12 enters chunk 8 at index 4 (= the delay)
    assert (a[:12, 0] == 0).all() and list(a[:12, 1]) == list(range(12))
    assert a[12, 0] == 8 and a[12, 1] == 4 and ex.starved == 0
    assert len(ex.boundary_jumps) == 4 and all(c[1] is None for c in pol.calls)


def test_a_delay_longer_than_the_chunk_allows_holds_and_counts_it():
    pol, ex, a = _run(delay=12, k=8, rtc=False)
    assert ex.s == 12                                                  # one inference at a time
    assert ex.starved > 0 and (a[16:24, :3] == 0).all() and (a[16:24, 3] == 1).all()


def test_rtc_passes_what_the_executing_chunk_still_does():
    pol, ex, a = _run(delay=4, k=8, rtc=True)
    guide, w = pol.calls[1][1]
    np.testing.assert_array_equal(guide[:, 1], np.arange(8, 16))      # chunk 0 from index s on
    assert (w[:4] == 1).all() and 0 < w[4] < 1 and (np.diff(w[4:]) < 0).all()
    s = summarise_chunking([ex.chunking_record()])
    assert s["switches"] == 4 and s["rtc"] is True and s["delay_steps"] == 4
    with pytest.raises(ValueError):
        DelayedChunkExecutor(_Scripted(), 8, H, False)
