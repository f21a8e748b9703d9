"""The two ROS 2 packages as a robot's workspace sees them: discovery, build order, rosdep keys.

A robot clones the repository into ``~/ros2_ws/src`` and runs ``colcon build``: colcon must find
both packages under the clone (the root ``pyproject.toml`` is only for ``pip install .`` and must
not be taken for a package), build the interfaces first, and every ``package.xml`` dependency
must be a key rosdep resolves on Humble and Jazzy.
"""

from __future__ import annotations

import ast
import pathlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MSGS = REPO / "anima_sam2_msgs"
NODE = REPO / "anima_sam2_ros"

#: rosdep keys: ROS packages of ros-<distro>-* on Humble and Jazzy, and rosdep's python keys.
ROS_PACKAGES = {
    "ament_cmake", "ament_cmake_python", "rosidl_default_generators", "rosidl_default_runtime",
    "builtin_interfaces", "std_msgs", "sensor_msgs", "geometry_msgs", "rclpy", "lifecycle_msgs",
    "action_msgs", "visualization_msgs", "diagnostic_msgs", "launch", "launch_ros",
    "ament_index_python", "vision_msgs", "ros2lifecycle", "ros2action", "ros2service", "ros2launch",
    "ros2topic", "ros2run", "ros2pkg", "ros2param", "ros2cli", "rcl_interfaces", "rosidl_interface_packages",
}
ROSDEP_PYTHON = {"python3-numpy", "python3-opencv", "python3-yaml", "python3-pytest", "python3-hypothesis"}
#: Python modules whose rosdep key is not the module name (the rest are ROS packages of that name).
MODULE_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml",
               "pytest": "python3-pytest", "hypothesis": "python3-hypothesis"}


def _deps(package_dir: pathlib.Path) -> dict:
    root = ET.parse(package_dir / "package.xml").getroot()
    out: dict = {}
    for tag in ("buildtool_depend", "build_depend", "depend", "exec_depend", "test_depend"):
        out[tag] = [e.text.strip() for e in root.findall(tag)]
    out["name"] = root.findtext("name")
    out["build_type"] = root.find("export").findtext("build_type")
    return out


def test_package_xml_names_types_and_keys():
    msgs, node = _deps(MSGS), _deps(NODE)
    assert (msgs["name"], msgs["build_type"]) == ("anima_sam2_msgs", "ament_cmake")
    assert (node["name"], node["build_type"]) == ("anima_sam2_ros", "ament_python")
    # A client depends on the interfaces alone: they carry no Python or torch dependency.
    msgs_keys = [d for deps in msgs.values() if isinstance(deps, list) for d in deps]
    assert not [d for d in msgs_keys if d.startswith("python3")]
    assert "anima_sam2_msgs" in node["exec_depend"]
    for pkg in (msgs, node):
        for tag, keys in pkg.items():
            if isinstance(keys, list):
                unknown = set(keys) - ROS_PACKAGES - ROSDEP_PYTHON - {"anima_sam2_msgs"}
                assert not unknown, f"{pkg['name']} {tag}: not a rosdep key on Humble/Jazzy: {unknown}"
    # Only the interfaces package generates code; the node package has no CMake.
    assert (MSGS / "CMakeLists.txt").is_file() and not (NODE / "CMakeLists.txt").exists()
    assert {p.parent.name for p in MSGS.glob("*/*.*") if p.suffix in (".msg", ".srv", ".action")} \
        == {"msg", "srv", "action"}
    assert (NODE / "resource" / "anima_sam2_ros").is_file() and (NODE / "setup.cfg").is_file()


def _imported(paths) -> set:
    """Top-level modules imported anywhere in ``paths`` (also inside functions)."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def _ros_keys(modules: set) -> set:
    """The rosdep keys of imported modules: the known Python ones and every ROS package name."""
    return {MODULE_KEYS[m] for m in modules if m in MODULE_KEYS} | (modules & ROS_PACKAGES)


def test_every_imported_ros_package_and_cli_verb_is_declared():
    """What the code imports is an exec_depend; what the tests use is declared too.

    Imports and `ros2 VERB` command lines of the tests and README: test_depend (or exec_depend).
    rosdep installs exactly these on a robot.
    """
    node = _deps(NODE)
    runtime = set(node["exec_depend"]) | set(node["depend"])
    code = sorted((NODE / "anima_sam2_ros").rglob("*.py")) + sorted((NODE / "launch").glob("*.py"))
    missing = _ros_keys(_imported(code)) - runtime
    assert not missing, f"package.xml: imported by the package, not an exec_depend: {sorted(missing)}"
    tests = sorted((NODE / "test").rglob("*.py"))
    text = "\n".join(p.read_text() for p in tests) + (REPO / "README.md").read_text()
    verbs = set(re.findall(r"\bros2 (launch|run|lifecycle|service|action|topic|param|pkg|daemon)\b", text))
    verbs |= set(re.findall(r'"ros2", "([a-z]+)"', text))
    cli = {f"ros2{v}" for v in verbs if v != "daemon"} | ({"ros2cli"} if "daemon" in verbs else set())
    missing = (_ros_keys(_imported(tests)) | cli) - runtime - set(node["test_depend"]) - {"anima_sam2_msgs"}
    assert not missing, f"package.xml: used by the tests / README, not declared: {sorted(missing)}"


@pytest.mark.ros
def test_colcon_finds_both_packages_in_a_cloned_workspace(tmp_path):
    """``git clone <repo> ~/ros2_ws/src/anima_sam2`` then ``colcon build``: what colcon sees."""
    colcon = shutil.which("colcon")
    if colcon is None:
        pytest.skip("needs colcon, not installed here")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "anima_sam2").symlink_to(REPO, target_is_directory=True)
    listed = subprocess.run([colcon, "list", "--topological-order"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=True).stdout.split("\n")
    rows = [line.split("\t") for line in listed if line.strip()]
    # Build artefacts of the developer's own workspace (build/src links back here) are not packages.
    assert [(r[0], r[2]) for r in rows] == [("anima_sam2_msgs", "(ros.ament_cmake)"),
                                             ("anima_sam2_ros", "(ros.ament_python)")], listed
    assert rows[0][1] == "src/anima_sam2/anima_sam2_msgs"
