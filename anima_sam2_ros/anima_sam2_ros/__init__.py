"""anima_sam2_ros: SAM 2.1 segmentation and tracking for ROS 2.

This package holds both the generated interfaces (``anima_sam2_msgs.msg``, ``.srv``,
``.action``, installed by colcon) and the hand-written modules: ``engine`` (pure Python, no ROS),
``quant`` (INT8 artifacts), ``node`` (the ROS 2 lifecycle node and its helpers) and ``cli``.
Importing the package itself imports neither torch nor rclpy.
"""

__version__ = "0.1.0"
