#!/bin/sh
# Start latency of `berthctl run --rm busybox /bin/true` with --network none,
# bridge, a user-defined network and no --network (the default), interleaved, N samples each (default
# 30); prints the median and p90 in milliseconds. berthd runs in a network
# namespace made here and deleted at the end, so the host's networking is
# untouched. Needs root, the built binaries (BIN, default the debug build)
# and bench/mkimage.py's image (IMG).
# Usage: bench/networks.sh [N]
set -eu
N=${1:-30}
BIN=${BIN:-target/x86_64-unknown-linux-gnu/debug}
IMG=${IMG:-/tmp/nbench/img/busybox.tar}
work=$(mktemp -d)
ns=berth-nbench-$$
ip netns add "$ns"
ip -n "$ns" link set lo up
nsenter --net="/run/netns/$ns" "$BIN/berthd" --socket "$work/s.sock" --state-dir "$work/state" \
    --cgroup-parent "berth-nbench-$$" --auto-pull=false >"$work/berthd.log" 2>&1 &
pid=$!
cleanup() {
    for id in $("$BIN/berthctl" -H "$work/s.sock" ps -aq 2>/dev/null); do
        "$BIN/berthctl" -H "$work/s.sock" rm -f "$id" >/dev/null 2>&1 || true
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    # berthd's cgroup parent in every hierarchy (cgroup v1 has one per
    # controller), its leftover children first.
    for d in "/sys/fs/cgroup/berth-nbench-$$" /sys/fs/cgroup/*/"berth-nbench-$$"; do
        if [ -d "$d" ]; then find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
ctl() { "$BIN/berthctl" -H "$work/s.sock" "$@"; }
until ctl info >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/berthd.log"; exit 1; }
    sleep 0.1
done
ctl image import "$IMG" -r busybox >/dev/null
ctl network create nbench >/dev/null
python3 - "$N" "$BIN/berthctl" "$work/s.sock" <<'PY'
import statistics, subprocess, sys, time
n, ctl, sock = int(sys.argv[1]), sys.argv[2], sys.argv[3]
# "default": no --network, berthd's default (the bridge).
modes = ["none", "bridge", "nbench", "default"]
t = {m: [] for m in modes}
net = lambda m: [] if m == "default" else ["--network", m]
for m in modes:  # warm-up: the first bridge start makes the bridge
    subprocess.run([ctl, "-H", sock, "run", "--rm", *net(m), "busybox", "/bin/true"], check=True)
for _ in range(n):
    for m in modes:
        s = time.perf_counter()
        subprocess.run([ctl, "-H", sock, "run", "--rm", *net(m), "busybox", "/bin/true"], check=True)
        t[m].append((time.perf_counter() - s) * 1000)
for m in modes:
    v = sorted(t[m])
    print(f"{m:8s} median {statistics.median(v):7.1f} ms  p90 {v[int(0.9 * len(v)) - 1]:7.1f} ms  (n={len(v)})")
# 100 containers created on the network (each takes the next address),
# then removed: the first and last ten creates show whether allocation
# cost grows as the network fills.
ids, per = [], []
s0 = time.perf_counter()
for i in range(100):
    s = time.perf_counter()
    out = subprocess.run([ctl, "-H", sock, "create", "--network", "nbench", "busybox", "/bin/true"],
                         check=True, capture_output=True, text=True)
    per.append((time.perf_counter() - s) * 1000)
    ids.append(out.stdout.strip())
made = time.perf_counter() - s0
s0 = time.perf_counter()
subprocess.run([ctl, "-H", sock, "rm", *ids], check=True, capture_output=True)
gone = time.perf_counter() - s0
print(f"100 creates on one network {made:.2f} s (first 10 median {statistics.median(per[:10]):.1f} ms, "
      f"last 10 median {statistics.median(per[-10:]):.1f} ms); rm of all 100 {gone:.2f} s")
PY
