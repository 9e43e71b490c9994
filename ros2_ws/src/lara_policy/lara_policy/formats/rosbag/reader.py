"""The one rosbag2 reader of the project (pure `rosbags`, MCAP or sqlite3, no ROS install):
finding bags in folders, opening them (a recorder episode left by a kill is read from its
complete segments), the typestore with every custom type the bag defines, and streaming its
messages. `lara convert`, `lara eval bag`, `lara bag` and the offline-evaluation replay all read
through it."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lara_policy.common.errors import ConvertError
from lara_policy.formats.rosbag.layout import (SEGMENTS_DIR, BagError, _bag_error, _read_errors, dump_yaml,
                                               is_recorder_episode, load_yaml, merge_segment_metadata,
                                               segment_index)


def is_rosbag(path: Path) -> bool:
    """A rosbag2 folder, a bare .mcap/.db3 file, a recorder episode, or a folder of those."""
    path = Path(path)
    if path.is_file():
        return path.suffix in (".mcap", ".db3")
    if not path.is_dir():
        return False
    if (path / "metadata.yaml").is_file() or is_recorder_episode(path):
        return True
    if any(path.glob("*.mcap")) or any(path.glob("*.db3")):
        return True
    return any(is_rosbag(c) for c in sorted(path.iterdir()) if c.is_dir() and not c.name.startswith("."))


def expand_sources(paths: list[Path]) -> list[Path]:
    """Each source path -> the bags in it (a folder of recorder episodes -> each episode)."""
    out = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ConvertError(f"{p}: no such file or folder")
        if p.is_file() or (p / "metadata.yaml").is_file() or is_recorder_episode(p):
            out.append(p)
        elif p.is_dir() and (any(p.glob("*.mcap")) or any(p.glob("*.db3"))):
            raise ConvertError(f"{p}: rosbag2 folder without metadata.yaml (a writer killed before it closed "
                               "the bag?); its storage files can be converted one by one: "
                               + ", ".join(str(f) for f in sorted(p.glob("*.mcap")) + sorted(p.glob("*.db3"))))
        else:
            subs = [c for c in sorted(p.iterdir()) if c.is_dir() and not c.name.startswith(".") and is_rosbag(c)]
            if not subs:
                raise ConvertError(f"{p}: not a rosbag2 bag (no metadata.yaml, .mcap or .db3) and holds none")
            out.extend(expand_sources(subs))
    return out


class OpenBag:
    """Context manager: a rosbags Reader over a bag; a recorder episode whose metadata.yaml is
    missing or lists fewer segments than are complete on disk is read from its complete
    segments (merged in a temporary folder; the source is never modified)."""

    def __init__(self, path: Path, segments: bool = True):
        self.path = Path(path)
        self.segments = segments        # False: open the bag as its metadata.yaml lists it
        self.tmp = None
        self.note = ""

    def __enter__(self):
        from rosbags.rosbag2 import Reader
        from rosbags.rosbag2.errors import ReaderError
        target = self.path
        if self.segments and is_recorder_episode(self.path):
            target = self._recorder_target()
        try:
            self.reader = Reader(target)
            self.reader.open()
        except (ReaderError, FileNotFoundError, OSError, KeyError, ValueError, IndexError) as exc:
            self._cleanup()
            files = sorted(f.name for f in self.path.glob("*") if f.suffix in (".mcap", ".db3")) \
                if self.path.is_dir() else [self.path.name]
            hint = _storage_hint(files)
            where = f" (storage file(s): {', '.join(files)})" if files else ""
            raise BagError(f"{self.path}: cannot open as a rosbag2 bag{where}: {exc}{hint}") from None
        return self.reader

    def _recorder_target(self) -> Path:
        d = self.path
        seg_dir = d / SEGMENTS_DIR
        seg_meta = sorted(seg_dir.glob("*.yaml"), key=segment_index) if seg_dir.is_dir() else []
        complete = []
        for m in seg_meta:
            meta = load_yaml(m)
            files = meta["rosbag2_bagfile_information"]["relative_file_paths"]
            if all((d / f).is_file() for f in files):
                complete.append(meta)
        listed = 0
        if (d / "metadata.yaml").is_file():
            listed = len(load_yaml(d / "metadata.yaml")["rosbag2_bagfile_information"]["relative_file_paths"])
        if not complete or listed >= sum(len(m["rosbag2_bagfile_information"]["files"]) for m in complete):
            if not (d / "metadata.yaml").is_file():
                raise ConvertError(f"{d}: recorder episode with no metadata.yaml and no complete segment "
                                   "(killed before its first flush): nothing to convert")
            return d
        self.tmp = Path(tempfile.mkdtemp(prefix="lara_convert_"))
        merged = merge_segment_metadata(complete)
        for f in merged["rosbag2_bagfile_information"]["relative_file_paths"]:
            (self.tmp / f).symlink_to((d / f).resolve())
        (self.tmp / "metadata.yaml").write_text(dump_yaml(merged))
        self.note = f"read from {len(complete)} complete segment(s) (metadata.yaml listed {listed} file(s))"
        return self.tmp

    def _cleanup(self):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __exit__(self, *exc):
        try:
            self.reader.close()
        finally:
            self._cleanup()


def _storage_hint(files: list[str]) -> str:
    """What a cut-short storage file means, for the storage at hand (MCAP or sqlite3)."""
    kinds = {Path(f).suffix for f in files}
    parts = []
    if ".mcap" in kinds:
        parts.append("an MCAP file cut short (a writer killed before it closed it) has no footer/summary; "
                     "recorder episodes avoid this by closing a segment every flush period")
    if ".db3" in kinds:
        parts.append("a sqlite3 .db3 file cut short (copied or written only in part, or a disk full) reads as a "
                     "malformed database; sqlite3 commits as it writes, so a bag whose writer was killed normally "
                     "still opens")
    if not parts:
        return ""
    return " (" + "; ".join(parts) + ")"


def bag_topics(path: Path) -> dict[str, str]:
    with OpenBag(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def typestore_for(connections=()):
    """A rosbags typestore with the standard ROS 2 types plus every custom type found in the
    bag's connections' message definitions (so lara_msgs/* deserialize without a ROS install)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    ts = get_typestore(Stores.LATEST)
    add = {}
    for c in connections:
        if c.msgtype in ts.fielddefs or not getattr(c, "msgdef", None) or not c.msgdef.data:
            continue
        try:
            add.update(_types_from_concatenated_msgdef(c.msgtype, c.msgdef.data, get_types_from_msg))
        except Exception:  # noqa: BLE001 - unknown definition: the raw bytes are still readable
            pass
    if add:
        ts.register({k: v for k, v in add.items() if k not in ts.fielddefs})
    return ts


def _types_from_concatenated_msgdef(msgtype: str, text: str, parse) -> dict:
    """rosbag2 stores `msg` definitions with their dependencies appended after '=====' + 'MSG: x'."""
    parts = text.split("=" * 80)
    types = parse(parts[0], msgtype)
    for part in parts[1:]:
        part = part.strip()
        if part.startswith("MSG: "):
            name, _, body = part[5:].partition("\n")
            name = name.strip()
            if "/msg/" not in name:
                name = name.replace("/", "/msg/", 1)
            types.update(parse(body, name))
    return types


def iter_messages(episode_dir: str | Path, topics: list[str] | None = None, raw: bool = False):
    """Yield (topic, msgtype, timestamp_ns, msg) from an episode bag (or any rosbag2 bag);
    msg is a rosbags message object, or CDR bytes with raw=True."""
    try:
        with OpenBag(Path(episode_dir), segments=False) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            ts = None if raw else typestore_for(reader.connections)
            for conn, t, data in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, t, (data if raw else ts.deserialize_cdr(data, conn.msgtype))
    except BagError:
        raise
    except _read_errors() as exc:
        raise _bag_error(episode_dir, exc) from exc
