#!/bin/bash
# gankit tune with and without pruning on the same small MNIST space (docs/notes/tune.md, "Pruned against unpruned"):
# 6 trials of 800 steps each, 2 workers x 1 thread, conditional MNIST recipe, 2,000 held-out test images, TPE seed 0.
# The second search starts once the first has built the scoring reference (the classifier is then cached).
#   DATA_DIR=path/to/mnist bash benchmarks/tune_pruning.sh [OUT_ROOT] [NICE]
cd "$(dirname "$0")/.."
ROOT=${1:-runs/tune-pruning}
DATA=${DATA_DIR:-../shared/data/mnist}
mkdir -p "$ROOT"
date; uptime; lscpu | grep "Model name"
search() {
    nice -n "${2:-0}" env PYTHONPATH=. .venv/bin/python -m gankit tune configs/recommended/mnist-conditional.yaml \
        --data-dir "$DATA" --split test --set data.holdout=2000 --steps 800 --eval-every 200 \
        --param 'optim.lr_g=loguniform(1e-4, 5e-4)' --param 'optim.lr_d=loguniform(1e-4, 5e-4)' \
        --param 'train.batch_size=choice(32, 64)' --param 'model.d_channels=choice(16, 32)' \
        --trials 6 --workers 2 --threads 1 --seed 0 --pruner "$1" --out "$ROOT/$1" > "$ROOT/$1.log" 2>&1
}
search median "$2" &
until [ -f "$ROOT/median/study.json" ]; do sleep 5; done
search none "$2" &
wait
date; uptime
