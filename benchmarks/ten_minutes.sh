#!/bin/bash
# Issue 10, item 4 and issue 13, item 5 (what users feel): the 10-minute MNIST and pix2pix runs, with the matmul peak
# of the same day. `bash benchmarks/ten_minutes.sh mnist [ARGS]` stops after the MNIST run (ARGS go to its gankit train,
# e.g. --seed 1). Run it on an otherwise idle machine.
cd "$(dirname "$0")/.."
set -x
date; uptime; lscpu | grep "Model name"
PYTHONPATH=. .venv/bin/python -c "
import sys, torch; sys.path.insert(0, 'benchmarks'); from train_speed import matmul_peak
torch.set_num_threads(2)
print('fp32 peak GFLOP/s (2 threads, 4096):', round(matmul_peak(torch.float32, 4096, 'cpu'), 1))"
rm -rf runs/item4-mnist
.venv/bin/gankit train --data mnist --split test --data-dir ../shared/data/mnist --max-minutes 10 --set data.holdout=2000 --threads 2 --out runs/item4-mnist --no-progress "${@:2}"
uptime
# FD of one set of 1,000 samples moves by up to 10 % with the noise seed alone: the mean of 10 sets, and for a
# conditional G the share of each requested class the judge finds (200 samples per class)
PYTHONPATH=. .venv/bin/python benchmarks/score_runs.py runs/item4-mnist --sets 10 --data-dir ../shared/data/mnist --per-class
.venv/bin/python -c "import json; s = json.load(open('runs/item4-mnist/summary.json')); print({k: s.get(k) for k in ('step', 'seconds', 'side_share')})"
.venv/bin/gankit sample runs/item4-mnist --n 100 --seed 1 --force --out benchmarks/results/mnist_dcgan_grid.png
date; uptime
[ "$1" = mnist ] && exit 0
rm -rf runs/bench-pix2pix-item4
.venv/bin/python benchmarks/pix2pix_sketch.py --minutes 10 --out runs/bench-pix2pix-item4 --json benchmarks/results/pix2pix_sketch_item4.json
date; uptime
