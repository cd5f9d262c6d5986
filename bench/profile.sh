#!/usr/bin/env bash
# Profiles berth's start path: where a /bin/true lifecycle spends its time.
#
#   bench/profile.sh        # as root, after bench/run.sh has installed the tools
#
# Starts a release berthd on temporary paths (same private mount namespace
# as bench/run.sh), then drives lifecycles from the resident client:
#   0. perf trace (tracepoints, a few syscalls): the timeline of one
#      lifecycle with little overhead (bench/trace_timeline.py);
#   1. strace -f -tt -T on berthd and everything it starts (monitor, init):
#      syscall wall time per role and a timeline of one lifecycle
#      (bench/strace_summary.py) -- this shows blocking time (fsync, cgroup
#      rmdir, mounts) that a CPU profile cannot see;
#   2. perf record -e cpu-clock -a -g (software clock: this VM exposes no
#      hardware counters, `perf stat -e instructions` says <not supported>):
#      on-CPU time of every process and the kernel, by symbol.
#   3. the same lifecycles with and without strace, and the unshare floor,
#      for scale.
# Writes bench/results/profile.txt (small) and keeps raw data in the work dir
# only with BENCH_KEEP_WORK=1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
N=${PROFILE_SAMPLES:-30}

if [[ "${BENCH_IN_NS:-}" != 1 ]]; then
    [[ $(id -u) == 0 ]] || { echo "must run as root" >&2; exit 1; }
    command -v strace >/dev/null || apt-get install -y -q --no-install-recommends strace
    command -v perf >/dev/null || apt-get install -y -q --no-install-recommends linux-perf
    cargo build --release -p berth-agent -p berth-ctl -p berth-bench
    WORK=$(mktemp -d /var/tmp/berth-prof.XXXXXX)
    /usr/bin/python3 bench/mkimage.py "$WORK/image" >/dev/null
    status=0
    BENCH_IN_NS=1 WORK=$WORK unshare --mount --propagation private "$0" "$@" || status=$?
    [[ "${BENCH_KEEP_WORK:-}" == 1 ]] && echo "work dir kept: $WORK" >&2 || rm -rf --one-file-system "$WORK"
    exit $status
fi

if mountpoint -q /sys/fs/cgroup/unified; then  # as in bench/run.sh
    umount /sys/fs/cgroup/unified
    mount -t tmpfs -o size=256m,mode=755 bench-no-unified /sys/fs/cgroup/unified
fi
REL=$REPO/target/x86_64-unknown-linux-gnu/release
SOCK=$WORK/berthd.sock
OUT=${BENCH_OUT:-$REPO/bench/results}/profile.txt
mkdir -p "$(dirname "$OUT")"
CG=berth-prof-$$
"$REL/berthd" --socket "$SOCK" --state-dir "$WORK/berth" --cgroup-parent "$CG" --log warn --default-network none \
    >"$WORK/berthd.log" 2>&1 &
BPID=$!
cleanup() {
    kill -TERM "$BPID" 2>/dev/null || true
    wait "$BPID" 2>/dev/null || true
    for h in /sys/fs/cgroup/*/; do [[ -d "$h$CG" ]] && rmdir "$h$CG" 2>/dev/null || true; done
    grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do "$REL/berthctl" -H "$SOCK" info >/dev/null 2>&1 && break; sleep 0.1; done
"$REL/berthctl" -H "$SOCK" image import "$WORK/image/busybox.tar" >/dev/null

lifecycles() { # N -> JSON lines of the resident client
    seq "$1" | "$REL/berth-bench" -H "$SOCK" lifecycle | tail -n +2
}
median() { /usr/bin/python3 -c 'import sys,json,statistics
rows=[json.loads(l) for l in sys.stdin if l.strip()]
ks=["total_ns","create_ns","start_ns","wait_ns","remove_ns"]
print("  ".join(f"{k[:-3]} {statistics.median(r[k] for r in rows)/1e6:.2f}" for k in ks), "(median ms)")'; }
floor() {
    /usr/bin/python3 - "$WORK/image/rootfs" <<'EOF'
import subprocess, sys, time, statistics
xs = []
for _ in range(30):
    t = time.perf_counter(); subprocess.run(["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--mount-proc", "chroot", sys.argv[1], "/bin/true"], check=True); xs.append(time.perf_counter() - t)
print(f"unshare floor: median {1000 * statistics.median(xs):.2f} ms")
EOF
}

set +o pipefail  # head closes the perf report pipes early
{
echo "# berth start-path profile, $(date -u '+%F %T UTC'), $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Plain ($N lifecycles, resident API client)"
lifecycles 5 >/dev/null
lifecycles "$N" | median
floor
echo
echo "## perf trace: timeline of one lifecycle (a few syscalls traced: little overhead)"
perf trace -a -T -o "$WORK/perf-trace.txt" \
    -e clone3,clone,execve,exit_group,wait4,sendto,recvfrom,rename,unshare,setns,pivot_root,pidfd_open,mkdir,mount,write \
    -e sched:sched_process_exit -- \
    bash -c "seq 5 | '$REL/berth-bench' -H '$SOCK' lifecycle >/dev/null" 2>/dev/null
/usr/bin/python3 "$REPO/bench/trace_timeline.py" "$WORK/perf-trace.txt"
echo
echo "## strace -f -T (inflates every syscall; use the proportions)"
strace -f -tt -T -qq -o "$WORK/strace.txt" -p "$BPID" &
SPID=$!
sleep 1
lifecycles "$N" | median
kill -INT "$SPID"; wait "$SPID" 2>/dev/null || true
/usr/bin/python3 "$REPO/bench/strace_summary.py" "$WORK/strace.txt" "$N"
echo
echo "## perf record -e cpu-clock -a -g, $N lifecycles: on-CPU samples by process and symbol"
perf record -q -e cpu-clock -F 4000 -a -g -o "$WORK/perf.data" -- \
    bash -c "seq $N | '$REL/berth-bench' -H '$SOCK' lifecycle >/dev/null" 2>/dev/null
echo '### by command (all CPUs; idle excluded)'
perf report -i "$WORK/perf.data" --stdio --no-children --sort comm 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | grep '%' | grep -v swapper | head -15
echo '### top symbols of berthd (tokio-rt-worker, netns-pool), the monitor and init (berth-monitor)'
perf report -i "$WORK/perf.data" --stdio --no-children --comms berthd,berth-monitor,tokio-rt-worker,netns-pool,berth-bench \
    --sort comm,dso,sym -g none 2>/dev/null | grep -v '^#' | grep '%' | head -40
echo '### kernel call chains of berthd processes (caller view, top)'
perf report -i "$WORK/perf.data" --stdio --children --comms berthd,berth-monitor,tokio-rt-worker \
    --sort sym -g none 2>/dev/null | grep -v '^#' | grep '%' | head -40
} | tee "$OUT"
