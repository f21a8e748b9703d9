#!/usr/bin/env bash
# Wheels that scripts/gpu_bench.sh needs on a lent GPU machine without a network: the pinned
# transformers and torchao of requirements.txt, for that machine's Python (3.12, manylinux x86_64).
# Everything else they need (torch, safetensors, huggingface-hub, tokenizers, ...) is on its image.
#
#   scripts/gpu_wheels.sh            # here, once: fills .whl/ (about 16 MB, git-ignored)
#   # then the device call carries [".whl"] and runs: scripts/gpu_bench.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${WHEELS:-$ROOT/.whl}
PYVER=${PYVER:-3.12}
pins=$(grep -E '^(transformers|torchao)==' "$ROOT/requirements.txt")
mkdir -p "$DEST"
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" $pins 2>&1 | grep -v "is ignored: it is neither" || true
for pin in $pins; do
  name=${pin%%==*}
  ls "$DEST"/"$name"-"${pin##*==}"-*.whl >/dev/null 2>&1 || { echo "missing wheel for $pin in $DEST" >&2; exit 1; }
done
ls -l "$DEST"
