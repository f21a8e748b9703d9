#!/usr/bin/env bash
# Engine benchmark on a lent GPU machine (issue 6): sam2.1-hiera-small at 1024x1024, fp32 / bf16 /
# fp16 / int8, each without and with torch.compile, through anima_sam2_ros.bench.engine_bench.
#
#   scripts/gpu_bench.sh                       # everything; results in $OUT (or /tmp/anima_gpu_bench)
#   PRECISIONS="fp32 int8" COMPILE="0" scripts/gpu_bench.sh    # a subset (split over calls)
#
# Python: $PYTHON (default python3) when it already has a CUDA torch, transformers (with
# Sam2VideoModel) and torchao; otherwise a venv at $VENV (default /tmp/anima-gpu-venv) that sees
# the system's torch (--system-site-packages) and gets the pinned transformers / torchao /
# safetensors of requirements.txt: from wheels in $WHEELS (default ./.whl, for machines without
# a network: `scripts/gpu_wheels.sh` fills it here; the device call then carries .whl) or from
# the package index.
#
# Output ($OUT): gpu_bench.json (every run's report + the GPU, date and commands),
# gpu_bench.md (the table for the README "Performance" section), gpu_bench.log (all output).
# Other knobs: MODEL (sam2.1-hiera-small), WEIGHTS (dummy), RESOLUTION (1024x1024), RUNS (20),
# WARMUP (5), OBJECTS (1,4,16), TRACK_FILL (7), COMPILE_MODE (default), DEVICE (cuda).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/anima_gpu_bench}
mkdir -p "$OUT"
LOG="$OUT/gpu_bench.log"
: >"$LOG"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-/tmp/anima-gpu-venv}
WHEELS=${WHEELS:-$ROOT/.whl}
MODEL=${MODEL:-sam2.1-hiera-small}
WEIGHTS=${WEIGHTS:-dummy}
RESOLUTION=${RESOLUTION:-1024x1024}
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-5}
OBJECTS=${OBJECTS:-1,4,16}
TRACK_FILL=${TRACK_FILL:-7}
COMPILE_MODE=${COMPILE_MODE:-default}
DEVICE=${DEVICE:-cuda}
PRECISIONS=${PRECISIONS:-fp32 bf16 fp16 int8}
COMPILE=${COMPILE:-0 1}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The Python package lives in the ROS package folder anima_sam2_ros/.
export PYTHONPATH="$ROOT/anima_sam2_ros${PYTHONPATH:+:$PYTHONPATH}"

log() { printf '==> %s\n' "$*" | tee -a "$LOG" >&2; }

check_py() {
  DEVICE="$DEVICE" "$1" - <<'EOF' >>"$LOG" 2>&1
import os, sys
import torch
assert torch.cuda.is_available() or not os.environ["DEVICE"].startswith("cuda"), "no CUDA"
from transformers import Sam2VideoModel  # noqa: F401
import torchao  # noqa: F401
import safetensors  # noqa: F401
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print("python ok:", sys.version.split()[0], "torch", torch.__version__, gpu)
EOF
}

PY=$PYTHON
if ! check_py "$PY"; then
  log "$PYTHON lacks something (see the log): making $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV" >>"$LOG" 2>&1
  PY="$VENV/bin/python"
  pins=$(grep -E '^(transformers|torchao|safetensors)==' requirements.txt | tr '\n' ' ')
  if [ -d "$WHEELS" ]; then
    log "installing $pins from $WHEELS (no index)"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" $pins >>"$LOG" 2>&1 \
      || "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl >>"$LOG" 2>&1
  else
    log "installing $pins from the package index"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q $pins >>"$LOG" 2>&1
  fi
  check_py "$PY" || { log "no usable Python (CUDA torch + transformers + torchao): see $LOG"; exit 1; }
fi
tail -n 1 "$LOG" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$LOG" 2>&1 || true

RUN_DIR=$(mktemp -d)
trap 'rm -rf "$RUN_DIR"' EXIT
for precision in $PRECISIONS; do
  for compiled in $COMPILE; do
    name="${precision}$([ "$compiled" = 1 ] && echo _compile)"
    args=(-m anima_sam2_ros.bench.engine_bench --model "$MODEL" --weights "$WEIGHTS" --precision "$precision"
          --device "$DEVICE" --resolution "$RESOLUTION" --runs "$RUNS" --warmup "$WARMUP"
          --objects "$OBJECTS" --track-fill "$TRACK_FILL" --out "$RUN_DIR/$name.json")
    [ "$compiled" = 1 ] && args+=(--compile --compile-mode "$COMPILE_MODE")
    log "$name: $PY ${args[*]}"
    echo "$PY ${args[*]}" >"$RUN_DIR/$name.cmd"
    start=$(date +%s)
    if "$PY" "${args[@]}" >>"$LOG" 2>&1; then
      log "$name: done in $(( $(date +%s) - start )) s"
    else
      log "$name: FAILED after $(( $(date +%s) - start )) s (see the log)"
      tail -n 30 "$LOG" >"$RUN_DIR/$name.err"
    fi
  done
done

"$PY" - "$RUN_DIR" "$OUT" "$PRECISIONS" "$COMPILE" <<'EOF'
import datetime, json, os, sys
run_dir, out, precisions, compiles = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
runs, failures = {}, {}
for p in precisions:
    for c in compiles:
        name = p + ("_compile" if c == "1" else "")
        cmd = open(os.path.join(run_dir, name + ".cmd")).read().strip()
        path = os.path.join(run_dir, name + ".json")
        if os.path.isfile(path):
            rep = json.load(open(path))
            rep["command"] = cmd
            runs[name] = rep
        else:
            err = os.path.join(run_dir, name + ".err")
            failures[name] = {"command": cmd, "log_tail": open(err).read() if os.path.isfile(err) else ""}
first = next(iter(runs.values()), None)
gpu = first["machine"].get("gpu") if first else None
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
json.dump({"gpu": gpu, "date": date, "runs": runs, "failures": failures}, open(os.path.join(out, "gpu_bench.json"), "w"),
          indent=2)
cols = ["encoder", "decoder_1", "decoder_8_batched", "decoder_8_sequential", "track_1", "track_4", "track_16"]
lines = [f"GPU: {gpu}, {date}; {first['config']['model'] if first else ''} "
         f"{first['config']['resolution'] if first else ''}, dummy weights: "
         f"{first['config']['dummy_weights'] if first else ''}; median ms (p90)", "",
         "| precision | compile | load s | " + " | ".join(cols) + " | peak CUDA MiB |",
         "|---|---|---|" + "---|" * len(cols) + "---|"]
for name, rep in runs.items():
    t = rep["timings_ms"]
    cells = [f"{t[c]['median']:.2f} ({t[c]['p90']:.2f})" if c in t else "-" for c in cols]
    lines.append(f"| {rep['config']['precision']} | {'yes' if rep['config']['compile'] else 'no'} | "
                 f"{rep['load_s']:.1f} | " + " | ".join(cells) + f" | {rep['memory']['peak_cuda_mb'] or 0:.0f} |")
for name, f in failures.items():
    lines.append(f"| {name} | FAILED | | " + " | ".join("-" for _ in cols) + " | |")
if "fp32" in runs and "int8" in runs:
    r = runs["int8"]["timings_ms"]["encoder"]["median"] / runs["fp32"]["timings_ms"]["encoder"]["median"]
    lines += ["", f"int8 / fp32 encoder time: {r:.2f}"]
text = "\n".join(lines) + "\n"
open(os.path.join(out, "gpu_bench.md"), "w").write(text)
print(text)
sys.exit(1 if failures and not runs else 0)
EOF
