#!/usr/bin/env bash
# Stage the FINISHED run folders under a runs root (default results/runs) for commit: completed or diverged
# runs that reached their end (status.json), without checkpoints. Runs still training are left out, so a
# commit never records a half-finished run. Usage: bash scripts/record_runs.sh [RUNS_ROOT]; then git commit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-results/runs}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
"$PY" - "$ROOT" <<'PY' | while IFS= read -r dir; do git add -f -- "$dir"/config.json "$dir"/metrics.csv "$dir"/status.json $(cd "$dir" && ls -d data.json evals.csv train.log samples 2>/dev/null | sed "s|^|$dir/|"); echo "recorded $dir"; done
import json, sys
from pathlib import Path
for status in sorted(Path(sys.argv[1]).glob("*/*/*/status.json")):
    try:
        st = json.loads(status.read_text())
    except ValueError:
        continue
    if st.get("state") == "completed" or st.get("state") == "diverged":
        print(status.parent)
PY
