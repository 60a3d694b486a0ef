#!/usr/bin/env bash
# coldpath's benchmark (see BENCHMARKS.md): generates a Stream Analytics raw container at
# a scale, runs the nightly job (release build) for the date after its previous date, and
# prints wall time, rows/s, MB/s and peak RSS per stage. Nothing here is a test: the
# numbers are read by people, and the issue's targets are checked against them.
#
#   bench/run.sh [small|plant|million] [--duckdb] [--runs N] [--python] [--days-before N] [--features FILE]
#
#   small   250 devices, a reading every 4 s:  5.4 M readings a day (~2.0 GB of JSON)
#   plant   500 devices, a reading every 1 s: 43.2 M readings a day (~15 GB of JSON)
#   million 1,000,000 devices, a reading every 6 h: 4 M readings a day (~1.4 GB of JSON), the
#           per-device costs (a gateway minting ids): a million device_health rows, 4 M feature rows
#   --duckdb  also run bench/duckdb_baseline.py (pip install duckdb), DuckDB's silver-only
#             pass, alternating with coldpath run by run, and print the medians and the
#             ratio DuckDB / coldpath (issue 18)
#   --runs N  measured runs of each tool (default 3 with --duckdb, else 1)
#   --python  also run bench/python_baseline.py once (pip install polars deltalake pyarrow)
#   --days-before N  generate and run N dates before the measured one (default 1): 7 gives
#             device_health's steady state, 7 dates of history (data in <scale>-b7/)
#   --features FILE  appends FILE (a `[features]` table, e.g. bench/features-example.toml)
#             to the job: the declared feature set's cost
#
# COLDPATH_BIN=PATH benchmarks that binary instead of building one (release build, please).
#
# The raw container (the date, the day before and the look-ahead) is generated once into
# $COLDPATH_BENCH_DIR/<scale> (default ~/.cache/coldpath-bench) and reused. Nothing is
# installed at run time: a missing Python package stops the script before it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: bench/run.sh [small|plant|million] [--duckdb] [--runs N] [--python] [--days-before N] [--features FILE]" >&2; exit 2; }
SCALE=small
case "${1:-}" in small|plant|million) SCALE="$1"; shift ;; esac
PYTHON=0 DUCKDB=0 RUNS= BEFORE=1 FEATURES=
while [ $# -gt 0 ]; do
    case "$1" in
        --python) PYTHON=1 ;;
        --days-before) [ $# -ge 2 ] || usage; BEFORE="$2"; shift ;;
        --duckdb) DUCKDB=1 ;;
        --features) [ $# -ge 2 ] || usage; FEATURES="$2"; shift ;;
        --runs) [ $# -ge 2 ] || usage; RUNS="$2"; shift ;;
        *) usage ;;
    esac
    shift
done
[ -n "$RUNS" ] || RUNS=$([ "$DUCKDB" = 1 ] && echo 3 || echo 1)
case "$RUNS" in ''|*[!0-9]*|0) usage ;; esac
case "$BEFORE" in ''|*[!0-9]*|0) usage ;; esac
case "$SCALE" in
    small) DEVICES=250 INTERVAL=4 ;;
    plant) DEVICES=500 INTERVAL=1 ;;
    million) DEVICES=1000000 INTERVAL=21600 ;;
esac
if [ "$DUCKDB" = 1 ] && ! python3 -c 'import duckdb' 2>/dev/null; then
    echo "bench/run.sh: --duckdb needs the Python package duckdb: pip install duckdb" >&2; exit 2
fi
if [ "$PYTHON" = 1 ] && ! python3 -c 'import polars, deltalake, pyarrow' 2>/dev/null; then
    echo "bench/run.sh: --python needs polars, deltalake and pyarrow: pip install polars deltalake pyarrow" >&2
    exit 2
fi
DATE=2024-03-11
PREV=2024-03-10
DATA="${COLDPATH_BENCH_DIR:-$HOME/.cache/coldpath-bench}/$SCALE$([ "$BEFORE" = 1 ] || echo "-b$BEFORE")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coldpath-target}"

if [ -n "${COLDPATH_BIN:-}" ]; then
    # A binary built already (say, a release build of a commit kept aside): not rebuilt.
    COLDPATH="$COLDPATH_BIN"
    [ -x "$COLDPATH" ] || { echo "bench/run.sh: COLDPATH_BIN=$COLDPATH is not an executable" >&2; exit 2; }
    echo "== coldpath: $COLDPATH (COLDPATH_BIN, not rebuilt)" >&2
else
    echo "== building (release)" >&2
    cargo build --release --locked --bin coldpath >&2
    COLDPATH="$CARGO_TARGET_DIR/release/coldpath"
