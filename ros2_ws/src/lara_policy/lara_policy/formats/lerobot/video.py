"""The mp4 files of a v3 dataset (PyAV): several episodes back to back per file, written and
read frame-exactly."""
from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from lara_policy.formats.lerobot.layout import LeRobotError


class _VideoFileWriter:
    """Episodes appended back to back into one mp4 (what LeRobot's concatenation produces):
    frame k of the file has pts k / fps."""

    def __init__(self, path: Path, fps: int, size: tuple[int, int], vcodec: str, crf: int | None,
                 g: int | None, pix_fmt: str):
        import av
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.frames, self.bytes, self.packets = path, fps, 0, 0, 0
        self.raw_frame = size[0] * size[1] * 3
        opts = {}
        if g is not None:
            opts["g"] = str(g)
        if crf is not None:
            opts["crf"] = str(crf)
        if vcodec == "libsvtav1":
            opts["preset"] = "12"
            os.environ.setdefault("SVT_LOG", "1")       # the SVT-AV1 library logs to stderr otherwise
        self._c = av.open(str(path), "w")
        self._s = self._c.add_stream(vcodec, rate=fps, options=opts)
        self._s.height, self._s.width = size
        self._s.pix_fmt = pix_fmt
        self._tb = Fraction(1, fps)

    def _mux(self, packets) -> None:
        for p in packets:
            self.bytes += p.size
            self.packets += 1
            self._c.mux(p)

    def frame_mb(self) -> float:
        """Encoded MB per frame so far; before the encoder's first output (it looks ahead), a
        conservative guess of 1/30 of the raw frame."""
        per = self.bytes / self.packets if self.packets else self.raw_frame / 30
        return per / 2 ** 20

    def add(self, frames: np.ndarray) -> tuple[float, float]:
        """Append (T, H, W, 3) uint8 frames; returns (from_timestamp, to_timestamp) in the file."""
        import av
        start = self.frames
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts, vf.time_base = self.frames, self._tb
            self._mux(self._s.encode(vf))
            self.frames += 1
        return start / self.fps, self.frames / self.fps

    def close(self) -> None:
        self._mux(self._s.encode())
        self._c.close()


def video_info(path: Path) -> dict:
    """The `info` block LeRobot puts under a video feature in info.json (from the file itself)."""
    import av
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return {"video.height": s.height, "video.width": s.width, "video.codec": s.codec_context.codec.canonical_name
                if hasattr(s.codec_context.codec, "canonical_name") else s.codec_context.name,
                "video.pix_fmt": s.pix_fmt, "video.is_depth_map": False, "video.fps": int(s.base_rate),
                "video.channels": 3, "has_audio": len(c.streams.audio) > 0}


class _VideoReader:
    """Decodes the frames of one episode out of a (shared) mp4 by timestamp, as LeRobot does:
    the frame nearest to from_timestamp + timestamp, within 1/fps - 1e-4 s."""

    def __init__(self):
        self._open: dict[Path, object] = {}

    def frames(self, path: Path, from_ts: float, timestamps: np.ndarray, fps: float) -> np.ndarray:
        import av
        if path not in self._open:
            if not path.is_file():
                raise LeRobotError(f"video file {path} does not exist")
            try:
                self._open[path] = av.open(str(path))
            except av.error.FFmpegError as exc:
                raise LeRobotError(f"cannot open video {path}: {exc}") from exc
        c = self._open[path]
        s = c.streams.video[0]
        tol = 1.0 / fps - 1e-4
        want = from_ts + np.asarray(timestamps, np.float64)
        lo, hi = want.min() - tol, want.max() + tol
        c.seek(max(0, int(math.floor(lo / float(s.time_base)))), stream=s, backward=True, any_frame=False)
        got_t, got = [], []
        for fr in c.decode(s):
            if fr.pts is None:
                continue
            t = float(fr.pts * fr.time_base)
            if t > hi:
                break
            if t >= lo:
                got_t.append(t)
                got.append(fr.to_ndarray(format="rgb24"))
        if not got:
            raise LeRobotError(f"{path}: no frames between {lo:.4f} s and {hi:.4f} s")
        got_t = np.asarray(got_t)
        nearest = np.abs(want[:, None] - got_t[None]).argmin(1)
        err = np.abs(got_t[nearest] - want)
        if (err >= tol).any():
            bad = int(np.argmax(err))
            raise LeRobotError(f"{path}: no frame within {tol:.4f} s of timestamp {want[bad]:.4f} s "
                               f"(nearest {got_t[nearest[bad]]:.4f} s)")
        return np.stack([got[i] for i in nearest])

    def close(self) -> None:
        for c in self._open.values():
            c.close()
        self._open.clear()
