"""Demo: the built-in synthetic camera, the SAM 2.1 node, and rviz2 showing the results.

    ros2 launch anima_sam2_ros sam2_demo.launch.py                       # weights from config/sam2.yaml
    ros2 launch anima_sam2_ros sam2_demo.launch.py model:=test-micro weights:=dummy

Then prompt it (from another terminal):

    ros2 run anima_sam2_ros anima-sam2 segment --point 320,240            # the red disc
    ros2 run anima_sam2_ros anima-sam2 track --point 320,240 --frames 100

Arguments: ``rviz``: ``auto`` (default) starts rviz2 when it is installed and says so when it is
not, ``true`` asks for it (a warning, not an abort, when it is missing), ``false``; ``width`` /
``height`` / ``rate`` of the camera (640 x 480 at 15 Hz), ``frame_id``
(``camera_optical_frame``; ``rviz/sam2.rviz`` uses it as the fixed frame), and ``params_file``,
``model``, ``weights``, ``precision``, ``device``, ``use_sim_time``, ``log_level`` passed to
``sam2.launch.py``. The camera publishes ``/camera/image_raw`` and ``/camera/camera_info``; rviz
shows ``/sam2_node/overlay``, ``/sam2_node/label_image`` and ``/sam2_node/markers``.
"""

import os

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "anima_sam2_ros"
PASSED_ON = ("params_file", "model", "weights", "precision", "device", "use_sim_time", "log_level")


def generate_launch_description():
    """Camera source + sam2 node (configured and activated) + optional rviz2."""
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument("rviz", default_value="auto", choices=["auto", "true", "false"],
                              description="Start rviz2: auto = when installed."),
        DeclareLaunchArgument("width", default_value="640", description="Camera image width."),
        DeclareLaunchArgument("height", default_value="480", description="Camera image height."),
        DeclareLaunchArgument("rate", default_value="15.0", description="Camera frames per second."),
        DeclareLaunchArgument("frame_id", default_value="camera_optical_frame",
                              description="Camera frame (rviz's fixed frame in rviz/sam2.rviz)."),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "sam2.yaml"),
                              description="sam2_node parameters (YAML)."),
        DeclareLaunchArgument("model", default_value="", description="Override: model name."),
        DeclareLaunchArgument("weights", default_value="",
                              description="Override: weights ('dummy' = random, meaningless masks)."),
        DeclareLaunchArgument("precision", default_value="", description="Override: precision."),
        DeclareLaunchArgument("device", default_value="", description="Override: device."),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock."),
        DeclareLaunchArgument("log_level", default_value="info", description="sam2_node logger level."),
    ]
    camera = Node(
        package=PACKAGE,
        executable="camera_source",
        name="camera_source",
        namespace="camera",
        output="screen",
        parameters=[{
            "width": LaunchConfiguration("width"),
            "height": LaunchConfiguration("height"),
            "rate": ParameterValue(LaunchConfiguration("rate"), value_type=float),  # "15" -> 15.0
            "frame_id": LaunchConfiguration("frame_id"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
        }],
    )
    sam2 = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "sam2.launch.py")),
        launch_arguments=[(name, LaunchConfiguration(name)) for name in PASSED_ON]
        + [("image", "/camera/image_raw"), ("camera_info", "/camera/camera_info")],
    )
    rviz = OpaqueFunction(function=_rviz, kwargs={"config": os.path.join(share, "rviz", "sam2.rviz")})
    return LaunchDescription(args + [camera, sam2, rviz])


def _rviz_installed() -> bool:
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return False
    return True


def _rviz(context, config):
    """rviz2 is optional (headless robots, CI): a missing rviz2 never aborts the launch."""
    wanted = LaunchConfiguration("rviz").perform(context)
    if wanted == "false":
        return []
    if not _rviz_installed():
        level = "WARNING" if wanted == "true" else "INFO"
        return [LogInfo(msg=f"[{level}] rviz2 is not installed: not starting it (camera and node run "
                            "without it; install ros-$ROS_DISTRO-rviz2 to see the overlays)")]
    return [Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", config],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
    )]
