"""The ROS 2 side of anima_sam2_ros: the ``sam2_node`` lifecycle node and its helpers.

Modules: ``sam2_node`` (the node and ``main``), ``params`` (parameter table), ``conversions``
(messages <-> numpy / engine types), ``worker`` (inference thread and latest-frame slot),
``visualization`` (overlay, label image, markers), ``camera_source`` (synthetic camera).
Importing this package imports nothing heavy.
"""
