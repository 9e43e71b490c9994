"""Recorder episode bags as a whole: recover an interrupted one, read one, summarise one, and the
`lara bag info|recover|dump EPISODE` command (also `python -m lara_policy.formats.rosbag.episode`)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lara_policy.common.errors import LaraError
from lara_policy.common.fileio import write_atomic
from lara_policy.formats.rosbag.layout import (META_NAME, SEGMENTS_DIR, BagError, _bag_error, _read_errors,
                                               dump_yaml, load_yaml, merge_segment_metadata, segment_index)
from lara_policy.formats.rosbag.reader import iter_messages


def recover(episode_dir: str | Path) -> dict:
    """Rebuild `metadata.yaml` of an episode bag from the per-segment metadata of every MCAP
    file that is complete on disk (use after a crash between a segment's close and the
    metadata update, or when metadata.yaml was lost). Returns a report dict.
    The segment being written at the time of a kill (in `.<id>.partial/`) has no MCAP footer
    and is reported as lost: at most one flush period of data."""
    d = Path(episode_dir)
    seg_meta = sorted((d / SEGMENTS_DIR).glob("*.yaml"), key=segment_index) if (d / SEGMENTS_DIR).is_dir() else []
    segments, missing = [], []
    for m in seg_meta:
        meta = load_yaml(m)
        files = meta["rosbag2_bagfile_information"]["relative_file_paths"]
        if all((d / f).is_file() for f in files):
            segments.append(meta)
        else:
            missing.extend(files)
    partial = d.parent / f".{d.name}.partial"
    lost = sorted(str(p) for p in partial.glob("*")) if partial.is_dir() else []
    if not segments:
        return {"episode": str(d), "segments": 0, "messages": 0, "missing": missing, "lost_partial": lost}
    merged = merge_segment_metadata(segments)
    write_atomic(d / "metadata.yaml", dump_yaml(merged))
    info = merged["rosbag2_bagfile_information"]
    return {"episode": str(d), "segments": len(segments), "messages": info["message_count"],
            "missing": missing, "lost_partial": lost}


@dataclass
class Episode:
    path: Path
    meta: dict                          # episode_meta.json (empty if absent)
    topics: dict[str, str]              # topic -> msgtype
    messages: list = field(default_factory=list)   # (topic, timestamp_ns, message) in time order


def read_episode(episode_dir: str | Path, topics: list[str] | None = None, raw: bool = False) -> Episode:
    """Read a whole recorded episode: metadata + every message (deserialized with rosbags).
    For long image episodes prefer iter_messages (streaming)."""
    from rosbags.rosbag2 import Reader
    d = Path(episode_dir)
    meta_path = d / META_NAME
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    try:
        with Reader(d) as reader:
            tmap = {c.topic: c.msgtype for c in reader.connections}
    except _read_errors() as exc:
        raise _bag_error(d, exc) from exc
    msgs = [(topic, t, m) for topic, _, t, m in iter_messages(d, topics, raw)]
    return Episode(d, meta, tmap, msgs)


def bag_info(episode_dir: str | Path) -> dict:
    from rosbags.rosbag2 import Reader
    if not (Path(episode_dir) / "metadata.yaml").is_file():
        raise BagError(f"{Path(episode_dir) / 'metadata.yaml'} is missing: not a complete rosbag2 bag "
                       "(an interrupted recorder episode? try `recover`)")
    try:
        files = load_yaml(Path(episode_dir) / "metadata.yaml")["rosbag2_bagfile_information"]["relative_file_paths"]
        with Reader(Path(episode_dir)) as reader:
            return {"path": str(episode_dir), "files": len(files), "messages": reader.message_count,
                    "duration_s": reader.duration * 1e-9,
                    "topics": {c.topic: {"type": c.msgtype, "count": c.msgcount} for c in reader.connections}}
    except _read_errors() as exc:
        raise _bag_error(episode_dir, exc) from exc


BAG_COMMANDS = ("info", "recover", "dump")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`lara bag info|recover|dump EPISODE_DIR` (cli.py sets `lara_command`)."""
    parser.add_argument("episode_dir", metavar="EPISODE_DIR",
                        help="a recorder episode folder (<output_dir>/<episode_id>: metadata.yaml, *.mcap, "
                             "episode_meta.json)")


def run_command(command: str, episode_dir: str | Path) -> int:
    """info | recover | dump on one episode folder; bad input raises BagError (a LaraError)."""
    d = Path(episode_dir)
    try:
        if not d.is_dir():
            raise BagError(f"{d}: no such bag folder")
        if command == "dump" and not (d / "metadata.yaml").is_file():
            bag_info(d)          # the same message as info: metadata.yaml is missing
        if command == "recover":
            print(json.dumps(recover(d), indent=2))
        elif command == "info":
            print(json.dumps(bag_info(d), indent=2))
        else:
            for topic, mtype, t, _ in iter_messages(d, raw=True):
                print(f"{t} {topic} {mtype}")
    except LaraError:
        raise
    except _read_errors() as exc:  # recover on a damaged segment metadata file
        raise _bag_error(d, exc) from exc
    return 0


def run(args: argparse.Namespace) -> int:
    command = str(getattr(args, "lara_command", "")).split()[-1]
    if command not in BAG_COMMANDS:
        raise BagError(f"unknown bag command {command!r} (one of {', '.join(BAG_COMMANDS)})")
    return run_command(command, args.episode_dir)


def main(argv=None) -> int:
    """`python -m lara_policy.formats.rosbag.episode info|recover|dump EPISODE_DIR` (same as `lara bag ...`)."""
    ap = argparse.ArgumentParser(prog="python -m lara_policy.formats.rosbag.episode", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=BAG_COMMANDS, help="what to do with the episode folder")
    add_arguments(ap)
    a = ap.parse_args(argv)
    try:
        return run_command(a.command, a.episode_dir)
    except LaraError as exc:
        print(f"lara bag {a.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
