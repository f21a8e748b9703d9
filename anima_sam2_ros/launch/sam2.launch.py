r"""Launch the SAM 2.1 lifecycle node, configure it and activate it.

    ros2 launch anima_sam2_ros sam2.launch.py
    ros2 launch anima_sam2_ros sam2.launch.py image:=/my_cam/color/image_raw \
        camera_info:=/my_cam/color/camera_info params_file:=/path/to/my_sam2.yaml namespace:=arm
    ros2 launch anima_sam2_ros sam2.launch.py model:=test-micro weights:=dummy   # no weights needed

Arguments:
* ``params_file``: node parameters (default: the installed ``config/sam2.yaml``).
* ``namespace`` / ``node_name`` (default ``sam2_node``): the node's topics are
  ``/<namespace>/<node_name>/{masks,label_image,overlay,markers}``.
* ``image`` / ``camera_info``: camera topics the node's ``image`` / ``camera_info`` inputs are
  remapped to (default ``/camera/image_raw``, ``/camera/camera_info``).
* ``model``, ``weights``, ``precision``, ``device``: override the params file when not empty.
* ``use_sim_time`` (default false), ``log_level`` (default info).
* ``auto_activate`` (default true): configure, then activate. false leaves the node unconfigured
  for a lifecycle manager or ``ros2 lifecycle set /sam2_node configure``.

The node starts unconfigured; this file sends *configure* once the process is up and
*activate* when it reaches ``inactive``, with ``EmitEvent(ChangeState)`` and
``OnStateTransition``, which exist on Humble, Jazzy and Kilted (launch_ros's
``LifecycleTransition`` action does not exist on Humble). The node's own ``autostart`` parameter is
forced off here so the two do not race.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "anima_sam2_ros"
EXECUTABLE = "sam2_node"
#: Arguments that override the params file when given a non-empty value.
OVERRIDES = ("model", "weights", "precision", "device")


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _launch_setup(context, *args, **kwargs):
    """Build the node and its lifecycle events from the evaluated arguments."""
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides = {"use_sim_time": _truthy(arg("use_sim_time")), "autostart": False}
    for name in OVERRIDES:
        if arg(name):
            overrides[name] = arg(name)
    node = LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=arg("node_name"),
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[arg("params_file"), overrides],
        remappings=[("image", arg("image")), ("camera_info", arg("camera_info"))],
        arguments=["--ros-args", "--log-level", arg("log_level")],
    )
    actions = [node]
    if not _truthy(arg("auto_activate")):
        return actions

    def change_state(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition_id))

    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[LogInfo(msg="sam2_node configured: activating"),
                  change_state(Transition.TRANSITION_ACTIVATE)]))
    # Configuration failed (model or weights could not be loaded): say so instead of idling.
    report_failure = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="unconfigured",
        entities=[LogInfo(msg="sam2_node failed to configure (see its log): check model, weights, "
                              "device; it stays unconfigured")]))
    # Handlers first, so no transition event is missed; the configure event waits for the
    # node's change_state service.
    return [activate_when_configured, report_failure, node, change_state(Transition.TRANSITION_CONFIGURE)]


def generate_launch_description():
    """Declare the arguments; the node is built once they are evaluated."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "sam2.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="Node parameters (YAML)."),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node."),
        DeclareLaunchArgument("node_name", default_value="sam2_node", description="Node name."),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="Camera sensor_msgs/Image topic (remapped to the node's `image`)."),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="Camera info topic (remapped to the node's `camera_info`)."),
        DeclareLaunchArgument("model", default_value="", description="Override: model name."),
        DeclareLaunchArgument("weights", default_value="",
                              description="Override: weights (local dir, INT8 artifact, HF id, 'dummy')."),
        DeclareLaunchArgument("precision", default_value="", description="Override: int8|fp16|bf16|fp32."),
        DeclareLaunchArgument("device", default_value="", description="Override: auto|cpu|cuda|cuda:N."),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (bag replay, simulation)."),
        DeclareLaunchArgument("auto_activate", default_value="true",
                              description="Configure and activate on start-up."),
        DeclareLaunchArgument("log_level", default_value="info", description="Node logger level."),
        OpaqueFunction(function=_launch_setup),
    ])
