#!/usr/bin/env bash
# Create .venv (Python 3.11) and install gan_lib with its pinned dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,ray]"  # ray: --executor ray and its tests
