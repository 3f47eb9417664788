#!/usr/bin/env bash
# The main job: set up .venv if needed, then reproduce the study (arguments go to `python -m gan_lib reproduce`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m gan_lib reproduce "$@"
