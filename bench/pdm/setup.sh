#!/usr/bin/env bash
# Creates bench/pdm/.venv (gitignored) with what generate.py and train.py need, from PyPI.
# Idempotent: an existing venv that already imports everything is left alone.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import numpy, pandas, sklearn, deltalake, pyarrow' 2>/dev/null; then
    echo "bench/pdm/.venv is ready"; exit 0
fi
"$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -c 'import numpy, pandas, sklearn, deltalake, pyarrow; print("bench/pdm/.venv is ready: deltalake", deltalake.__version__)'
