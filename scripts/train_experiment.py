"""Train the runs of one notebook's experiment without papermill (a device machine has no Jupyter stack).

    python scripts/train_experiment.py 02 --preset cpu --data-root /work/shared/data/celeba \\
        --runs-root results/runs/02_involution_hyperparameters --jobs 8 [--seeds 0,1,2] [--threads 1] \\
        [--dataset celeba] [--split all] [--executor ray [--address HOST:PORT] [--gpus-per-run 0.25]] \\
        [--stack auto|on|off] [--configs LABEL,LABEL]

The run folders are exactly those the notebook finds (`study.run_path`; same configs), so rendering the notebook
later with ``python -m gan_lib reproduce --no-train`` reuses them. ``--jobs`` runs train at a time
(`study.run_all`), started seed-major (every configuration of seed 0, then seed 1, ...), so a stop at a deadline
leaves the lowest seeds finished; ``--configs`` trains only the named configurations (e.g. to finish every seed
of some configurations before starting the next). SIGINT (Ctrl-C, or ``kill -INT -- -PGID`` to the process group)
stops the running runs, which save a checkpoint and mark themselves interrupted (they resume on the next call), and
no new run starts after it (exit code 130). One JSON line per run on stdout as it ends. ``--stack on`` trains each
configuration's seeds as one stacked model (one job per configuration; ``auto``, the default: on a GPU only,
`study.stack_default`). A bad argument (an unknown notebook or preset, a missing data folder, ...) prints one
line ``error: ...`` on stderr and exits with code 2; a run that fails makes the exit code 1 (the others go on).
Relative paths are read against the folder it is started from.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_lib.__main__ import add_executor_args, check_executor_args, parse_seeds  # noqa: E402
from gan_lib.config import PRESETS, ConfigError  # noqa: E402
from gan_lib.errors import report_user_errors  # noqa: E402
from gan_lib.reproduce import EXPERIMENTS, check_threads, folder_arg, select_notebooks  # noqa: E402
from gan_lib.study import experiment, run_all  # noqa: E402


def seed_major(specs: list) -> list:
    """Every configuration of the lowest seed first (the configurations' order kept within a seed)."""
    return sorted(specs, key=lambda s: s.seed)


def notebook_name(arg: str) -> str:
    """The one notebook ``arg`` names (number or name prefix); ConfigError naming the valid ones otherwise."""
    try:
        names = select_notebooks(arg) if arg.strip() else []
    except ConfigError:
        names = []
    if len(names) != 1:
        raise ConfigError(f"notebook {arg!r} is not one notebook; give one of {', '.join(EXPERIMENTS)} "
                          f"(by number, e.g. 02, or name)")
    return names[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", help=f"number or name, one of {', '.join(EXPERIMENTS)}, e.g. 02")
    ap.add_argument("--preset", default="cpu", choices=list(PRESETS))
    ap.add_argument("--dataset", default="celeba")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--split", default=None)
    ap.add_argument("--seeds", default=None, help="comma separated (default: the preset's)")
    ap.add_argument("--configs", default=None,
                    help="comma separated configuration labels to train (default: all of the notebook's)")
    ap.add_argument("--runs-root", default="runs")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's (other runs than the notebook's)")
    ap.add_argument("--eval-every", type=int, default=None)
    add_executor_args(ap)  # --stack auto|on|off, --executor local|ray, --address, --cpus-per-run, --gpus-per-run
    a = ap.parse_args(argv)
    return report_user_errors(lambda: train_notebook(a))  # a bad value: one line, as gan_lib.__main__


def train_notebook(a: argparse.Namespace) -> int:
    check_executor_args(a)
    check_threads(a.threads)
    runs_root = folder_arg("--runs-root", a.runs_root)  # relative paths: the caller's folder's
    name = notebook_name(a.notebook)
    seeds = tuple(parse_seeds(a.seeds)) if a.seeds else None  # None: the preset's
    extra = {"split": a.split} if a.split else {}
    data_root = str(Path(a.data_root).expanduser().resolve()) if a.data_root else None
    exp = experiment(name, a.preset, dataset=a.dataset, data_root=data_root, seeds=seeds, steps=a.steps,
                     eval_every=a.eval_every, **extra)
    specs = seed_major(exp.specs)
    if a.configs:
        labels = [c.strip() for c in a.configs.split(",") if c.strip()]
        known = list(dict.fromkeys(s.label for s in exp.specs))
        unknown = [c for c in labels if c not in known]
        if unknown:
            raise ConfigError(f"--configs: {', '.join(unknown)} not in {name}; choose from {', '.join(known)}")
        specs = [s for s in specs if s.label in labels]
    print(exp.describe(), flush=True)
    start = time.time()
    finished, failed = [], []

    def report(outcome):
        finished.append(outcome["state"] in ("completed", "diverged"))
        failed.append(outcome["state"] == "failed")
        print(json.dumps(dict(outcome, t=round(time.time() - start, 1))), flush=True)

    # A job started with `&` by a non-interactive shell inherits SIGINT ignored (gpu_check.sh starts this one
    # so): restore Python's KeyboardInterrupt so the deadline's SIGINT stops the queue.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run_all(specs, exp.preset, runs_root=runs_root, jobs=a.jobs,
                threads=a.threads, progress=False, on_done=report, executor=a.executor, address=a.address,
                cpus_per_run=a.cpus_per_run, gpus_per_run=a.gpus_per_run,
                stack=None if a.stack == "auto" else a.stack == "on", **exp.common)
        code = 1 if any(failed) else 0  # a failed run (its reason is in its line above) fails the call
    except KeyboardInterrupt:
        print(f"SIGINT after {time.time() - start:.0f} s: no new run started; the running runs saved a checkpoint",
              flush=True)
        code = 130
    print(f"{sum(finished)} of {len(specs)} runs finished in {time.time() - start:.0f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
