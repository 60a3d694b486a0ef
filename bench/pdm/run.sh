#!/usr/bin/env bash
# The PdM benchmark (issue 31): generates a predictive-maintenance raw container with a planted
# failure signal, loads it through coldpath twice (jobs/default.toml: features_hourly's default
# columns; jobs/declared.toml: a declared feature set), then trains a gradient-boosted
# classifier on two months and tests on the third (train.py), printing average precision for
# the default, declared, raw-hourly-means and hand-written notebook feature sets, and the
# point-in-time checks. See README.md.
#
#   bench/pdm/run.sh [--regenerate] [--no-coldpath] [--keep-lakes] [--parallel N] [-- generate.py args]
#
#   --regenerate   generate the raw container again (default: reuse data/raw when it exists)
#   --no-coldpath  skip coldpath: train only the raw and notebook baselines
#   --keep-lakes   do not delete data/lake-* before the backfills (a rerun is idempotent anyway)
#   --parallel N   coldpath backfill --parallel N (default 1)
#   -- ...         passed to generate.py (e.g. -- --machines 40 --days 30; implies --regenerate)
#
# COLDPATH_BIN=PATH uses that binary; by default $CARGO_TARGET_DIR/debug/coldpath
# (CARGO_TARGET_DIR defaults to ~/.cache/coldpath-target), built with `cargo build` only when
# it is missing, and copied to data/coldpath for the run. Python packages come from
# bench/pdm/setup.sh (a venv in bench/pdm/.venv).
# Everything generated lives in bench/pdm/data/ (gitignored).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
REGEN=0 CP=1 KEEP=0 PARALLEL=1 GENARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --regenerate) REGEN=1 ;;
        --no-coldpath) CP=0 ;;
        --keep-lakes) KEEP=1 ;;
        --parallel) PARALLEL="$2"; shift ;;
        --) shift; GENARGS=("$@"); REGEN=1; break ;;
        *) echo "usage: bench/pdm/run.sh [--regenerate] [--no-coldpath] [--keep-lakes] [--parallel N] [-- generate.py args]" >&2; exit 2 ;;
    esac
    shift
done
DATA="$HERE/data"
PY="$HERE/.venv/bin/python"
"$HERE/setup.sh"
mkdir -p "$DATA"

if [ "$REGEN" = 1 ] || [ ! -f "$DATA/raw/truth.json" ]; then
    echo "== generate.py ${GENARGS[*]:-}"
    "$PY" "$HERE/generate.py" --out "$DATA/raw" "${GENARGS[@]}"
fi
read -r FROM TO LABELS_AS_OF < <("$PY" - "$DATA/raw/truth.json" <<'EOF'
import json, sys, datetime as dt
t = json.load(open(sys.argv[1]))
start = dt.date.fromisoformat(t["args"]["start"])
print(start, start + dt.timedelta(days=t["args"]["days"] - 1), t["logs_as_of"])
EOF
)
echo "== dates $FROM .. $TO, labels as of $LABELS_AS_OF"

# The column map: the repository's, plus the generator's `rotation` as a declared column.
{
    cat "$ROOT/schemas/telemetry.toml"
    printf '\n# bench/pdm: the generator writes `rotation` (rpm); declared so that coldpath keeps it.\n'
    printf '[[declared]]\nname = "rotation"\naliases = ["rotation", "rpm"]\ntype = "double"\nmin = 0.0\nmax = 5000.0\n'
} > "$DATA/schema.toml"

if [ "$CP" = 1 ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coldpath-target}"
    BIN="${COLDPATH_BIN:-$CARGO_TARGET_DIR/debug/coldpath}"
    if [ ! -x "$BIN" ]; then
        if [ -n "${COLDPATH_BIN:-}" ]; then echo "COLDPATH_BIN=$BIN is not an executable" >&2; exit 2; fi
        echo "== cargo build (debug) into $CARGO_TARGET_DIR"
        (cd "$ROOT" && cargo build)
    fi
    # The shared target directory's binary can be rebuilt (by another checkout) mid-run: use a copy.
    if [ -z "${COLDPATH_BIN:-}" ]; then
        cp "$BIN" "$DATA/coldpath.tmp" && mv "$DATA/coldpath.tmp" "$DATA/coldpath"
        BIN="$DATA/coldpath"
    fi
    echo "== $("$BIN" --version)"
    # Declared feature sets are refused (exit 2, unknown field) by a binary that predates them.
    if ! "$BIN" plan --job "$HERE/jobs/declared.toml" --date "$FROM" >/dev/null 2>"$DATA/plan.err"; then
        echo "coldpath does not accept jobs/declared.toml:" >&2; cat "$DATA/plan.err" >&2; exit 2
    fi
    for job in default declared; do
        [ "$KEEP" = 1 ] || rm -rf "$DATA/lake-$job"
        echo "== coldpath backfill --job jobs/$job.toml --from $FROM --to $TO --parallel $PARALLEL"
        start=$(date +%s)
        rc=0
        "$BIN" backfill --job "$HERE/jobs/$job.toml" --from "$FROM" --to "$TO" --parallel "$PARALLEL" \
            --labels-as-of "$LABELS_AS_OF" --report "$DATA/backfill-$job.json" 2>"$DATA/backfill-$job.log" || rc=$?
        echo "   exit $rc in $(( $(date +%s) - start )) s; report data/backfill-$job.json, log data/backfill-$job.log"
        [ "$rc" = 0 ] || { tail -20 "$DATA/backfill-$job.log" >&2; exit "$rc"; }
    done
fi

echo "== train.py"
"$PY" "$HERE/train.py" --raw "$DATA/raw" --default-lake "$DATA/lake-default" \
    --declared-lake "$DATA/lake-declared" --labels-as-of "$LABELS_AS_OF" --json "$DATA/results.json"
