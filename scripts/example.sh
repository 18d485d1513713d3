#!/usr/bin/env bash
# Installs pytheus with Flask and runs example.py on http://localhost:8080 (metrics at /metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[example]'
exec .venv/bin/python example.py
