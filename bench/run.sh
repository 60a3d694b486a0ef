#!/usr/bin/env bash
# coldpath's benchmark (see BENCHMARKS.md): generates a Stream Analytics raw container at
# a scale, runs the nightly job (release build) for the date after its previous date, and
# prints wall time, rows/s, MB/s and peak RSS per stage. Nothing here is a test: the
# numbers are read by people, and the issue's targets are checked against them.
#
#   bench/run.sh [small|plant] [--python]
#
#   small   250 devices, a reading every 4 s:  5.4 M readings a day (~1.8 GB of JSON)
#   plant   500 devices, a reading every 1 s: 43.2 M readings a day (~14 GB of JSON)
#   --python  also run bench/python_baseline.py (pip install polars deltalake pyarrow)
#
# The raw container (the date, the day before and the look-ahead) is generated once into
# $COLDPATH_BENCH_DIR/<scale> (default ~/.cache/coldpath-bench) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE="${1:-small}"
PYTHON=0
[ "${2:-}" = "--python" ] && PYTHON=1
case "$SCALE" in
    small) DEVICES=250 INTERVAL=4 ;;
    plant) DEVICES=500 INTERVAL=1 ;;
    *) echo "usage: bench/run.sh [small|plant] [--python]" >&2; exit 2 ;;
esac
DATE=2024-03-11
PREV=2024-03-10
DATA="${COLDPATH_BENCH_DIR:-$HOME/.cache/coldpath-bench}/$SCALE"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coldpath-target}"

echo "== building (release)" >&2
cargo build --release --locked --bin coldpath >&2
(cd bench/generate && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/bench-generate" cargo build --release --locked >&2)
COLDPATH="$CARGO_TARGET_DIR/release/coldpath"
GENERATE="$CARGO_TARGET_DIR/bench-generate/release/coldpath-bench-generate"

MARK="$DATA/.generated-$DEVICES-$INTERVAL-$DATE"
if [ ! -f "$MARK" ]; then
    echo "== generating $SCALE into $DATA" >&2
    rm -rf "$DATA"
    "$GENERATE" --out "$DATA/raw" --date "$DATE" --days-before 1 --devices "$DEVICES" --interval "$INTERVAL"
    touch "$MARK"
fi

cat > "$DATA/job.toml" <<TOML
name = "bench-$SCALE"
source = "$DATA/raw"
layout = "telemetry/{yyyy}/{MM}/{dd}/{HH}/"
lake = "$DATA/lake"
TOML

timed() { # timed NAME CMD... : runs CMD, keeps its wall time and peak RSS (GNU time) in NAME.time
    local name="$1"; shift
    /usr/bin/time -f "%e %M" -o "$DATA/$name.time" "$@"
}

echo "== coldpath: $PREV (the previous date, for the look-back; not the benchmark)" >&2
rm -rf "$DATA/lake"
timed prev "$COLDPATH" run --job "$DATA/job.toml" --date "$PREV" --report "$DATA/prev.json" \
    --log-format json >/dev/null 2>"$DATA/prev.log"
echo "== coldpath: $DATE" >&2
timed run "$COLDPATH" run --job "$DATA/job.toml" --date "$DATE" --report "$DATA/run.json" \
    --log-format json >/dev/null 2>"$DATA/run.log"
python3 bench/summarize.py "$DATA/run.json" "$DATA/run.time"

if [ "$PYTHON" = 1 ]; then
    echo "== python baseline: $PREV, then $DATE" >&2
    rm -rf "$DATA/pylake"
    timed pyprev python3 bench/python_baseline.py --source "$DATA/raw" --lake "$DATA/pylake" --date "$PREV" >/dev/null
    timed py python3 bench/python_baseline.py --source "$DATA/raw" --lake "$DATA/pylake" --date "$DATE" >"$DATA/py.json"
    read -r wall rss <"$DATA/py.time"
    echo "python baseline: $(cat "$DATA/py.json")"
    echo "python baseline: wall ${wall} s, peak RSS $((rss / 1024)) MiB"
fi
