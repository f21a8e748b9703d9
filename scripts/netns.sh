#!/usr/bin/env bash
# Run a command in a private network namespace with only loopback up, when this machine
# allows it (root, or unprivileged user namespaces); otherwise run it as it is. Either way DDS
# discovery stays on loopback through ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
set -euo pipefail
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if [ "${ANIMA_NO_NETNS:-0}" != "1" ] && command -v unshare >/dev/null 2>&1 \
   && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up 2>/dev/null || true; exec "$@"' netns "$@"
fi
exec "$@"
