"""ament_python build of the node package (colcon).

`pip install .` at the repository root installs the engine alone (../pyproject.toml).

install_requires stays empty on purpose: on a robot torch comes from NVIDIA's wheel and the rest
from rosdep / requirements-robot.txt, and setuptools' generated scripts on Humble refuse to start
when a listed requirement was installed by other means.
"""

import glob

from setuptools import find_packages, setup

PACKAGE = "anima_sam2_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob.glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob.glob("config/*")),
        ("share/" + PACKAGE + "/rviz", glob.glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    # colcon test runs pytest (not unittest) when pytest is a test extra, as in ros2 packages.
    extras_require={"test": ["pytest"]},
    zip_safe=False,
    maintainer="anima_sam2_ros maintainers",
    maintainer_email="maintainers@anima-robotics.invalid",
    description="SAM 2.1 segmentation and tracking lifecycle node for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sam2_node = anima_sam2_ros.node.sam2_node:main",
            "camera_source = anima_sam2_ros.node.camera_source:main",
            "anima-sam2 = anima_sam2_ros.cli:main",
        ],
    },
)
