#!/bin/bash
# Issue 10, item 4 and issue 13, item 5 (what users feel): the 10-minute MNIST and pix2pix runs, with the matmul peak
# of the same day. `bash benchmarks/ten_minutes.sh mnist` stops after the MNIST run. Run it on an otherwise idle machine.
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
# FD of one set of 1,000 samples moves by up to 10 % with the noise seed alone (4.66-5.18 for one G): the mean of 5 sets.
fds = [j.fd(to_uint8(g.sample(1000, seed=k))) for k in range(1, 6)]; s = json.load(open('runs/item4-mnist/summary.json'))
out = {'steps': g.step, 'seconds': s['seconds'], 'fd': sum(fds) / 5, 'fd_each': [round(f, 3) for f in fds], 'real_fd': j.real_fd,
       'judge_acc': j.ext.accuracy, 'side_share': s.get('side_share')}
if g.num_classes:  # the share of each requested class the judge finds (200 samples per class)
    acc = [float((j.ext(to_uint8(g.sample(200, seed=10 + k, class_id=k)))[1].argmax(1) == k).mean()) for k in range(g.num_classes)]
    out.update(per_class=[round(a, 3) for a in acc], overall=sum(acc) / len(acc))
print(json.dumps(out))"
.venv/bin/gankit sample runs/item4-mnist --n 100 --seed 1 --force --out benchmarks/results/mnist_dcgan_grid.png
date; uptime
[ "$1" = mnist ] && exit 0
rm -rf runs/bench-pix2pix-item4
.venv/bin/python benchmarks/pix2pix_sketch.py --minutes 10 --out runs/bench-pix2pix-item4 --json benchmarks/results/pix2pix_sketch_item4.json
date; uptime
