"""Launch files and the rviz config, checked without launch/launch_ros/rviz (no wheels for them here).

* The launch files parse, and run against a stand-in of the launch / launch_ros API that accepts
  only the keywords the real classes take on Humble (and later), so a misspelt keyword or a
  Jazzy-only action fails here.
* The executables they start are installed by setup.py (console scripts in lib/anima_sam2_ros),
  the files they reference exist in the installed share directory, and the parameter overrides
  are parameters the node declares.
* rviz/sam2.rviz is valid YAML whose topics are the node's and the demo camera's topics, with the
  camera frame as fixed frame.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pathlib
import re
import sys
import types

import pytest
import yaml

from ros_helpers import require_workspace

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "anima_sam2_ros"
LAUNCH_FILES = ("sam2.launch.py", "sam2_demo.launch.py")

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def share() -> pathlib.Path:
    require_workspace()
    from ament_index_python.packages import get_package_share_directory

    return pathlib.Path(get_package_share_directory(PACKAGE))


def _installed_programs() -> set:
    text = (ROOT / "setup.py").read_text()
    block = re.search(r'"console_scripts": \[(.*?)\]', text, re.S)
    assert block, "setup.py installs no console scripts"
    return set(re.findall(r'"([\w-]+) = ', block.group(1)))


# --- a stand-in for launch / launch_ros ---------------------------------------------------------
class _Entity:
    """Records its arguments; subclasses name the keywords the real class accepts."""

    positional = 0
    keywords: frozenset = frozenset()

    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        assert len(args) <= self.positional, f"{name}: too many positional arguments {args}"
        unknown = set(kwargs) - set(self.keywords)
        assert not unknown, f"{name}: unknown keyword(s) {sorted(unknown)} (not in the Humble API)"
        self.args = args
        self.kwargs = kwargs


_ACTION = frozenset({"condition"})
_PROCESS = frozenset({"output", "emulate_tty", "respawn", "respawn_delay", "sigterm_timeout",
                      "sigkill_timeout", "prefix", "additional_env", "env", "cwd", "log_cmd",
                      "on_exit", "shell"}) | _ACTION
_NODE = frozenset({"executable", "package", "name", "namespace", "exec_name", "parameters",
                   "remappings", "arguments"}) | _PROCESS


def _cls(name, positional=0, keywords=()):
    return type(name, (_Entity,), {"positional": positional, "keywords": frozenset(keywords)})


class _LaunchConfiguration:
    def __init__(self, variable_name, *, default=None):
        self.name = variable_name

    def perform(self, context):
        return context.launch_configurations[self.name]


class _Context:
    def __init__(self, values):
        self.launch_configurations = dict(values)


def _stub_modules():
    launch = types.ModuleType("launch")
    launch.LaunchDescription = _cls("LaunchDescription", 1)
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = _cls("DeclareLaunchArgument", 1,
                                         {"default_value", "description", "choices"} | _ACTION)
    actions.EmitEvent = _cls("EmitEvent", 0, {"event"} | _ACTION)
    actions.LogInfo = _cls("LogInfo", 0, {"msg"} | _ACTION)
    actions.OpaqueFunction = _cls("OpaqueFunction", 0, {"function", "args", "kwargs"} | _ACTION)
    actions.RegisterEventHandler = _cls("RegisterEventHandler", 1, {"event_handler"} | _ACTION)
    actions.IncludeLaunchDescription = _cls("IncludeLaunchDescription", 1,
                                            {"launch_description_source", "launch_arguments"} | _ACTION)
    conditions = types.ModuleType("launch.conditions")
    conditions.IfCondition = _cls("IfCondition", 1, {"predicate_expression"})
    events = types.ModuleType("launch.events")
    events.matches_action = lambda target_action: ("matches", target_action)
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = _LaunchConfiguration
    sources = types.ModuleType("launch.launch_description_sources")
    sources.PythonLaunchDescriptionSource = _cls("PythonLaunchDescriptionSource", 1, {"launch_file_path"})
    lr = types.ModuleType("launch_ros")
    lr_actions = types.ModuleType("launch_ros.actions")
    lr_actions.Node = _cls("Node", 0, _NODE)
    lr_actions.LifecycleNode = _cls("LifecycleNode", 0, _NODE)
    lr_handlers = types.ModuleType("launch_ros.event_handlers")
    lr_handlers.OnStateTransition = _cls("OnStateTransition", 0, {
        "entities", "target_lifecycle_node", "transition", "start_state", "goal_state", "matcher"})
    lr_events = types.ModuleType("launch_ros.events")
    lr_lifecycle = types.ModuleType("launch_ros.events.lifecycle")
    lr_lifecycle.ChangeState = _cls("ChangeState", 0, {"lifecycle_node_matcher", "transition_id"})
    lr_params = types.ModuleType("launch_ros.parameter_descriptions")
    lr_params.ParameterValue = _cls("ParameterValue", 1, {"value", "value_type"})
    return {m.__name__: m for m in (launch, actions, conditions, events, subs, sources, lr, lr_actions,
                                      lr_handlers, lr_events, lr_lifecycle, lr_params)}


@pytest.fixture()
def load_launch(monkeypatch, share):
    """Import an installed launch file against the stand-in; returns its LaunchDescription."""
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)

    def load(filename):
        path = share / "launch" / filename
        spec = importlib.util.spec_from_file_location(f"_launch_{filename.replace('.', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module, module.generate_launch_description()

    return load


def _arguments(description):
    return {e.args[0]: e.kwargs.get("default_value") for e in description.args[0]
            if type(e).__name__ == "DeclareLaunchArgument"}


def _node_parameter_names() -> set:
    from anima_sam2_ros.node import params

    return {p.name for p in params.PARAMS} | {"use_sim_time"}


# --- tests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("filename", LAUNCH_FILES)
def test_launch_files_parse(filename):
    tree = ast.parse((ROOT / "launch" / filename).read_text(), filename)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names
    assert ast.get_docstring(tree), "launch files document their arguments"
    # Humble has no launch_ros.actions.LifecycleTransition: configure/activate go through events.
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "LifecycleTransition" not in imported


def test_launch_files_and_rviz_config_are_installed(share):
    for filename in LAUNCH_FILES:
        assert (share / "launch" / filename).read_text() == (ROOT / "launch" / filename).read_text()
    assert (share / "rviz" / "sam2.rviz").is_file()
    assert (share / "config" / "sam2.yaml").is_file()
    for program in ("sam2_node", "camera_source", "anima-sam2"):
        assert program in _installed_programs()
        assert (share.parent.parent / "lib" / PACKAGE / program).is_file()


def test_sam2_launch(load_launch, share):
    from lifecycle_msgs.msg import Transition

    module, desc = load_launch("sam2.launch.py")
    args = _arguments(desc)
    for name in ("params_file", "namespace", "node_name", "image", "camera_info", "use_sim_time",
                 "auto_activate", "model", "weights"):
        assert name in args
    assert pathlib.Path(args["params_file"]) == share / "config" / "sam2.yaml"
    opaque = [e for e in desc.args[0] if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    setup = opaque[0].kwargs["function"]

    entities = setup(_Context(args))
    kinds = [type(e).__name__ for e in entities]
    assert kinds == ["RegisterEventHandler", "RegisterEventHandler", "LifecycleNode", "EmitEvent"]
    node = entities[2]
    assert node.kwargs["package"] == PACKAGE and node.kwargs["executable"] in _installed_programs()
    assert node.kwargs["name"] == "sam2_node"
    params_file, overrides = node.kwargs["parameters"]
    assert params_file == args["params_file"]
    assert overrides == {"use_sim_time": False, "autostart": False}
    # The node reads its camera from the relative topics `image` and `camera_info`.
    from anima_sam2_ros.node import params

    defaults = {p.name: p.default for p in params.PARAMS}
    remaps = dict(node.kwargs["remappings"])
    assert remaps == {defaults["topics.image"]: "/camera/image_raw",
                      defaults["topics.camera_info"]: "/camera/camera_info"}
    configure = entities[3].kwargs["event"]
    assert configure.kwargs["transition_id"] == Transition.TRANSITION_CONFIGURE
    assert configure.kwargs["lifecycle_node_matcher"] == ("matches", node)
    on_inactive = entities[0].args[0]
    assert on_inactive.kwargs["target_lifecycle_node"] is node
    transition = (on_inactive.kwargs["start_state"], on_inactive.kwargs["goal_state"])
    assert transition == ("configuring", "inactive")
    activate = [e for e in on_inactive.kwargs["entities"] if type(e).__name__ == "EmitEvent"][0]
    assert activate.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE

    # Overrides and use_sim_time reach the node as declared parameters of the right type.
    custom = dict(args, model="test-micro", weights="dummy", use_sim_time="true", namespace="arm",
                  image="/cam/color/image_raw")
    node = [e for e in setup(_Context(custom)) if type(e).__name__ == "LifecycleNode"][0]
    overrides = node.kwargs["parameters"][1]
    assert overrides["model"] == "test-micro" and overrides["weights"] == "dummy"
    assert overrides["use_sim_time"] is True and node.kwargs["namespace"] == "arm"
    assert set(overrides) <= _node_parameter_names()
    assert dict(node.kwargs["remappings"])["image"] == "/cam/color/image_raw"
    # Without auto_activate the node is left unconfigured.
    assert [type(e).__name__ for e in setup(_Context(dict(args, auto_activate="false")))] == ["LifecycleNode"]


def test_demo_launch(load_launch, share, tmp_path, monkeypatch):
    _, desc = load_launch("sam2_demo.launch.py")
    args = _arguments(desc)
    assert {"rviz", "width", "height", "rate", "frame_id", "model", "weights"} <= set(args)
    entities = desc.args[0]
    nodes = [e for e in entities if type(e).__name__ == "Node"]
    camera = [n for n in nodes if n.kwargs["package"] == PACKAGE]
    assert len(camera) == 1
    assert camera[0].kwargs["executable"] == "camera_source" in _installed_programs()
    assert camera[0].kwargs["namespace"] == "camera"  # -> /camera/image_raw, /camera/camera_info
    cam_params = camera[0].kwargs["parameters"][0]
    assert set(cam_params) <= {"width", "height", "rate", "frame_id", "encoding", "reliable", "use_sim_time"}
    # rviz2 is optional: started only when the ament index has it, never an abort without it.
    assert args["rviz"] == "auto"
    (rviz,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    start_rviz = rviz.kwargs["function"]
    config = rviz.kwargs["kwargs"]["config"]
    assert pathlib.Path(config) == share / "rviz" / "sam2.rviz"
    assert start_rviz(_Context({"rviz": "false"}), config=config) == []
    for wanted in ("auto", "true"):  # no rviz2 in this workspace: a log line instead of a node
        (log,) = start_rviz(_Context({"rviz": wanted}), config=config)
        assert type(log).__name__ == "LogInfo" and "rviz2 is not installed" in log.kwargs["msg"]
    # A prefix whose ament index lists rviz2 (what `apt install ros-<distro>-rviz2` provides).
    marker = tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "rviz2"
    marker.parent.mkdir(parents=True)
    marker.touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path}:{os.environ['AMENT_PREFIX_PATH']}")
    (node,) = start_rviz(_Context({"rviz": "auto"}), config=config)
    assert type(node).__name__ == "Node" and node.kwargs["package"] == "rviz2"
    assert node.kwargs["arguments"] == ["-d", config]
    include = [e for e in entities if type(e).__name__ == "IncludeLaunchDescription"]
    assert len(include) == 1
    source = include[0].args[0]
    assert pathlib.Path(source.args[0]) == share / "launch" / "sam2.launch.py"
    passed = dict(include[0].kwargs["launch_arguments"])
    assert passed["image"] == "/camera/image_raw" and passed["camera_info"] == "/camera/camera_info"
    _, sam2_desc = load_launch("sam2.launch.py")
    assert set(passed) <= set(_arguments(sam2_desc)), "demo passes an argument sam2.launch.py lacks"
    # The camera's default frame is rviz's fixed frame.
    assert args["frame_id"] == "camera_optical_frame"


def _rviz_displays():
    config = yaml.safe_load((ROOT / "rviz" / "sam2.rviz").read_text())
    manager = config["Visualization Manager"]
    return config, manager, manager["Displays"]


def test_rviz_config_is_valid_yaml_with_known_displays():
    config, manager, displays = _rviz_displays()
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(config)
    classes = [d["Class"] for d in displays]
    assert classes.count("rviz_default_plugins/Image") >= 2
    assert "rviz_default_plugins/MarkerArray" in classes
    for d in displays:
        assert d["Class"].startswith("rviz_default_plugins/") and d["Name"]
        if "Topic" in d:
            assert d["Topic"]["Value"].startswith("/")
            assert d["Topic"]["Reliability Policy"] in ("Best Effort", "Reliable")
    assert manager["Views"]["Current"]["Class"].startswith("rviz_default_plugins/")


def test_rviz_topics_are_the_nodes_topics():
    """/sam2_node/<x> in rviz is a `~/<x>` publisher of the node; the camera topic is the demo's."""
    require_workspace()
    import anima_sam2_ros.node.camera_source as camera_source
    import anima_sam2_ros.node.sam2_node as sam2_node

    _, manager, displays = _rviz_displays()
    from anima_sam2_ros.node.camera_stream import OUTPUTS, build_streams

    node_source = pathlib.Path(sam2_node.__file__).read_text()
    assert '"sam2_node"' in node_source, "the node's default name is sam2_node"
    # The 2D outputs: each camera stream's (one unnamed stream by default); the perception
    # outputs (issue 16) are created by node/perception.py.
    (single,) = build_streams([], "image", "", "camera_info")
    node_source += " ".join(f'"{single.output_topic(key)}"' for key in OUTPUTS)
    perception = (pathlib.Path(sam2_node.__file__).parent / "perception.py").read_text()
    node_source += " ".join(f'"~/{leaf}"' for leaf in re.findall(r'prefix \+ "(\w+)"', perception))
    topics = {d["Topic"]["Value"]: d["Class"] for d in displays if "Topic" in d}
    expected_types = {"overlay": "Image", "label_image": "Image", "markers": "MarkerArray",
                      "object_points": "PointCloud2"}
    seen = set()
    for topic, cls in topics.items():
        if topic.startswith("/sam2_node/"):
            leaf = topic[len("/sam2_node/"):]
            assert f'"~/{leaf}"' in node_source, f"rviz shows {topic} but the node has no ~/{leaf}"
            assert cls.endswith("/" + expected_types[leaf])
            seen.add(leaf)
        elif topic == "/clicked_point":  # rviz's Publish Point tool -> the node's topics.clicked_point
            assert cls.endswith("/PointStamped")
        else:
            # The demo camera: camera_source publishes `image_raw` in namespace `camera`.
            assert topic == "/camera/image_raw"
            assert '"image_raw"' in pathlib.Path(camera_source.__file__).read_text()
    assert seen == set(expected_types)
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    assert '"camera_optical_frame"' in pathlib.Path(camera_source.__file__).read_text()
