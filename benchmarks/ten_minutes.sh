#!/bin/bash
# Issue 10, item 4 (what users feel): the 10-minute MNIST and pix2pix runs after the speed work, with the matmul peak of the same day.
cd "$(dirname "$0")/.."
set -x
date; uptime; lscpu | grep "Model name"
PYTHONPATH=. .venv/bin/python -c "
import sys, torch; sys.path.insert(0, 'benchmarks'); from train_speed import matmul_peak
torch.set_num_threads(2)
print('fp32 peak GFLOP/s (2 threads, 4096):', round(matmul_peak(torch.float32, 4096, 'cpu'), 1))"
rm -rf runs/item4-mnist
.venv/bin/gankit train --data mnist --split test --data-dir ../shared/data/mnist --max-minutes 10 --set data.holdout=2000 --threads 2 --out runs/item4-mnist --no-progress
uptime
PYTHONPATH=. .venv/bin/python -c "
import sys, json, torch; sys.path.insert(0, 'benchmarks'); from time_to_quality import Judge
from gankit.tasks import load; from gankit.data.base import to_uint8
j = Judge('../shared/data/mnist', 28, 8000); g = load('runs/item4-mnist')
x = to_uint8(g.sample(1000, seed=1)); s = json.load(open('runs/item4-mnist/summary.json'))
print(json.dumps({'steps': g.step, 'seconds': s['seconds'], 'fd': j.fd(x), 'real_fd': j.real_fd, 'judge_acc': j.ext.accuracy, 'side_share': s.get('side_share')}))"
.venv/bin/gankit sample runs/item4-mnist --n 100 --seed 1 --out benchmarks/results/mnist_dcgan_grid.png
date; uptime
rm -rf runs/bench-pix2pix-item4
.venv/bin/python benchmarks/pix2pix_sketch.py --minutes 10 --out runs/bench-pix2pix-item4 --json benchmarks/results/pix2pix_sketch_item4.json
date; uptime
