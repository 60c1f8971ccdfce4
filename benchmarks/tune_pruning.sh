#!/bin/bash
# gankit tune with and without pruning on the same small MNIST space (BENCHMARKS.md, "gankit tune: pruning"):
# 8 trials of 1,000 steps each, 2 workers x 1 thread, conditional MNIST recipe, 2,000 held-out test images.
#   bash benchmarks/tune_pruning.sh [OUT_ROOT]      (MNIST .gz files in ../shared/data/mnist)
cd "$(dirname "$0")/.."
ROOT=${1:-runs/tune-pruning}
DATA=${DATA_DIR:-../shared/data/mnist}
date; uptime; lscpu | grep "Model name"
for pruner in median none; do
    nice -n 10 env PYTHONPATH=. .venv/bin/python -m gankit tune configs/recommended/mnist-conditional.yaml \
        --data-dir "$DATA" --split test --set data.holdout=2000 --steps 1000 --eval-every 200 \
        --param 'optim.lr_g=loguniform(1e-4, 5e-4)' --param 'optim.lr_d=loguniform(1e-4, 5e-4)' \
        --param 'train.batch_size=choice(32, 64)' --param 'model.d_channels=choice(16, 32)' \
        --trials 8 --workers 2 --threads 1 --seed 0 --pruner $pruner --out "$ROOT/$pruner" > "$ROOT-$pruner.log" 2>&1 &
done
wait
date; uptime
