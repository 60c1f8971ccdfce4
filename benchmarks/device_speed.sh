#!/usr/bin/env bash
# Issue 30 on a GPU: gankit's training step against the same step in plain PyTorch, interleaved in one process, for
# every distinct model of the shipped reports and recommended recipes (benchmarks/against_plain.py). Writes
# against_plain.md (the table, ready to append to BENCHMARKS.md), against_plain.json (every round), nvidia-smi.txt and
# device_speed.log to $OUT. Run from anywhere; needs only python3 with torch (gankit is taken from this checkout).
#
#   OUT=/tmp/out bash benchmarks/device_speed.sh            # CUDA, about 3 minutes, stopped at LIMIT_S in any case
#   DEVICE=cpu ROUNDS=1 OUT=/tmp/o bash benchmarks/device_speed.sh --only recommended/mnist --set train.batch_size=8
#
# Settings (environment, all optional): OUT (default benchmarks/results), DEVICE (cuda), ROUNDS (5),
# SIDE_SECONDS (0.3: timed seconds per side per round), LIMIT_S (220: the Python run is stopped after this; the
# files hold every model finished by then), PYTHON (python3). Extra arguments go to train_speed.py.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
DEVICE="${DEVICE:-cuda}"
ROUNDS="${ROUNDS:-5}"
SIDE_SECONDS="${SIDE_SECONDS:-0.3}"
LIMIT_S="${LIMIT_S:-220}"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1  # progress lines reach the log as they happen
mkdir -p "$OUT"
if [[ "$DEVICE" == cuda* ]]; then
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
fi
PYTHONPATH=. timeout "$LIMIT_S" "$PYTHON" benchmarks/train_speed.py --against plain --device "$DEVICE" \
  --rounds "$ROUNDS" --seconds "$SIDE_SECONDS" --out "$OUT" "$@" 2>&1 | tee "$OUT/device_speed.log"
rc=${PIPESTATUS[0]}
if [[ $rc == 124 ]]; then
  echo "device_speed.sh: stopped after ${LIMIT_S} s; $OUT/against_plain.md holds the models finished" | tee -a "$OUT/device_speed.log"
fi
exit "$rc"
