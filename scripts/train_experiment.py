"""Train the runs of one notebook's experiment without papermill (a device machine has no Jupyter stack).

    python scripts/train_experiment.py 02 --preset cpu --data-root /work/shared/data/celeba \\
        --runs-root results/runs/h200 --jobs 7 [--seeds 0,1,2] [--threads 2] [--dataset celeba] [--split all]

The run folders are exactly those the notebook finds (`study.run_path`; same configs), so rendering the notebook
later with ``python -m gan_lib reproduce --no-train --runs-root <runs-root>`` reuses them. ``--jobs`` runs train
at a time, started seed-major (every configuration of seed 0, then seed 1, ...), so a stop at a deadline leaves
the lowest seeds finished. SIGINT (Ctrl-C, or ``kill -INT -- -PGID`` to the process group) stops the running
runs, which save a checkpoint and mark themselves interrupted (they resume on the next call), and no new run
starts after it. One JSON line per run on stdout as it ends.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_lib.reproduce import select_notebooks  # noqa: E402
from gan_lib.study import DEFAULT_SEEDS, experiment, repo_path, run_one, run_path  # noqa: E402
from gan_lib.train import load_data  # noqa: E402


def seed_major(specs: list) -> list:
    """Every configuration of the lowest seed first (the configurations' order kept within a seed)."""
    return sorted(specs, key=lambda s: s.seed)


def train(exp, runs_root: str, jobs: int, threads: int | None, stop: threading.Event, report) -> list[dict]:
    """Train ``exp``'s runs ``jobs`` at a time in seed-major order; none starts once ``stop`` is set."""
    specs = seed_major(exp.specs)
    cfg0 = specs[0].config(exp.preset, **exp.common)
    if jobs > 1:  # decode the dataset once (into the gan_lib cache) before parallel runs read it
        load_data(cfg0, progress=False)

    def work(spec):
        if stop.is_set():
            return None
        path = run_path(repo_path(runs_root), exp.preset, cfg0.dataset, cfg0.image_size, spec)
        out = run_one(spec, exp.preset, path, threads=threads, **exp.common)
        report(out)
        return out

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return [o for o in pool.map(work, specs) if o is not None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", help="number or name, e.g. 02")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--dataset", default="celeba")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--split", default=None)
    ap.add_argument("--seeds", default=None, help="comma separated (default: the preset's)")
    ap.add_argument("--runs-root", default="runs")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's (other runs than the notebook's)")
    ap.add_argument("--eval-every", type=int, default=None)
    a = ap.parse_args(argv)
    (name,) = select_notebooks(a.notebook)
    seeds = tuple(int(s) for s in a.seeds.split(",")) if a.seeds else DEFAULT_SEEDS[a.preset]
    extra = {"split": a.split} if a.split else {}
    exp = experiment(name, a.preset, dataset=a.dataset, data_root=a.data_root, seeds=seeds, steps=a.steps,
                     eval_every=a.eval_every, **extra)
    print(exp.describe(), flush=True)
    start = time.time()
    stop = threading.Event()

    def on_sigint(signum, frame):  # the runs got the signal too (same process group) and stop themselves
        if not stop.is_set():
            print(f"SIGINT after {time.time() - start:.0f} s: no new run starts; running runs save a checkpoint",
                  flush=True)
        stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    outcomes = train(exp, a.runs_root, a.jobs, a.threads, stop,
                     lambda o: print(json.dumps(dict(o, t=round(time.time() - start, 1))), flush=True))
    done = sum(o["state"] in ("completed", "diverged") for o in outcomes)
    print(f"{done} of {len(exp.specs)} runs finished in {time.time() - start:.0f} s", flush=True)
    return 130 if stop.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
