#!/usr/bin/env bash
# The session's one device call: the speed benchmark alone on the GPU first (timings need a quiet machine), then all
# five reports at the quick budget. Everything lands in one archive plus the three tables (the tool returns 8 files).
set -u
cd "$(dirname "$0")/.."
FINAL=${OUT:?}
W=/tmp/devout; mkdir -p $W/speed $W/repro
t0=$(date +%s)
OUT=$W/speed LIMIT_S=${SPEED_S:-170} bash benchmarks/device_speed.sh > $W/speed.log 2>&1
echo "speed done after $(( $(date +%s) - t0 )) s"
OUT=$W/repro RUN_SECONDS=${REPRO_S:-200} bash benchmarks/device_reproduce.sh > $W/repro.log 2>&1
echo "reproduce done after $(( $(date +%s) - t0 )) s"
cp $W/speed/against_plain.md $W/speed/nvidia-smi.txt $W/repro/summary.txt "$FINAL/" 2>/dev/null
tail -c 4000 $W/speed.log; tail -c 3000 $W/repro.log
tar czf "$FINAL/device.tar.gz" -C $W . ; ls -la "$FINAL"
