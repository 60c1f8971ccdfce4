#!/usr/bin/env bash
# Issue 30 on a GPU, one short call: host syncs and kernel launches per step of gankit's step against the plain
# PyTorch step (benchmarks/device_profile.py: torch.cuda.set_sync_debug_mode counts with the lines that cause them,
# torch.profiler's CUDA runtime calls and busiest host ops), then the interleaved speed comparison of the same
# configs (benchmarks/device_speed.sh). Writes device_profile.md/.json, against_plain.md/.json and the logs to $OUT.
#
#   OUT=/tmp/out bash benchmarks/device_profile.sh          # CUDA, about 3 minutes, stopped at LIMIT_S in any case
#   DEVICE=cpu STEPS=3 ROUNDS=1 OUT=/tmp/o bash benchmarks/device_profile.sh   # a dry run of the script on the CPU
#
# Settings (environment, all optional): OUT (benchmarks/results), DEVICE (cuda), ONLY (the configs, comma-separated;
# default the two that were slower than plain on an H200 and recommended/mnist), STEPS (50 per measurement),
# ROUNDS (5), LIMIT_S (240 for both parts), PYTHON (python3).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
DEVICE="${DEVICE:-cuda}"
ONLY="${ONLY:-recommended/mnist-conditional,reports/001-dcgan-cifar10,recommended/mnist}"
STEPS="${STEPS:-50}"
LIMIT_S="${LIMIT_S:-240}"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
start=$(date +%s)
PYTHONPATH=. timeout "$((LIMIT_S / 2))" "$PYTHON" benchmarks/device_profile.py --device "$DEVICE" --only "$ONLY" \
  --steps "$STEPS" --out "$OUT" 2>&1 | tee "$OUT/device_profile.log"
rc=${PIPESTATUS[0]}
left=$((LIMIT_S - ($(date +%s) - start)))
if (( left > 20 )); then
  OUT="$OUT" DEVICE="$DEVICE" LIMIT_S="$left" PYTHON="$PYTHON" bash benchmarks/device_speed.sh --only "$ONLY" || rc=$?
fi
exit "$rc"
