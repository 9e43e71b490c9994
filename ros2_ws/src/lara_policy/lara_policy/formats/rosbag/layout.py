"""The recorder's episode bag layout (a standard split rosbag2 bag, as `ros2 bag record
--max-bag-duration` writes; `ros2 bag info <episode>` and rosbags open it):

    <output_dir>/<episode_id>/metadata.yaml          rosbag2 metadata listing every CLOSED segment
    <output_dir>/<episode_id>/<episode_id>_<n>.mcap  one complete MCAP file per flush period
    <output_dir>/<episode_id>/episode_meta.json      LARA episode metadata (instruction, success, ...)
    <output_dir>/<episode_id>/.segments/<n>.yaml     per-segment rosbag2 metadata (used by recover)
    <output_dir>/.<episode_id>.partial/              the segment being written (lost on a kill)

and the error every bag reader and tool raises for a bag it cannot use.
"""
from __future__ import annotations

from io import StringIO
from pathlib import Path

from ruamel.yaml import YAML

from lara_policy.common.errors import ConvertError

META_NAME = "episode_meta.json"
SEGMENTS_DIR = ".segments"


class BagError(ConvertError):
    """A bag folder that is missing, incomplete or unreadable (the message names the path)."""


def _read_errors() -> tuple:
    """What a damaged bag raises while being read (rosbags, the YAML metadata, the file system)."""
    from rosbags.rosbag2 import ReaderError
    from ruamel.yaml import YAMLError
    return (ReaderError, YAMLError, OSError, KeyError, TypeError, ValueError, EOFError)


def _bag_error(d, exc: Exception) -> BagError:
    return BagError(f"cannot read bag {d}: {type(exc).__name__}: {exc}")


def _yaml() -> YAML:
    y = YAML(typ="safe")
    y.default_flow_style = False
    return y


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf8") as f:
        return _yaml().load(f)


def dump_yaml(data: dict) -> str:
    s = StringIO()
    _yaml().dump(data, s)
    return s.getvalue()


def merge_segment_metadata(segments: list[dict]) -> dict:
    """Merge per-segment rosbag2 metadata (each a whole `metadata.yaml` dict, one file each)
    into the metadata of one split bag holding all their files."""
    if not segments:
        raise ValueError("no segments to merge")
    infos = [s["rosbag2_bagfile_information"] for s in segments]
    out = dict(infos[-1])
    files = [f for info in infos for f in info["files"]]
    starts = [f["starting_time"]["nanoseconds_since_epoch"] for f in files]
    ends = [f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"] for f in files]
    topics: dict[str, dict] = {}
    for info in infos:
        for t in info["topics_with_message_count"]:
            name = t["topic_metadata"]["name"]
            if name in topics:
                topics[name]["message_count"] += t["message_count"]
            else:
                topics[name] = {"topic_metadata": dict(t["topic_metadata"]), "message_count": t["message_count"]}
    out.update({
        "relative_file_paths": [f["path"] for f in files],
        "files": files,
        "starting_time": {"nanoseconds_since_epoch": min(starts)},
        "duration": {"nanoseconds": max(ends) - min(starts)},
        "message_count": sum(f["message_count"] for f in files),
        "topics_with_message_count": list(topics.values()),
    })
    return {"rosbag2_bagfile_information": out}


def segment_index(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[-1]) if "_" in path.stem else int(path.stem)


def is_recorder_episode(path: Path) -> bool:
    return path.is_dir() and ((path / META_NAME).is_file() or (path / SEGMENTS_DIR).is_dir())
