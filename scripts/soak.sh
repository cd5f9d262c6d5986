#!/usr/bin/env bash
# The long soak of issue 23: berthd killed with SIGKILL at random instants
# of a mixed, concurrent workload, the invariants checked every 4 kills
# (tests/soak.rs). Not part of CI's test command, which runs the short
# version (6 kills) inside `cargo test --workspace`.
#
#   scripts/soak.sh [KILLS] [SEED]     # as root; default 200 kills, a seed from the clock
#
# Writes the report to target/soak-report.txt: the seed, the kills, the
# events and exits checked, and, on failure, the invariant that broke.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "scripts/soak.sh: must run as root" >&2; exit 1; }
KILLS=${1:-200}
REPORT=target/soak-report.txt
mkdir -p target
cargo build --workspace --quiet
export BERTH_SOAK_KILLS=$KILLS
[[ -n ${2:-} ]] && export BERTH_SOAK_SEED=$2
{
    echo "soak of $(git rev-parse --short HEAD) on $(uname -r), cgroup fs $(stat -fc %T /sys/fs/cgroup), $(date -u +%FT%TZ)"
    if cargo test --quiet -p berth --test soak -- --nocapture 2>&1; then
        echo "PASSED"
    else
        echo "FAILED"
    fi
} | tee "$REPORT"
grep -q '^PASSED$' "$REPORT"
