#!/bin/bash
# Fine-tuning (issue 27): a conditional DCGAN trained on MNIST, fine-tuned onto 500 images of scikit-learn's 8x8
# digits (upscaled to 28x28: a digit-like set of another style; no Fashion-MNIST/KMNIST files were available), against
# the same config from scratch. Both runs at once, one thread each, so they share the machine's load alike.
# Usage: benchmarks/finetune_digits.sh MNIST_DIR OUT [EMA_HALF_LIFE]   (MNIST_DIR: the t10k .gz files suffice)
set -euo pipefail
MNIST=${1:?MNIST folder}; OUT=${2:?output folder}; EMA=${3:-10}
PY=${PYTHON:-python}
mkdir -p "$OUT"
[ -d "$OUT/src" ] || nice $PY -m gankit train --data mnist --data-dir "$MNIST" --split test --set model.g_channels=32 \
    --set model.d_channels=32 --max-minutes 5 --threads 1 --no-progress --out "$OUT/src"
COMMON=(--data digits --set data.limit=500 --set data.image_size=28 --set model.num_classes=10 --set model.g_class_norm=true
        --set model.g_channels=32 --set model.d_channels=32 --set train.batch_size=32 --set train.ema_half_life=$EMA
        --max-minutes 3 --threads 1 --no-progress --set train.checkpoint_every=150 --set train.keep_last=100)
nice $PY -m gankit train "${COMMON[@]}" --init-from "$OUT/src" --out "$OUT/ft-ema$EMA" &
nice $PY -m gankit train "${COMMON[@]}" --out "$OUT/scratch-ema$EMA" &
wait
for run in ft-ema$EMA scratch-ema$EMA; do
  for ck in $(ls "$OUT/$run/checkpoints" | grep -E '^(step-|final)'); do
    nice $PY -m gankit eval "$OUT/$run" --checkpoint "$ck" --n 1000 --no-parzen --out "$OUT/eval-$run-$ck.json" > /dev/null
  done
done
