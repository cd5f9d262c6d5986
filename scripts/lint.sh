#!/usr/bin/env bash
# The code habits CI holds every change to: rustfmt, and clippy with every
# warning an error, for the workspace and for the monitor (a workspace of
# its own, built no_std with panic = "abort" by agent/build.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
(cd monitor && cargo fmt --check)
cargo clippy --workspace --all-targets -- -D warnings
# The monitor's dependencies are in a package cache agent/build.rs keeps for
# it when the default one lacked them at build time (a fresh machine), else in
# the default one; nothing holds the default cache's lock here, so cargo may
# also fetch what neither has.
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
home="$target/x86_64-unknown-linux-gnu/berth-monitor/cargo-home"
monitor_clippy() {
    (cd monitor && CARGO_TARGET_DIR="$target/monitor-clippy" \
        cargo clippy --locked --target x86_64-unknown-linux-gnu "$@" -- -D warnings)
}
if [ -d "$home/registry/cache" ]; then
    CARGO_HOME="$home" monitor_clippy --offline
else
    monitor_clippy
fi
