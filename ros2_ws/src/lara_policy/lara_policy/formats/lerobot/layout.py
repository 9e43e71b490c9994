"""The LeRobotDataset v3.0 layout: paths, feature keys, the codecs LeRobot accepts, and how a
folder is recognised."""
from __future__ import annotations

from pathlib import Path

from lara_policy.formats.store import StoreError

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
SIDECAR = "meta/lara.json"
STATE_KEY, ACTION_KEY, SUCCESS_KEY = "observation.state", "action", "next.success"
IMAGE_PREFIX = "observation.images."
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
VCODECS = ("libsvtav1", "h264", "hevc")          # what LeRobot's encoder accepts
# names for the action vector of known action spaces (else "<action_space>_<i>")
ACTION_NAMES = {("ee_delta_xyz_gripper", 4): ["delta_x", "delta_y", "delta_z", "gripper"]}


class LeRobotError(StoreError):
    """A directory is not a readable LeRobot v3 dataset, or a store cannot be written as one."""


def _pa():
    import pyarrow as pa
    import pyarrow.parquet as pq
    return pa, pq


def camera_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def _camera_name(key: str) -> str:
    """observation.images.wrist -> wrist; observation.image -> image; other.key -> other_key."""
    if key.startswith(IMAGE_PREFIX):
        return key[len(IMAGE_PREFIX):]
    return key.split(".")[-1] if key.startswith("observation.") else key.replace(".", "_")


def is_lerobot_dir(path: str | Path) -> bool:
    return (Path(path) / "meta" / "info.json").is_file()


def detect(path: Path) -> bool:
    """A LeRobot dataset folder: a directory with meta/info.json, or one laid out as a v3 dataset
    (meta/tasks.parquet, meta/episodes/ or data/chunk-*/) whose info.json is missing: reading it
    then names the missing file instead of "format not recognised"."""
    p = Path(path)
    if not p.is_dir():
        return False
    return is_lerobot_dir(p) or (p / "meta" / "tasks.parquet").is_file() or (p / "meta" / "episodes").is_dir() \
        or any(p.glob("data/chunk-*/*.parquet"))
