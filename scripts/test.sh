#!/usr/bin/env bash
# The project's test command (README, and what .ci/run calls): unit tests and the
# integration-test binary, which runs the real `coldpath` on fixtures/ and reads
# the Delta tables back.
#
# The build goes to cargo's ./target (or $CARGO_TARGET_DIR), the same one the
# README's `cargo run` uses, so a newcomer builds once; .ci/run points
# CARGO_TARGET_DIR outside the clone so CI runs reuse it (polars + deltalake take
# ~6 minutes to build from scratch on 2 cores).
#
# Azure storage is tested against a real Azurite (npm package, version pinned in
# tools/azurite/package-lock.json). It is installed here, from the npm registry,
# when missing; the tests start and stop it themselves on a free 127.0.0.1 port.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x tools/azurite/node_modules/.bin/azurite-blob ]; then
    command -v npm >/dev/null || { echo "scripts/test.sh: npm (Node.js 20+) is needed to install Azurite" >&2; exit 2; }
    npm ci --prefix tools/azurite --no-audit --no-fund --loglevel=error
fi
# The report page's browser tests (tests/it/report_html.rs) open it in headless
# Chromium: Debian's `chromium` package, installed here when missing (as root, or
# through sudo); COLDPATH_CHROMIUM names another binary. The tests download nothing.
if [ -z "${COLDPATH_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
    command -v apt-get >/dev/null || { echo "scripts/test.sh: Chromium is needed (Debian's chromium package, or set COLDPATH_CHROMIUM)" >&2; exit 2; }
    echo "scripts/test.sh: installing Debian's chromium for the report page's browser tests (about 370 MiB, once)" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
        || { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
fi
# The held-out test (tests/it/held_out.rs) generates its container at test time with
# fixtures/generate.py: Python 3, standard library only. Installed here when missing.
if ! command -v python3 >/dev/null; then
    command -v apt-get >/dev/null || { echo "scripts/test.sh: python3 is needed (standard library only)" >&2; exit 2; }
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 >/dev/null 2>&1 \
        || { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3; }
fi
# The MLTable test (tests/it/mltable.rs) reads every table with Azure ML's reader:
# mltable and azureml-dataprep[pandas] at the versions tests/mltable/requirements.txt
# pins, in a virtual environment (.venv-mltable/, gitignored, or $COLDPATH_MLTABLE_VENV),
# installed here from PyPI when missing, when the pins change (the copy of the pins it
# keeps says which) or when it no longer imports (a damaged venv, or one built by a
# python3 since replaced): then made again from scratch. The test downloads nothing
# and fails without it.
venv="${COLDPATH_MLTABLE_VENV:-.venv-mltable}"
if ! cmp -s tests/mltable/requirements.txt "$venv/coldpath-requirements.txt" \
    || ! "$venv/bin/python" -c 'import mltable' >/dev/null 2>&1; then
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        command -v apt-get >/dev/null || { echo "scripts/test.sh: python3's venv module is needed (Debian's python3-venv)" >&2; exit 2; }
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >/dev/null 2>&1 \
            || { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; }
    fi
    echo "scripts/test.sh: installing Azure ML's mltable and azureml-dataprep[pandas] (tests/mltable/requirements.txt) into $venv: about 115 MiB from PyPI, 460 MiB installed, once" >&2
    # Only a virtual environment is removed (COLDPATH_MLTABLE_VENV may name any folder).
    if [ -f "$venv/pyvenv.cfg" ]; then rm -rf "$venv"; fi
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/mltable/requirements.txt
    cp tests/mltable/requirements.txt "$venv/coldpath-requirements.txt"
fi
# The pyarrow 14 test (tests/it/pyarrow14.rs) reads every table's files with the
# oldest pyarrow the tables promise to serve: pyarrow and numpy at the versions
# tests/pyarrow14/requirements.txt pins, in .venv-pyarrow14/ (gitignored, or
# $COLDPATH_PYARROW14_VENV), installed and kept as the mltable venv above.
venv14="${COLDPATH_PYARROW14_VENV:-.venv-pyarrow14}"
if ! cmp -s tests/pyarrow14/requirements.txt "$venv14/coldpath-requirements.txt" \
    || ! "$venv14/bin/python" -c 'import pyarrow.parquet' >/dev/null 2>&1; then
    echo "scripts/test.sh: installing pyarrow 14 (tests/pyarrow14/requirements.txt) into $venv14: about 55 MiB from PyPI, once" >&2
    if [ -f "$venv14/pyvenv.cfg" ]; then rm -rf "$venv14"; fi
    python3 -m venv "$venv14"
    "$venv14/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/pyarrow14/requirements.txt
    cp tests/pyarrow14/requirements.txt "$venv14/coldpath-requirements.txt"
fi
# Lints first: the code as rustfmt writes it (rustup's default profile has it,
# as it has clippy), no warning, and no unwrap/expect/panic outside tests (src/lib.rs).
cargo fmt --all --check || { echo "scripts/test.sh: run \`cargo fmt --all\`: the files above differ from rustfmt's" >&2; exit 1; }
cargo clippy --locked --all-targets -- -D warnings
# Cargo prints one "test result" line per test binary (the last is the doc tests,
# usually 0): end with one line that counts every test this command ran. Every
# binary runs though one fails (--no-fail-fast); a binary that dies before its
# "test result" line (a crash, a kill) counts its tests without an "ok" as failed.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk 'function cut() { if (open) { p += ok; f += n - ok - skipped }; open = 0 }
     /^running [0-9]+ tests?$/ { cut(); open = 1; n = $2; ok = 0; skipped = 0; next }
     open && / \.\.\. ok$/ { ok++ }
     open && / \.\.\. ignored/ { skipped++ }
     /^test result:/ { open = 0; for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { cut(); printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
