#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS_PER_TARGET (default
# 30), after one build; fails on the first crash and prints the input that
# caused it. Installs what it needs when missing: the nightly toolchain
# (minimal profile) and cargo-fuzz.
#
# Runs as root to let the targets that write files do so in a private
# tmpfs (see fuzz/src/lib.rs); crashes land in fuzz/artifacts/<target>/,
# each run's log in fuzz/artifacts/<target>.log, and new inputs the fuzzer
# finds in fuzz/corpus-found/<target>/ (kept, so a later run goes on from
# them; git-ignored), not in the committed seeds (fuzz/corpus/, made by
# fuzz/make_corpus.py). Prints per target the executions, the coverage
# (libFuzzer's edges "cov" and features "ft") and the peak memory.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
# Debug assertions on: an overflow is a bug the fuzzer should report.
build=(cargo +nightly fuzz build -O --debug-assertions)
"${build[@]}"
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

failed=()
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    mkdir -p "corpus-found/$t" "artifacts/$t"
    log="artifacts/$t.log"
    # New inputs go to the first corpus directory; the committed seeds are
    # read only.
    if cargo +nightly fuzz run -O --debug-assertions "$t" "corpus-found/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=4096 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed "s/^/   /" || true
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" |
            sed "s/^/   /" || true
    else
        failed+=("$t")
        tail -n 40 "$log"
        crash=$(grep -oE "(Test unit written to|artifact_prefix.*) [^ ]+" "$log" | awk '{print $NF}' | tail -n 1)
        echo "!! $t crashed: input in fuzz/${crash:-artifacts/$t/}"
        echo "   reproduce: (cd fuzz && cargo +nightly fuzz run -O --debug-assertions $t ${crash:-artifacts/$t/<file>})"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${secs}s each without a crash"
