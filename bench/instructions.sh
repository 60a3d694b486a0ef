#!/usr/bin/env bash
# Instructions one coldpath run takes, counted by valgrind's callgrind: the same
# count for the same binary and input whatever else the machine does, so a 1 %
# change that wall-clock pairs cannot see shows. The input is one hour of the
# `small` day (hour 05 of 2024-03-11: 4 blobs, 74 MB), run into an empty lake.
#
#   bench/run.sh small                      # once, for the raw container
#   bench/instructions.sh BIN_A [BIN_B ...] # each binary twice, in turn
#
# The lake starts empty, so each table is created by delta-rs's write operation, which
# splits every batch by partition and copies it (arrow's `take` alone is 2.4 % of the
# count on e13de84); a nightly run into existing tables commits through
# `src/lake/own_commit.rs` and pays neither. The count compares builds; for where a
# nightly run's time goes, profile a run into the date before's lake (BENCHMARKS.md).
#
# Under callgrind a run takes about 40 s. Pass a binary built with symbols
# (`cargo build --profile profiling`) and open the kept output
# (/tmp/coldpath-instructions.<n>.out) with callgrind_annotate for a profile.
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: bench/instructions.sh BIN_A [BIN_B ...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "bench/instructions.sh needs valgrind (Debian's valgrind)" >&2; exit 2; }
bench="${COLDPATH_BENCH_DIR:-$HOME/.cache/coldpath-bench}"
hour="$bench/small/raw/telemetry/2024/03/11/05"
[[ -d "$hour" ]] || { echo "no $hour: run bench/run.sh small first" >&2; exit 2; }
mini="$bench/mini"
mkdir -p "$mini/raw/telemetry/2024/03/11"
[[ -d "$mini/raw/telemetry/2024/03/11/05" ]] || cp -r "$hour" "$mini/raw/telemetry/2024/03/11/"
# The job reads the generator's reference files (maintenance, failures) too.
[[ -d "$mini/raw/reference" ]] || cp -r "$bench/small/raw/reference" "$mini/raw/"
cat > "$mini/job.toml" <<EOF
name = "bench-mini"
source = "$mini/raw"
layout = "telemetry/{yyyy}/{MM}/{dd}/{HH}/"
lake = "$mini/lake"
EOF
n=0
for round in 1 2; do
  for bin in "$@"; do
    n=$((n + 1))
    rm -rf "$mini/lake"
    out="/tmp/coldpath-instructions.$n.out"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" run --job "$mini/job.toml" \
      --date 2024-03-11 --report "$mini/report.json" --log-format json >/dev/null 2>"$out.log"
    printf '%s\tround %s\t%s instructions\t%s\n' "$bin" "$round" \
      "$(awk '/^totals:/ { print $2 }' "$out")" "$out"
  done
done
