#!/usr/bin/env bash
# The main job: set up .venv if needed, then reproduce the study (arguments go to `python -m gan_lib reproduce`).
#
#   bash scripts/run_study.sh [-h | --help] [REPRODUCE OPTIONS ...]
#
# Relative --runs-root / --results / --data-root / --mnist-root paths are taken against the folder this is run
# from (made absolute before the script changes to the repository). RUN_STUDY_DRY_RUN=1: print the final command
# instead of running setup and it (what the tests check).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bash scripts/run_study.sh [-h | --help] [REPRODUCE OPTIONS ...]

The main job: create .venv and install gan_lib if needed (scripts/setup.sh), then reproduce the study: train
the runs of every notebook and render the notebooks, figures and tables (python -m gan_lib reproduce).
Every option is passed on to `python -m gan_lib reproduce` (e.g. --preset smoke, --only 01,03, --jobs 4);
`.venv/bin/python -m gan_lib reproduce --help` lists them. Relative --runs-root, --results, --data-root and
--mnist-root paths are taken against the current folder.
EOF
}

for arg in "$@"; do
    case "$arg" in -h | --help) usage; exit 0 ;; esac
done

abs() { case "$1" in /* | "~"* | -* | "") printf '%s' "$1" ;; *) printf '%s' "$PWD/$1" ;; esac; }
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs-root=* | --results=* | --data-root=* | --mnist-root=*) args+=("${1%%=*}=$(abs "${1#*=}")") ;;
        --runs-root | --results | --data-root | --mnist-root)
            args+=("$1")
            if [ $# -gt 1 ]; then shift; args+=("$(abs "$1")"); fi ;;
        *) args+=("$1") ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
if [ -n "${RUN_STUDY_DRY_RUN:-}" ]; then
    printf '%q ' .venv/bin/python -m gan_lib reproduce "${args[@]}"; echo
    exit 0
fi
bash scripts/setup.sh
exec .venv/bin/python -m gan_lib reproduce "${args[@]}"
