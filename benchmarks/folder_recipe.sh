#!/bin/bash
# Issue 13 item 3: one candidate for the image-folder recipe (configs/recommended/folder-64.yaml plus ARGS), trained for
# 10 minutes on 1 thread on the emoji folder (benchmarks/emoji_folder.py; 2,781 training images, 1,000 held out),
# then scored by classifier FD (5 sets of 500 samples against 500 held-out images; the
# real held-out row scores 5.32 at 64x64, 5.86 at 32x32).
#   [SIZE=32] bash benchmarks/folder_recipe.sh NAME [--set key=value ...] [--seed N]
# SIZE=32 trains and judges the same images at 32x32 (a colour stand-in for CIFAR-10's size, not for its photographs).
# Candidates were run two at a time (both cores busy, each on 1 thread), so each pair shared the machine alike.
# The result goes to benchmarks/results/ttq-steps/folder.json under runs/NAME.
set -e
cd "$(dirname "$0")/.."
data=${EMOJI_DIR:-../emoji-google}
[ -d "$data" ] || PYTHONPATH=. .venv/bin/python benchmarks/emoji_folder.py --out "$data"
name=$1; shift
.venv/bin/gankit train configs/recommended/folder-64.yaml --data-dir "$data" --set data.split=all \
    --set data.holdout=1000 --set data.image_size="${SIZE:-64}" --set train.max_minutes=10 --threads 1 --out "runs/$name" --no-progress "$@"
PYTHONPATH=. .venv/bin/python benchmarks/score_runs.py "runs/$name" --folder "${SIZE:-64}" --sets 5 --data-dir "$data" \
    --json benchmarks/results/ttq-steps/folder.json
