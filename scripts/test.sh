#!/usr/bin/env bash
# The project's test command (README, and what .ci/run calls): unit tests and the
# integration-test binary, which runs the real `coldpath` on fixtures/ and reads
# the Delta tables back.
#
# The build goes to a target directory outside the clone (reused across runs and
# fresh clones): polars + deltalake take ~6 minutes to build from scratch on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coldpath-target}"
exec cargo test --locked "$@"
