#!/usr/bin/env bash
# berth's API throughput (N containers, 10 in flight) with berthd's state
# directory on three file systems side by side: where bench/run.sh keeps it
# (under /var/tmp), a journaled ext4 (a loop file beside it) and tmpfs.
# Same release binaries, interleaved rounds; see BENCHMARKS.md, "The state
# directory's file system". Run as root after bench/run.sh has built the
# release binaries: bench/statefs.sh [rounds] [containers per sample]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/statefs.sh: must run as root" >&2; exit 1; }
ROUNDS=${1:-3}
TOTAL=${2:-200}
REL=$PWD/target/x86_64-unknown-linux-gnu/release
W=$(mktemp -d /var/tmp/berth-statefs.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    umount "$W/journal" 2>/dev/null || true
    umount "$W/tmpfs" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/root" "$W/journal" "$W/tmpfs"
truncate -s 3G "$W/journal.img"
mkfs.ext4 -q -F "$W/journal.img"
mount -o loop "$W/journal.img" "$W/journal"
mount -t tmpfs -o size=3g tmpfs "$W/tmpfs"
/usr/bin/python3 bench/mkimage.py "$W/image" >/dev/null
names=(root journal tmpfs)
for n in "${names[@]}"; do
    "$REL/berthd" --socket "$W/$n.sock" --state-dir "$W/$n/state" --log warn --default-network none >"$W/$n.log" 2>&1 &
    pids+=($!)
done
for n in "${names[@]}"; do
    for _ in $(seq 100); do [[ -S $W/$n.sock ]] && break; sleep 0.05; done
    "$REL/berthctl" -H "unix://$W/$n.sock" image import "$W/image/busybox.tar" >/dev/null
done
declare -A results
for round in $(seq 0 "$ROUNDS"); do
    for n in "${names[@]}"; do
        r=$("$REL/berth-bench" -H "unix://$W/$n.sock" concurrent --total "$TOTAL" --inflight 10 |
            /usr/bin/python3 -c 'import json, sys; print(round(json.load(sys.stdin)["per_second"], 1))')
        # Round 0 warms up.
        [[ $round == 0 ]] || results[$n]+=" $r"
    done
done
echo "containers/s, $TOTAL per sample, 10 in flight, $ROUNDS rounds:"
for n in "${names[@]}"; do echo "  $n:${results[$n]}"; done
