#!/usr/bin/env bash
# The small day served by Azurite on loopback, read through object_store (issue 18, step 4).
#
#   bench/azurite.sh                  # after bench/run.sh small (its container and lake)
#   COLDPATH_BIN=path/to/coldpath bench/azurite.sh
#
# Starts tools/azurite (installed by scripts/test.sh) on a free port of 127.0.0.1, puts
# the first HOURS (default 24) of the date into container `raw` and the same blobs into a
# local folder (hard links), then:
#   1. runs `coldpath run` on az://raw/ and on the local folder, each from a copy of the
#      lake as the previous date left it, and prints both reports' list and read times;
#   2. reads every blob back with one plain HTTP connection (bench/azurite_load.py): what
#      the emulator serves when nothing parses.
# HOURS=24 reads the whole date (without its look-ahead hours).
# Nothing here is a test; the figures go in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${COLDPATH_BENCH_DIR:-$HOME/.cache/coldpath-bench}/small"
BIN="${COLDPATH_BIN:-target/release/coldpath}"
AZ=tools/azurite/node_modules/.bin/azurite-blob
[ -x "$AZ" ] || { echo "Azurite is not installed: run ./scripts/test.sh first (npm ci in tools/azurite)" >&2; exit 2; }
[ -d "$DIR/raw" ] && [ -d "$DIR/lake.prev" ] || { echo "no small bench in $DIR: run bench/run.sh small first" >&2; exit 2; }
[ -x "$BIN" ] || cargo build --release

WORK="$(mktemp -d "${TMPDIR:-/tmp}/coldpath-azurite.XXXXXX")"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$AZ" --blobHost 127.0.0.1 --blobPort "$PORT" --location "$WORK/emulator" \
  --silent --skipApiVersionCheck --loose --disableTelemetry >/dev/null 2>&1 &
AZ_PID=$!
trap 'kill $AZ_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break
  sleep 0.1
done

HOURS="${HOURS:-24}"
PREFIXES="$(for h in $(seq 0 $((HOURS - 1))); do printf 'telemetry/2024/03/11/%02d ' "$h"; done)"
mkdir -p "$WORK/src"
for p in reference $PREFIXES; do mkdir -p "$WORK/src/$(dirname "$p")"; cp -al "$DIR/raw/$p" "$WORK/src/$p"; done
echo "== upload"
python3 bench/azurite_load.py "$PORT" upload "$DIR/raw" reference $PREFIXES
run() { # run NAME SOURCE [ENV=VAL ...]
  local name=$1 source=$2; shift 2
  rm -rf "$WORK/$name"; cp -al "$DIR/lake.prev" "$WORK/$name"
  env "$@" /usr/bin/time -f "%e s wall, %M KB peak" "$BIN" run --job "$DIR/job.toml" \
    --date 2024-03-11 --source "$source" --lake "$WORK/$name" --report "$WORK/$name.json" \
    --log-format json >/dev/null 2>"$WORK/$name.log" || { tail -5 "$WORK/$name.log"; exit 1; }
  python3 - "$WORK/$name.json" "$name" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["durations"]
mb = r.get("blobs", {}).get("bytes", 0) / 1e6
print(f"{sys.argv[2]:8} list {d['list_ms']} ms, read pass {d['read_ms'] / 1e3:.2f} s "
      f"({mb / (d['read_ms'] / 1e3):.0f} MB/s of {mb:.0f} MB), total {d['total_ms'] / 1e3:.2f} s")
EOF
  tail -1 "$WORK/$name.log" | grep -o '[0-9.]* s wall, [0-9]* KB peak' || true
}
echo "== coldpath run, the same date"
run azurite az://raw/ AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$PORT"
run local "$WORK/src"
echo "== plain GETs, one connection (the emulator alone)"
python3 bench/azurite_load.py "$PORT" download $PREFIXES

