"""The package.xml files as rosdep reads them: catkin_pkg's parser, conditions evaluated on an
environment as `rosdep install` does (os.environ)."""
from __future__ import annotations

from pathlib import Path

import pytest

package = pytest.importorskip("catkin_pkg.package")
SRC = Path(__file__).resolve().parents[2] / "ros2_ws" / "src"


@pytest.mark.parametrize("env, wanted", [
    ({}, False),
    ({"LARA_WITH_MOVEIT": "1", "ROS_DISTRO": "jazzy"}, True),
    ({"LARA_WITH_MOVEIT": "1", "ROS_DISTRO": "kilted"}, True),
    # Humble has no moveit_py release in rosdistro: the key must be skipped, not fail rosdep
    ({"LARA_WITH_MOVEIT": "1", "ROS_DISTRO": "humble"}, False),
    ({"ROS_DISTRO": "jazzy"}, False),
])
def test_moveit_py_rosdep_key_condition(env, wanted):
    pkg = package.parse_package(str(SRC / "lara_policy" / "package.xml"))
    pkg.evaluate_conditions(env)
    deps = [d for d in pkg.exec_depends if d.name == "moveit_py"]
    assert len(deps) == 1
    assert bool(deps[0].evaluated_condition) is wanted, (env, deps[0].condition)


@pytest.mark.parametrize("name", ["lara_policy", "lara_bringup", "lara_msgs"])
def test_package_xml_parses(name):
    pkg = package.parse_package(str(SRC / name / "package.xml"))
    pkg.validate()
