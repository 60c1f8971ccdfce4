#!/bin/bash
# A bigger MNIST search than a 2-core machine can run: 14 workers x 1 thread on a 16-core machine, pruned (median),
# 28 trials of 2 wall-minutes each (two waves), under 6 minutes in all. Results go to "$OUT" (default
# runs/device-tune): the study's report.html, best.yaml, study.json, trials.csv and the machine's description.
#
#   OUT=/somewhere DATA_DIR=path/to/mnist bash benchmarks/device_tune.sh
#
# Runs from the repository root with PYTHONPATH=. (no install). Optuna is installed from wheels in .whl/ when that
# folder exists (pip --no-index; a machine without a route to PyPI), else taken from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device-tune}
DATA_DIR=${DATA_DIR:-shared/data/mnist}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 GANKIT_CACHE=${GANKIT_CACHE:-$PWD/.cache/gankit}
if ! $PY -c "import optuna" 2>/dev/null; then
    [ -d .whl ] || { echo "no optuna and no .whl/ wheel folder" >&2; exit 2; }
    # --no-deps: .whl holds optuna and what the machine lacks (SQLAlchemy, alembic, colorlog, Mako, greenlet); numpy,
    # PyYAML, tqdm and packaging are the machine's own
    $PY -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/gankit-site .whl/*.whl
    export PYTHONPATH=$PWD:/tmp/gankit-site
fi
{ date; uptime; lscpu | grep -E "Model name|^CPU\(s\)"; $PY -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__, torch.backends.cpu.get_cpu_capability())"; } > "$OUT/machine.txt" 2>&1
STUDY="$OUT/study"
rm -rf "$STUDY"
# 28 trials on 14 workers: two waves of 2-minute trials plus start-up and the scoring reference; 330 s at most.
timeout -s INT 330 $PY -m gankit tune configs/recommended/mnist-conditional.yaml --space configs/spaces/mnist.yaml \
    --data-dir "$DATA_DIR" --split test --set data.holdout=2000 --device cpu \
    --trials 28 --workers 14 --threads 1 --max-minutes 2 --eval-every 300 --pruner median --heartbeat 10 \
    --out "$STUDY" 2>&1 | tee "$OUT/tune.log" || echo "tune exited with $?" | tee -a "$OUT/tune.log"
$PY - "$STUDY" "$OUT/trials.csv" <<'PY'
import csv, json, sys
import optuna
study_dir, out = sys.argv[1], sys.argv[2]
spec = json.load(open(f"{study_dir}/study.json"))
s = optuna.load_study(study_name=spec["name"], storage=f"sqlite:///{study_dir}/study.db")
keys = sorted({k for t in s.trials for k in t.params})
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["number", "state", "value", "steps", "cpu_seconds", "wall_seconds", "pruned_at", *keys])
    for t in s.trials:
        u = t.user_attrs
        w.writerow([t.number, t.state.name, t.value, u.get("steps"), u.get("cpu_seconds"), u.get("wall_seconds"),
                    u.get("pruned_at"), *[t.params.get(k) for k in keys]])
PY
cp "$STUDY/report.html" "$STUDY/study.json" "$OUT/" 2>/dev/null || true
cp "$STUDY/best.yaml" "$OUT/" 2>/dev/null || true
date >> "$OUT/machine.txt"
