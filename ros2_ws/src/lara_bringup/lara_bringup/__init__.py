"""lara_bringup: launch files and YAML configs of LARA-ROS (per robot / simulator)."""
import os


def config_dir() -> str:
    """Directory of the shipped YAML configs (source tree or installed share/)."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config")
    if os.path.isdir(here):
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory("lara_bringup"), "config")
    except Exception as exc:  # noqa: BLE001 - report where we looked
        raise FileNotFoundError(f"lara_bringup config directory not found (looked at {here}): {exc}")
