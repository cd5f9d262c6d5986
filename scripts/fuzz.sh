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
#   scripts/fuzz.sh --ci [TARGET...]
#
# --ci is the bounded run of the README's test command: every committed
# seed of every target (each bug a run found stays there as a seed), then
# BERTH_FUZZ_CI_RUNS (2000) new inputs per target from a fixed seed, so
# the same tree makes the same inputs on every machine: CI fails on a
# regression, never on a fresh find of the day. New inputs are thrown away.
set -euo pipefail
cd "$(dirname "$0")/.."
ci=
if [ "${1:-}" = --ci ]; then
    ci=1
    shift
    secs=0
else
    secs=${1:-30}
    shift || true
    if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
        echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...] | $0 --ci [TARGET...]" >&2
        exit 2
    fi
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
    mkdir -p "corpus-found/$t" "artifacts/$t"
    log="artifacts/$t.log"
    if [ -n "$ci" ]; then
        echo "== $t: the seeds, then ${BERTH_FUZZ_CI_RUNS:-2000} inputs from seed 1"
        scratch="corpus-found/ci-$t"
        rm -rf "$scratch"
        mkdir -p "$scratch"
        bound=(-seed=1 -runs="${BERTH_FUZZ_CI_RUNS:-2000}")
    else
        echo "== $t: ${secs}s"
        scratch="corpus-found/$t"
        bound=(-max_total_time="$secs")
    fi
    # New inputs go to the first corpus directory; the committed seeds are
    # read only.
    if cargo +nightly fuzz run -O --debug-assertions "$t" "$scratch" "corpus/$t" -- \
        "${bound[@]}" -print_final_stats=1 -rss_limit_mb=4096 \
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
    if [ -n "$ci" ]; then
        rm -rf "$scratch"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
if [ -n "$ci" ]; then
    echo "all ${#targets[@]} targets ran their seeds and ${BERTH_FUZZ_CI_RUNS:-2000} inputs each without a crash"
else
    echo "all ${#targets[@]} targets ran ${secs}s each without a crash"
fi
