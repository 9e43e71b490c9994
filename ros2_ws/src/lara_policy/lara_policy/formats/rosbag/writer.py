"""The recorder's episode bag on disk: one rosbag2 MCAP bag per episode, written as consecutive
complete segments (each closed every flush period, with footer and index) so that a kill loses
at most the segment being written. ROS-free (rosbags); recorder_node runs it on its writer
thread. Layout: formats/rosbag/layout.py; recovery: formats/rosbag/episode.py."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from lara_policy.common.fileio import write_atomic
from lara_policy.formats.rosbag.layout import SEGMENTS_DIR, dump_yaml, load_yaml, merge_segment_metadata


def writer_typestore():
    """rosbags typestore with the standard ROS 2 types plus lara_msgs (from its installed .msg)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    ts = get_typestore(Stores.LATEST)
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory("lara_msgs")) / "msg"
        add = {}
        for f in sorted(share.glob("*.msg")):
            add.update(get_types_from_msg(f.read_text(), f"lara_msgs/msg/{f.stem}"))
        ts.register({k: v for k, v in add.items() if k not in ts.fielddefs})
    except Exception:  # noqa: BLE001 - lara_msgs topics will then be reported as unrecordable
        pass
    return ts


def free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9


def writable_problem(path: Path) -> str:
    """'' when files can be created in `path`, else why not (a real probe: access() says yes for
    root even on a read-only mount in some setups, and nothing about a full disk)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create {path}: {e.strerror or e}"
    probe = path / f".lara_write_probe_{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"x")
    except OSError as e:
        return f"{path} is not writable: {e.strerror or e}"
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return ""


class EpisodeBagWriter:
    """Writes one episode as consecutive complete MCAP segments (runs on the writer thread)."""

    def __init__(self, out_dir: Path, episode_id: str, typestore):
        self.ep_dir = out_dir / episode_id
        self.partial = out_dir / f".{episode_id}.partial"
        self.episode_id = episode_id
        self.ts = typestore
        self.ep_dir.mkdir(parents=True)
        (self.ep_dir / SEGMENTS_DIR).mkdir()
        self.partial.mkdir()
        self.index = 0
        self.writer = None
        self.conns: dict[str, object] = {}
        self.seg_count = 0
        self.seg_started = 0.0
        self.closed_segments: list[dict] = []
        self.flushed_messages = 0

    def _open(self, types: dict[str, str]) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        # version 8: rosbag2 on Humble reads offered_qos_profiles only as the v8 string (its
        # metadata_io); Jazzy+ read both, so v8 bags open with `ros2 bag` everywhere
        self.writer = Writer(self.partial / f"{self.episode_id}_{self.index}", version=8,
                             storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.conns, self.seg_count, self.seg_started = {}, 0, time.monotonic()

    def write(self, topic: str, msgtype: str, t_ns: int, data: bytes) -> None:
        if self.writer is None:
            self._open({})
        conn = self.conns.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=self.ts)
            self.conns[topic] = conn
        self.writer.write(conn, t_ns, data)
        self.seg_count += 1

    def due(self, period: float) -> bool:
        return self.writer is not None and self.seg_count > 0 and time.monotonic() - self.seg_started >= period

    def abort(self) -> int:
        """Drop the segment being written (after a write error); returns its message count. The
        closed segments and metadata.yaml stay as they are: the bag opens with them."""
        lost, self.seg_count = self.seg_count, 0
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # noqa: BLE001 - the file system refused; the folder is removed below
                pass
        shutil.rmtree(self.partial, ignore_errors=True)
        return lost

    def close_segment(self) -> None:
        """Close the current segment, move it into the bag, rewrite metadata.yaml atomically."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        seg_dir = self.partial / f"{self.episode_id}_{self.index}"
        if self.seg_count == 0:
            writer.abort()
            shutil.rmtree(seg_dir, ignore_errors=True)
            return
        try:
            writer.close()
        except Exception:
            # a full disk fails the footer: close the file anyway (abort), or its blocks stay
            # allocated after the partial folder is removed and nothing else fits any more
            try:
                writer.abort()
            except Exception:  # noqa: BLE001 - the buffered data cannot be written; the file is closed
                pass
            raise
        meta = load_yaml(seg_dir / "metadata.yaml")
        name = meta["rosbag2_bagfile_information"]["relative_file_paths"][0]
        write_atomic(self.ep_dir / SEGMENTS_DIR / f"{self.index}.yaml", dump_yaml(meta))
        os.replace(seg_dir / name, self.ep_dir / name)
        shutil.rmtree(seg_dir, ignore_errors=True)
        self.closed_segments.append(meta)
        write_atomic(self.ep_dir / "metadata.yaml", dump_yaml(merge_segment_metadata(self.closed_segments)))
        self.flushed_messages += self.seg_count
        self.index += 1
        self.seg_count = 0

    def finish(self) -> None:
        self.close_segment()
        shutil.rmtree(self.partial, ignore_errors=True)
