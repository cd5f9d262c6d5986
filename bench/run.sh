#!/usr/bin/env bash
# berth benchmarks side by side with crun, runc, containerd and Docker.
#
#   bench/run.sh            # as root, on a fresh Debian 12 machine
#
# 1. installs the reference tools from Debian's packages (runc, crun,
#    containerd, docker.io, hyperfine, python3-matplotlib, busybox-static);
#    BENCH_SKIP_INSTALL=1 skips apt;
# 2. builds berthd, berthctl and the resident client bench/client in release mode;
# 3. builds one busybox image for every tool (bench/mkimage.py);
# 4. enters a private mount namespace in which /sys/fs/cgroup/unified is
#    unmounted (crun 1.8 refuses the "hybrid" layout when cgroup2 has any
#    controller; the host's cgroups are not changed), so every tool, berth
#    included, runs on the same cgroup v1 layout;
# 5. runs bench/bench.py: starts berthd, containerd and dockerd on temporary
#    roots and sockets, measures, stops each daemon by its pid, and writes
#    bench/results/{results.md,results.json,latency.png}.
#
# Knobs: BENCH_SAMPLES (40), BENCH_WARMUP (5), BENCH_CONC_ROUNDS (5),
# BENCH_SKIP_DOCKER=1, BENCH_OUT (bench/results), BENCH_KEEP_WORK=1;
# BENCH_ONLY=concurrency (berthctl, API and crun at 10 in flight only),
# BENCH_ONLY=build (berthctl build next to docker build; bench/build.py),
# BENCH_ONLY=exec (exec latency, TTY throughput and stats cost next to crun,
# runc and Docker; bench/exec.py),
# BENCH_ONLY=cri (CRI pod and container lifecycle, crictl and critest, next
# to containerd's CRI plugin; bench/cri.py),
# BENCH_CONC_TOTAL (50 containers per concurrency sample),
# BENCH_STATE_FS=root (state on the root file system, not a journaled ext4).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [[ "${BENCH_IN_NS:-}" != 1 ]]; then
    [[ $(id -u) == 0 ]] || { echo "bench/run.sh: must run as root" >&2; exit 1; }
    if [[ "${BENCH_SKIP_INSTALL:-}" != 1 ]]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends runc crun containerd docker.io hyperfine \
            python3 python3-matplotlib busybox-static util-linux git e2fsprogs
    fi
    # BENCH_SKIP_BUILD=1 measures the release binaries already built.
    if [[ "${BENCH_SKIP_BUILD:-}" != 1 ]]; then
        cargo build --release -p berth-agent -p berth-ctl -p berth-bench
    fi
    WORK=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
    /usr/bin/python3 bench/mkimage.py "$WORK/image" >/dev/null
    status=0
    BENCH_IN_NS=1 BENCH_WORK="$WORK/run" BENCH_IMAGE_DIR="$WORK/image" \
        unshare --mount --propagation private "$0" "$@" || status=$?
    # The namespace is gone with its last process; anything mounted in it
    # went with it. Remove the work dir unless asked to keep it.
    if [[ "${BENCH_KEEP_WORK:-}" != 1 ]]; then
        rm -rf --one-file-system "$WORK"
    else
        echo "work dir kept: $WORK" >&2
    fi
    exit $status
fi

# Inside the private mount namespace. Unmounting the cgroup2 tree uncovers
# the host's /sys/fs/cgroup tmpfs directory under it, where crun writes
# <id>/cgroup.procs files; cover it with a private tmpfs so those writes
# vanish with the namespace and nothing reaches the host.
if mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
    mount -t tmpfs -o size=256m,mode=755 bench-no-unified /sys/fs/cgroup/unified
fi
# Every tool's state (berthd's state directory, crun's and runc's roots,
# containerd's and dockerd's) goes on a journaled ext4 file system of its
# own, as on a typical server: this VM's root file system is ext4 without a
# journal, whose inode allocator slows down the more inodes were freed in the
# last minutes (BENCHMARKS.md, "The state directory's file system"), so a
# run's numbers would depend on what ran before it. The mount lives in this
# namespace and goes with it. BENCH_STATE_FS=root keeps the state there.
if [[ "${BENCH_STATE_FS:-journal}" != root ]]; then
    img="${BENCH_WORK%/*}/state.img"
    truncate -s 8G "$img"
    mkfs.ext4 -q -F "$img"
    mkdir -p "$BENCH_WORK"
    mount -o loop "$img" "$BENCH_WORK"
fi
[[ "${BENCH_ONLY:-}" == cri ]] && exec /usr/bin/python3 "$REPO/bench/cri.py"
exec /usr/bin/python3 "$REPO/bench/bench.py"
