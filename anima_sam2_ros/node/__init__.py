"""The ROS 2 side of anima_sam2_ros: the lifecycle node, its helpers, and the synthetic camera."""
