"""lara_bringup: launch files and YAML configs of LARA-ROS (per robot / simulator)."""
import os


def _find(sub: str) -> str:
    # realpath: colcon --symlink-install links the package directory from build/ to the source tree
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), sub)
    if os.path.isdir(here) and any(f.endswith((".yaml", ".py")) for f in os.listdir(here)):
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory("lara_bringup"), sub)
    except Exception as exc:  # noqa: BLE001 - report where we looked
        raise FileNotFoundError(f"lara_bringup {sub} directory not found (looked at {here}): {exc}")


def config_dir() -> str:
    """Directory of the shipped YAML configs (source tree or installed share/)."""
    return _find("config")


def launch_dir() -> str:
    """Directory of the launch files (source tree or installed share/)."""
    return _find("launch")