fi
(cd bench/generate && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/bench-generate" cargo build --release --locked >&2)
GENERATE="$CARGO_TARGET_DIR/bench-generate/release/coldpath-bench-generate"

MARK="$DATA/.generated-$DEVICES-$INTERVAL-$DATE-$BEFORE"
if [ ! -f "$MARK" ]; then
    echo "== generating $SCALE into $DATA" >&2
    rm -rf "$DATA"
    "$GENERATE" --out "$DATA/raw" --date "$DATE" --days-before "$BEFORE" --devices "$DEVICES" --interval "$INTERVAL"
    touch "$MARK"
fi

cat > "$DATA/job.toml" <<TOML
name = "bench-$SCALE"
source = "$DATA/raw"
layout = "telemetry/{yyyy}/{MM}/{dd}/{HH}/"
lake = "$DATA/lake"
TOML
if [ "$SCALE" = million ]; then
    # The per-device costs are what this scale measures: a million devices, over
    # the default limit a date may name (docs/limits.md).
    printf '[limits]\ndevices = 1000000\n' >> "$DATA/job.toml"
fi
if [ -n "$FEATURES" ]; then
    cat "$FEATURES" >> "$DATA/job.toml"
fi

timed() { # timed NAME CMD... : runs CMD, keeps its wall time and peak RSS (GNU time) in NAME.time
    local name="$1"; shift
    /usr/bin/time -f "%e %M" -o "$DATA/$name.time" "$@"
}

rm -rf "$DATA/lake" "$DATA/lake.prev" "$DATA"/run.*.time "$DATA"/duck.*.time
for back in $(seq "$BEFORE" -1 1); do
    day=$(date -u -d "$DATE - $back day" +%F)
    echo "== coldpath: $day (a date before, for the look-back and history; not the benchmark)" >&2
    timed prev "$COLDPATH" run --job "$DATA/job.toml" --date "$day" --report "$DATA/prev.json" \
        --log-format json >/dev/null 2>"$DATA/prev.log" || [ $? -eq 3 ]
done
# Every measured run starts from this lake (the dates before only), so all see the same.
cp -a "$DATA/lake" "$DATA/lake.prev"

COLD_TIMES= DUCK_TIMES=
for i in $(seq 1 "$RUNS"); do
    echo "== coldpath: $DATE (run $i of $RUNS)" >&2
    rm -rf "$DATA/lake"
    cp -a "$DATA/lake.prev" "$DATA/lake"
    # Exit 3 (the quality gate; also for the dates before) is a measured run too: a job
    # whose expectations stop the date (bench/drop-every-row.toml) still reads every
    # blob and writes rejects.
    timed "run.$i" "$COLDPATH" run --job "$DATA/job.toml" --date "$DATE" --report "$DATA/run.$i.json" \
        --log-format json >/dev/null 2>"$DATA/run.$i.log" || [ $? -eq 3 ]
    python3 bench/summarize.py "$DATA/run.$i.json" "$DATA/run.$i.time"
    COLD_TIMES="$COLD_TIMES$DATA/run.$i.time,"
    if [ "$DUCKDB" = 1 ]; then
        echo "== duckdb silver-only pass: $DATE (run $i of $RUNS)" >&2
        timed "duck.$i" python3 bench/duckdb_baseline.py --source "$DATA/raw" \
            --out "$DATA/duck/telemetry.parquet" --date "$DATE" >"$DATA/duck.$i.json"
        read -r wall rss <"$DATA/duck.$i.time"
        echo "duckdb: $(cat "$DATA/duck.$i.json"); process wall ${wall} s, peak RSS $((rss / 1024)) MiB"
        DUCK_TIMES="$DUCK_TIMES$DATA/duck.$i.time,"
    fi
done

if [ "$PYTHON" = 1 ]; then
    echo "== python baseline: $PREV, then $DATE" >&2
    rm -rf "$DATA/pylake"
    timed pyprev python3 bench/python_baseline.py --source "$DATA/raw" --lake "$DATA/pylake" --date "$PREV" >/dev/null
    timed py python3 bench/python_baseline.py --source "$DATA/raw" --lake "$DATA/pylake" --date "$DATE" >"$DATA/py.json"
    read -r wall rss <"$DATA/py.time"
    echo "python baseline: $(cat "$DATA/py.json")"
    echo "python baseline: wall ${wall} s, peak RSS $((rss / 1024)) MiB"
fi

if [ "$RUNS" -gt 1 ] || [ "$DUCKDB" = 1 ] || [ "$PYTHON" = 1 ]; then
    echo "== $SCALE, $DATE: medians (GNU time: the whole process's wall time and peak RSS)"
    args=("coldpath=$COLD_TIMES")
    [ "$DUCKDB" = 1 ] && args+=("duckdb=$DUCK_TIMES")
    [ "$PYTHON" = 1 ] && args+=("python=$DATA/py.time")
    python3 bench/compare.py "${args[@]}"
fi
