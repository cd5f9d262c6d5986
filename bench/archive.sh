#!/bin/bash
# Save and push of one big image: throughput, and berthd's peak RSS during
# each (VmHWM, reset before each through /proc/PID/clear_refs), to show
# that neither holds the archive or a layer in memory.
#
#   bench/archive.sh [SIZE_MIB]     (as root; default 512)
#
# Uses the binaries in $BERTH_BIN_DIR (default: the debug build), a berthd
# of its own on a temporary state dir, and Debian's docker-registry on
# 127.0.0.1:45123; stops both by pid and removes what it made.
set -euo pipefail
SIZE=${1:-512}
HERE=$(cd "$(dirname "$0")" && pwd)
B=${BERTH_BIN_DIR:-$HERE/../target/x86_64-unknown-linux-gnu/debug}
D=$(mktemp -d /tmp/berth-archive-bench-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$D"
    for c in /sys/fs/cgroup/*/berth-archive-bench; do [ -d "$c" ] && rmdir "$c" || true; done
}
trap cleanup EXIT
(cd "$D" && python3 "$HERE/mkbig.py" "$SIZE" > /dev/null)
mkdir "$D/reg"
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:45123\n' "$D/reg/storage" > "$D/reg/config.yml"
docker-registry serve "$D/reg/config.yml" > "$D/reg/log" 2>&1 &
PIDS+=($!)
"$B/berthd" --socket "$D/s.sock" --state-dir "$D/state" --cgroup-parent berth-archive-bench \
    --spare-netns 0 --spare-monitors 0 --auto-pull=false --default-network none --log warn > "$D/berthd.log" 2>&1 &
PID=$!
PIDS+=($PID)
for _ in $(seq 100); do
    [ -S "$D/s.sock" ] && curl -s 127.0.0.1:45123/v2/ > /dev/null && break
    sleep 0.1
done
C="$B/berthctl --host $D/s.sock"
$C image import "$D/big-oci.tar" > /dev/null
rm "$D/big-oci.tar"
peak() { grep VmHWM "/proc/$PID/status" | tr -s ' \t' ' '; }
for fmt in docker oci; do
    echo 5 > "/proc/$PID/clear_refs"
    echo "berthd before: $(grep VmRSS /proc/$PID/status | tr -s ' \t' ' ')"
    /usr/bin/time -f "save --format $fmt of $SIZE MiB to a file: %e s" $C save --format $fmt -o "$D/out.tar" big:v1
    echo "berthd during the save: $(peak)"
    rm "$D/out.tar"
done
$C tag big:v1 127.0.0.1:45123/bench/big:v1
echo 5 > "/proc/$PID/clear_refs"
/usr/bin/time -f "push of $SIZE MiB to the loopback registry: %e s" $C push 127.0.0.1:45123/bench/big:v1 > /dev/null
echo "berthd during the push: $(peak)"
/usr/bin/time -f "push again (the registry has every blob): %e s" $C push 127.0.0.1:45123/bench/big:v1 > /dev/null
