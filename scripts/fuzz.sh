#!/usr/bin/env bash
# A longer run of the decoders' property tests (tests/it/fuzz.rs) than `cargo test`
# makes: PROPTEST_CASES cases per property (default 20000; the argument overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
export PROPTEST_CASES="${1:-20000}"
exec cargo test --locked --test it fuzz:: -- --test-threads 2
