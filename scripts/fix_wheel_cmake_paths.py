#!/usr/bin/env python3
"""Point the ROS 2 wheels' CMake export files at this venv's Python and numpy headers.

The ros-* wheels are built on a manylinux image and record its paths
(/opt/python/cp311-cp311/include/python3.11 and its numpy include directory); CMake then stops
on a non-existent include path when a package generates Python interfaces against them.
"""

from __future__ import annotations

import pathlib
import re
import sys
import sysconfig

import numpy


def main(venv: str) -> int:
    """Rewrite every share/**/*.cmake under ``venv``; print how many files changed."""
    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    pat_np = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(_core/)?include")
    pat_py = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
    changed = 0
    for path in pathlib.Path(venv, "share").rglob("*.cmake"):
        text = path.read_text()
        new = pat_py.sub(py_inc, pat_np.sub(np_inc, text))
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_wheel_cmake_paths: {changed} CMake files now use {py_inc} and {np_inc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
