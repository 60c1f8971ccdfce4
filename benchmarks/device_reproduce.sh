#!/usr/bin/env bash
# All five reports at the quick budget on one machine with 16 cores and a GPU (the lead's H200 box), in under 6
# minutes, without installing gankit: `OUT=/some/dir bash benchmarks/device_reproduce.sh` from the repository root.
#
# - MNIST: the files in shared/data/mnist (only the t10k pair is enough: training on all but a fixed 2,000 of them,
#   which are the evaluation reference); without them the quick budget lets the embedded digits stand in.
# - Fashion-MNIST / CIFAR-10 are not on that machine: --skip-missing-data leaves those runs out and their claims
#   "not decided" (the page says why) instead of stopping the report.
# - The five reports run at once with 16 workers in all (one thread each, all sharing the GPU: train.device=auto);
#   each gets SIGINT after RUN_SECONDS, which checkpoints the runs still training and still writes report.html and
#   claims.json for everything measured by then. Running the script again continues from the checkpoints.
# Writes to $OUT: rNNN/{report.html,claims.json,run.log}, grids.tar.gz (each run's last grid and memorisation
# sheet), env.txt, and summary.txt (one line per claim: report, claim, verdict).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder for the results}
WORK=${WORK:-/tmp/gankit-device-reproduce}
RUN_SECONDS=${RUN_SECONDS:-240}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD GANKIT_CACHE=${GANKIT_CACHE:-$WORK/cache} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"

# What this machine is and whether gankit's dependencies import (no network: nothing can be installed here).
$PY - > "$OUT/env.txt" 2>&1 <<'PYEOF'
import importlib, os, platform
print(platform.platform(), "python", platform.python_version(), "cpus", os.cpu_count())
missing = []
for m in ["torch", "numpy", "scipy", "PIL", "matplotlib", "tqdm", "safetensors", "yaml", "sklearn", "threadpoolctl"]:
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"))
    except Exception as e:  # report every missing one, then stop
        missing.append(f"{m} ({e})")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
if missing:
    raise SystemExit("missing: " + ", ".join(missing))
PYEOF
if [ $? -ne 0 ]; then cat "$OUT/env.txt"; echo "dependencies missing; see $OUT/env.txt"; exit 1; fi
cat "$OUT/env.txt"

DATA=()
if [ -f shared/data/mnist/t10k-images-idx3-ubyte.gz ] || [ -f shared/data/mnist/train-images-idx3-ubyte.gz ]; then
  DATA=(--data-dir "mnist=$PWD/shared/data/mnist")
fi

# The evaluation classifier once, before five processes would each train the same one.
$PY - ${DATA[@]+"${DATA[@]}"} <<'PYEOF' 2>&1 | tee "$OUT/warm.log"
import sys, time
from gankit.reproduce.claims import load_claims
from gankit.reproduce.runner import _warm_classifiers, plan_jobs
dirs = {}
if len(sys.argv) > 2:
    name, _, folder = sys.argv[2].partition("=")
    dirs[name] = folder
t = time.time()
for rid in ["004", "001"]:
    _warm_classifiers(plan_jobs(load_claims(rid), "quick", dirs, skip_missing=True), print)
print(f"classifiers ready in {time.time() - t:.0f} s")
PYEOF

declare -A WORKERS=([000]=4 [001]=6 [002]=2 [003]=2 [004]=2)
start=$(date +%s)
for r in 000 001 002 003 004; do
  mkdir -p "$OUT/r$r"
  timeout -k 30 -s INT "$RUN_SECONDS" $PY -m gankit reproduce "$r" --budget quick --workers "${WORKERS[$r]}" \
    --threads 1 --skip-missing-data ${DATA[@]+"${DATA[@]}"} --out "$WORK/r$r" > "$OUT/r$r/run.log" 2>&1 &
done
wait
echo "runs took $(( $(date +%s) - start )) s"
# A report stopped by the timeout before writing its page gets it now (nothing left to train: judge and write).
for r in 000 001 002 003 004; do
  if [ ! -f "$WORK/r$r/report.html" ] || grep -q "interrupted" "$OUT/r$r/run.log"; then
    timeout 60 $PY - "$WORK/r$r" "$r" <<'PYEOF' >> "$OUT/r$r/run.log" 2>&1
import json, sys
from pathlib import Path
from gankit.reproduce.claims import load_claims
from gankit.reproduce.page import write_outputs
from gankit.reproduce.runner import PLAN, Measured, judge
out, claims = Path(sys.argv[1]), load_claims(sys.argv[2])
plan = json.loads((out / PLAN).read_text())
m = Measured.read(out, plan)
write_outputs(out, claims, plan, judge(claims, plan, m), [j["name"] for j in plan["jobs"] if j["name"] not in m.evaluations])
PYEOF
  fi
  cp "$WORK/r$r/report.html" "$WORK/r$r/claims.json" "$OUT/r$r/" 2>/dev/null
done
(cd "$WORK" && find . -path '*/runs/*' \( -name 'memorisation.png' -o -name 'reproduce-eval.json' \) -print > grids.list
 for d in r*/runs/*/samples; do ls "$d"/step-*.png 2>/dev/null | tail -1; done >> grids.list
 tar czf "$OUT/grids.tar.gz" -T grids.list)
$PY - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
for p in sorted(Path(sys.argv[1]).glob("r*/claims.json")):
    d = json.loads(p.read_text())
    for c in d["claims"]:
        nums = "; ".join(f"{r} {n['mean']:.4g}±{(n['spread'] or 0):.2g}" for r, n in c["numbers"].items() if n["mean"] is not None)
        print(f"{d['report']}\t{c['id']}\t{c['verdict']}\t{nums}")
    if d["unfinished"]:
        print(f"{d['report']}\t(unfinished: {', '.join(d['unfinished'])})")
PYEOF
