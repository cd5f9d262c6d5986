#!/usr/bin/env bash
# berthd's memory under many concurrent log readers (issue 23, item 3).
#
#   bench/logs_mem.sh [BERTHD] [READERS]   # as root; defaults: this tree's
#                                          # debug berthd, 50 readers
#
# Starts BERTHD on a temporary state directory, runs a container that writes
# a 20 MiB log (short lines, so it rotates once at --log-max-bytes 16 MiB),
# then READERS concurrent `berthctl logs` (all of it) and READERS concurrent
# `berthctl logs --tail 1`, and prints berthd's VmRSS before, its peak
# (VmHWM) after each round, and its VmRSS 7 s after the last (berthd gives
# freed memory back after 5 s without an event).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/logs_mem.sh: must run as root" >&2; exit 1; }
DBG=target/x86_64-unknown-linux-gnu/debug
BERTHD=${1:-$DBG/berthd}
N=${2:-50}
CTL=$DBG/berthctl
WORK=$(mktemp -d /var/tmp/berth-logs-mem.XXXXXX)
SOCK=$WORK/berthd.sock
CG=berth-logsmem-$$
/usr/bin/python3 bench/mkimage.py "$WORK/image" >/dev/null
"$BERTHD" --socket "$SOCK" --state-dir "$WORK/state" --cgroup-parent "$CG" \
    --log warn --auto-pull=false --default-network none --log-max-bytes $((16 << 20)) &
PID=$!
cleanup() {
    kill $PID 2>/dev/null || true
    wait $PID 2>/dev/null || true
    for d in /sys/fs/cgroup/$CG /sys/fs/cgroup/*/$CG; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
for _ in $(seq 200); do [[ -S $SOCK ]] && break; sleep 0.05; done
mib() { awk -v k="$1:" '$1 == k {printf "%.1f MiB", $2/1024}' /proc/$PID/status; }
"$CTL" -H "$SOCK" image import "$WORK/image/busybox.tar" >/dev/null
# 20 MiB of log: 262144 lines of 47 bytes plus the record headers (~80 B each).
"$CTL" -H "$SOCK" run --name chatty busybox -- sh -c \
    'yes 0123456789012345678901234567890123456789abcdef | head -n 262144' >/dev/null
du -b "$WORK"/state/containers/*/container.log* | awk '{s+=$1} END {printf "log on disk: %.1f MiB\n", s/1048576}'
echo "berthd VmRSS before readers: $(mib VmRSS)"
round() {
    local what=$1; shift
    local t0=$SECONDS
    for _ in $(seq "$N"); do "$CTL" -H "$SOCK" logs "$@" chatty >/dev/null 2>&1 & done
    wait $(jobs -p | grep -v "^$PID\$") 2>/dev/null || true
    echo "$N x logs $what: $((SECONDS - t0)) s, berthd VmHWM $(mib VmHWM), VmRSS $(mib VmRSS)"
}
round "(all)"
round "--tail 1" --tail 1
sleep 7
echo "berthd VmRSS 7 s after: $(mib VmRSS)"
