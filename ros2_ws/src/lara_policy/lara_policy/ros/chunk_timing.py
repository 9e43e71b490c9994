"""Where camera -> chunk time goes inside policy_node (issue 24: `lara bench ros` breakdown).

For every published chunk policy_node records, on the node clock (the clock of the image stamps):
the capture stamp of the primary camera frame it was predicted from, when that frame's message
arrived, when it was decoded and buffered, when inference started, when the policy returned and
when the chunk was handed to DDS. The differences are the parts:

    transport  arrival - capture stamp        (DDS delivery, executor wake-up)
    decode     buffered - arrival             (message -> RGB array, checks)
    queue      inference start - buffered     (worker wake-up, state sync wait, earlier work)
    model      policy returned - start        (resize, normalise, the model, the dynamics check)
    publish    published - policy returned    (message build + DDS hand-over)
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque

import numpy as np

PARTS = ("transport", "decode", "queue", "model", "publish")


class ChunkTimings:
    def __init__(self, keep: int = 5000, frames: int = 16):
        self._lock = threading.Lock()
        self._frames: OrderedDict[float, tuple[float, float]] = OrderedDict()   # stamp -> (arrival, buffered)
        self._keep_frames = frames
        self.records: deque = deque(maxlen=keep)      # (stamp, arrival, buffered, start, returned, published)

    def frame(self, stamp: float, arrival: float, buffered: float) -> None:
        """A primary-camera frame was received and buffered (executor thread)."""
        with self._lock:
            self._frames[stamp] = (arrival, buffered)
            while len(self._frames) > self._keep_frames:
                self._frames.popitem(last=False)

    def chunk(self, stamp: float, start: float, returned: float, published: float) -> None:
        """A chunk predicted from the frame stamped `stamp` was published (worker thread)."""
        with self._lock:
            arrival, buffered = self._frames.get(stamp, (float("nan"), float("nan")))
            self.records.append((stamp, arrival, buffered, start, returned, published))

    def clear(self) -> None:
        with self._lock:
            self.records.clear()

    def parts_ms(self) -> dict[str, np.ndarray]:
        """Per part, the values over the recorded chunks (ms); NaN where the frame was not seen."""
        with self._lock:
            r = np.asarray(list(self.records), np.float64).reshape(-1, 6)
        d = np.diff(r, axis=1) * 1e3
        return {name: d[:, i] for i, name in enumerate(PARTS)}

    def summary(self) -> dict[str, float]:
        """`<part>_p50_ms` and `<part>_p95_ms` per part, and `cam_to_publish_p50_ms`."""
        parts = self.parts_ms()
        out: dict[str, float] = {}
        for name, v in parts.items():
            v = v[np.isfinite(v)]
            out[f"{name}_p50_ms"] = float(np.percentile(v, 50)) if len(v) else float("nan")
            out[f"{name}_p95_ms"] = float(np.percentile(v, 95)) if len(v) else float("nan")
        total = sum(parts.values()) if parts else np.zeros(0)
        total = total[np.isfinite(total)]
        out["cam_to_publish_p50_ms"] = float(np.percentile(total, 50)) if len(total) else float("nan")
        return out
