#!/usr/bin/env bash
# berthd's memory, measured alone: where its RSS goes, and whether it sleeps.
#
#   bench/mem.sh [N]        # as root, after a release build; N containers (1000)
#
# Starts the release berthd on a temporary state directory and socket, then
# prints `smaps_rollup`'s RSS and anonymous memory 7 s after each step (berthd
# gives freed memory back after 5 s without an event): fresh, after importing
# the bench's busybox image (bench/mkimage.py), and after N API containers at
# 10 in flight (berth-bench concurrent). Then the context switches of all its
# threads over 10 s of idle (0: it does not wake up), its threads, and its
# anonymous mappings and heap with their resident sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/mem.sh: must run as root" >&2; exit 1; }
N=${1:-1000}
REL=target/x86_64-unknown-linux-gnu/release
for b in berthd berthctl berth-bench; do
    [[ -x $REL/$b ]] || { echo "bench/mem.sh: no $REL/$b; run:" \
        "cargo build --release -p berth-agent -p berth-ctl -p berth-bench" >&2; exit 1; }
done
WORK=$(mktemp -d /var/tmp/berth-mem.XXXXXX)
SOCK=$WORK/berthd.sock
/usr/bin/python3 bench/mkimage.py "$WORK/image" >/dev/null
"$REL/berthd" --socket "$SOCK" --state-dir "$WORK/state" --cgroup-parent "berth-mem-$$" \
    --log warn --auto-pull=false --default-network none &
PID=$!
CG=berth-mem-$$
cleanup() {
    kill $PID 2>/dev/null || true
    wait $PID 2>/dev/null || true
    # berthd keeps its cgroup parent when it stops (as dockerd does).
    for d in /sys/fs/cgroup/$CG /sys/fs/cgroup/*/$CG; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.05; done
report() {
    sleep 7
    awk -v step="$1" '/^Rss:/ {r=$2} /^Anonymous:/ {a=$2}
        END {printf "%-28s RSS %6.1f MiB, anonymous %5.1f MiB\n", step, r/1024, a/1024}' \
        "/proc/$PID/smaps_rollup"
}
report "fresh"
"$REL/berthctl" -H "$SOCK" image import "$WORK/image/busybox.tar" >/dev/null
report "after the image import"
left=$N
while (( left > 0 )); do
    n=$(( left < 100 ? left : 100 ))
    "$REL/berth-bench" -H "$SOCK" concurrent --total "$n" --inflight 10 >/dev/null
    left=$(( left - n ))
done
report "after $N containers"
switches() { cat /proc/$PID/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s+=$2} END {print s}'; }
a=$(switches); sleep 10; b=$(switches)
echo "context switches over 10 s of idle: $(( b - a ))"
echo "threads: $(ls /proc/$PID/task | wc -l)"
/usr/bin/python3 - "$PID" <<'PY'
import re, sys
rows, cur = [], None
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
        f = line.split()
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        cur = {"name": f[5] if len(f) > 5 else "[anon]", "perm": f[1], "kib": (hi - lo) // 1024}
        rows.append(cur)
    elif line.startswith("Rss:"):
        cur["rss"] = int(line.split()[1])
for r in sorted(rows, key=lambda r: -r.get("rss", 0)):
    if r.get("rss", 0) >= 64:
        print(f"  {r['name'][-40:]:40} {r['perm']} {r['kib']:8} KiB mapped {r['rss']:6} KiB resident")
PY
