"""Stress the run folder: interrupt smoke runs at random moments with a concurrent second writer, then check.

    python benchmarks/stress_run_folders.py [--trials 5] [--interrupts 1-3] [--steps 40] [--seed 0]
        [--dataset synthetic | --data-root PATH] [--root /tmp/stress] [--keep]

Each trial trains one run folder with ``python -m gan_lib train --preset smoke --set deterministic=true`` and,
``--interrupts`` times at random: starts the command, starts a second writer on the same folder 0.3-2 s later
(the same command, or with another seed, which must not touch the folder), then sends the process that trains
the folder SIGKILL, SIGTERM or SIGINT at a random moment (or lets it finish). After each interruption the
folder, at rest, must be consistent:

* at most one writer trained it at a time: the other exited at once with code 75 naming the holder (2 for
  another seed's run), or took the folder over once the holder had died and finished it (0); the folder's lock
  is free once both ended;
* status.json parses; SIGTERM / SIGINT leave state "interrupted" with the checkpoint step, SIGKILL leaves
  "running" that `RunDir.effective_state` reports as "stale" (or a finished state if it finished);
* the checkpoint loads and verifies, at the step status.json names (or later, for a kill between the two);
* metrics.csv and evals.csv have each step once, in order; config.json is the asked config (seed 0).

Then the same command runs the trial to completion, and its metrics.csv, evals.csv (losses, learning rates and
metric values; not timings) and final generator must equal those of an uninterrupted reference run, bit for bit
(``deterministic=true`` on the CPU). The last line is ``stress: OK`` or ``stress: N problem(s)``; the exit code
is 0 or 1. About 30-60 s per trial on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gan_lib.errors import EXIT_LOCKED, EXIT_USER_ERROR  # noqa: E402
from gan_lib.run_dir import METRIC_COLUMNS, STATES, CheckpointError, RunDir  # noqa: E402

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT, "none": None}
TIMING = {"sec_per_step", "eval_sec"}  # columns that differ between runs by nature


def train_command(args, out: Path, seed: int = 0) -> list[str]:
    data = ["--data-root", str(args.data_root)] if args.data_root else ["--dataset", args.dataset]
    return [sys.executable, "-m", "gan_lib", "train", "--preset", "smoke", *data, "--out", str(out),
            "--steps", str(args.steps), "--seed", str(seed), "--set", "deterministic=true", "--no-progress"]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    f = open(log, "a")
    f.write(f"\n$ {' '.join(cmd)}\n")
    f.flush()
    # Ctrl-C's default, even when this script runs in the background of a shell (which ignores SIGINT there)
    return subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_holder(run: RunDir, procs: list[subprocess.Popen], timeout: float = 60.0):
    """The process among ``procs`` that holds the folder's lock (None if all ended or none took it in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = run.lock_holder()
        for p in procs:
            if holder and holder.get("pid") == p.pid and p.poll() is None:
                return p
        if all(p.poll() is not None for p in procs):
            return None
        time.sleep(0.05)
    return None


def read_rows(path: Path) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_consistent(run: RunDir, sent: str | None, seed: int = 0) -> list[str]:
    """Problems of a folder at rest after an interruption by signal ``sent`` (None: not interrupted)."""
    problems = []
    if run.lock_holder() is not None:
        problems.append(f"lock still held by {run.lock_holder()} with no writer alive")
    try:
        status = run.read_status()
    except ValueError as e:
        return problems + [f"status.json does not parse: {e}"]
    state = status.get("state")
    if status and state not in STATES:
        problems.append(f"status state {state!r}")
    effective = run.effective_state(status) if status else None
    if sent in ("TERM", "INT") and state not in ("interrupted", "completed", None):
        problems.append(f"SIG{sent} left state {state!r} (expected interrupted)")
    if sent == "KILL" and state == "running" and effective != "stale":
        problems.append(f"kill -9 left state running that is not reported stale ({effective!r})")
    ck_step = None
    if run.has_checkpoint("last"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ck = run.load_checkpoint("last")
                ck_step = ck["step"]
                if ck.get("config", {}).get("seed", seed) != seed:
                    problems.append(f"checkpoint holds seed {ck['config']['seed']}, expected {seed}")
            except CheckpointError as e:
                problems.append(f"checkpoint: {e}")
        problems += [f"checkpoint warning: {w.message}" for w in caught if "previous checkpoint" in str(w.message)]
        saved = status.get("checkpoint_step")
        if ck_step is not None and saved is not None and ck_step < saved:
            problems.append(f"status.json names checkpoint step {saved}, the checkpoint holds {ck_step}")
        if sent in ("TERM", "INT") and state == "interrupted" and ck_step != saved:
            problems.append(f"interrupted at checkpoint step {saved} but last.pt holds {ck_step}")
    for name, path in (("metrics.csv", run.metrics_path), ("evals.csv", run.evals_path)):
        steps = [int(float(r["step"])) for r in read_rows(path) if r.get("step")]
        if steps != sorted(set(steps)):
            problems.append(f"{name}: steps repeated or out of order ({len(steps)} rows, {len(set(steps))} steps)")
        if name == "metrics.csv" and steps and steps != list(range(1, len(steps) + 1)):
            problems.append(f"metrics.csv: steps are not 1..{len(steps)}")
    if run.config_path.exists() and run.load_config().get("seed") != seed:
        problems.append(f"config.json says seed {run.load_config().get('seed')}, expected {seed}")
    return problems


def compare_to_reference(run: RunDir, ref: RunDir) -> list[str]:
    problems = []
    for name in ("metrics.csv", "evals.csv"):
        a, b = read_rows(run.path / name), read_rows(ref.path / name)
        keys = [k for k in (b[0] if b else {}) if k not in TIMING]
        got = [{k: r.get(k) for k in keys} for r in a]
        want = [{k: r.get(k) for k in keys} for r in b]
        if got != want:
            first = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
            problems.append(f"{name} differs from the uninterrupted run ({len(got)} vs {len(want)} rows; first "
                            f"difference at row {first + 1})")
    try:
        import torch

        g = run.load_checkpoint("last")["generator"]
        h = ref.load_checkpoint("last")["generator"]
        if g.keys() != h.keys() or not all(torch.equal(g[k], h[k]) for k in g):
            problems.append("the final generator differs from the uninterrupted run's")
    except (CheckpointError, KeyError) as e:
        problems.append(f"final checkpoint: {e}")
    return problems


def interrupt_once(args, run: RunDir, rng: random.Random, log: Path) -> tuple[str, list[str]]:
    """One attempt with a concurrent second writer; returns (what happened, problems)."""
    fresh = not run.run_files()
    first = start(train_command(args, run.path), log)
    time.sleep(rng.uniform(0.3, 2.0))
    # another seed only once the folder holds seed 0's run (on a fresh folder either writer may win, and trains)
    other_seed = 0 if fresh else rng.choice([0, 1])
    second = start(train_command(args, run.path, seed=other_seed), log)
    procs = [first, second]
    holder = wait_for_holder(run, procs)
    sig = rng.choices(list(SIGNALS), weights=(3, 3, 3, 1))[0]
    problems = []
    if holder is None:
        for p in procs:
            p.wait()
        codes = [p.returncode for p in procs]
        if run.read_status().get("state") != "completed" or codes.count(0) != 1:
            problems.append(f"no process held the folder's lock (exit codes {codes}): is train() taking it?")
        return f"no lock seen, exits {codes}", problems
    refused = second if holder is first else first
    # the signal lands at a random moment of the holder's run (its whole run takes ~5-15 s here)
    t_sig = time.monotonic() + rng.uniform(0.0, args.max_delay)
    while sig != "none" and time.monotonic() < t_sig and holder.poll() is None:
        time.sleep(0.02)
    if sig != "none" and holder.poll() is None:
        holder.send_signal(SIGNALS[sig])
    else:
        sig = "none" if holder.poll() is not None else sig
    for p in procs:
        try:
            p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            problems.append(f"pid {p.pid} did not end within 300 s")
    # refused (75; 2 when it saw another seed's run), or it took over once the holder died and finished (0)
    if refused.returncode not in (EXIT_LOCKED, EXIT_USER_ERROR, 0):
        problems.append(f"the second writer (pid {refused.pid}) exited {refused.returncode}, expected "
                        f"{EXIT_LOCKED} (folder locked) or 0 (took over after the holder ended)")
    expected = {"KILL": -signal.SIGKILL, "TERM": 130, "INT": 130, "none": 0}[sig]
    if holder.returncode not in (expected, 0):  # 0: it finished before the signal came
        problems.append(f"the writer exited {holder.returncode} after SIG{sig}, expected {expected}")
    problems += check_consistent(run, sig if sig != "none" else None)
    return f"SIG{sig} -> exits {holder.returncode}/{refused.returncode}", problems


def interrupt_range(text: str) -> tuple[int, int]:
    """``"1-3"`` -> ``(1, 3)``, ``"2"`` -> ``(2, 2)`` (argparse's ``type``: a bad value is a usage error)."""
    lo, _, hi = text.partition("-")
    try:
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        lo = hi = -1
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected a count or a range LO-HI of counts >= 0, e.g. 1-3; got {text!r}")
    return lo, hi


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--interrupts", type=interrupt_range, default="1-3",
                    help="interruptions per trial, a range (default 1-3)")
    ap.add_argument("--steps", type=int, default=40, help="generator steps of each run (smoke: checkpoint every 10)")
    ap.add_argument("--max-delay", type=float, help="latest signal after the lock is taken, in seconds (default: "
                                                    "0.12 s per step, about the run's length on 2 busy cores)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random schedule")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-root", help="train on this CelebA folder instead of --dataset")
    ap.add_argument("--root", type=Path, default=Path("/tmp/gan_lib_stress"))
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    args = ap.parse_args(argv)
    lo, hi = args.interrupts
    args.max_delay = args.max_delay or 0.12 * args.steps
    rng = random.Random(args.seed)
    shutil.rmtree(args.root, ignore_errors=True)
    args.root.mkdir(parents=True)
    log = args.root / "stress.log"
    print(f"stress: logs in {log}", flush=True)

    ref = RunDir(args.root / "reference")
    t0 = time.time()
    proc = start(train_command(args, ref.path), log)
    if proc.wait() != 0:
        print(f"stress: the reference run failed (exit {proc.returncode}); see {log}")
        return 1
    print(f"reference run: {time.time() - t0:.0f} s", flush=True)

    problems_total = 0
    for trial in range(args.trials):
        run = RunDir(args.root / f"trial{trial}")
        events, problems = [], []
        for _ in range(rng.randint(lo, hi)):
            what, found = interrupt_once(args, run, rng, log)
            events.append(what)
            problems += found
        final = start(train_command(args, run.path), log)
        if final.wait() != 0:
            problems.append(f"the final resume exited {final.returncode}")
        problems += check_consistent(run, None)
        if run.read_status().get("state") != "completed":
            problems.append(f"final state {run.read_status().get('state')!r}")
        problems += compare_to_reference(run, ref)
        leftovers = [str(p.relative_to(run.path)) for p in run.path.rglob(".*.tmp")]
        if leftovers:
            problems.append(f"temporary files left: {leftovers}")
        problems_total += len(problems)
        print(f"trial {trial}: {'; '.join(events)} -> {'OK' if not problems else 'PROBLEMS'}", flush=True)
        for p in problems:
            print(f"    {p}", flush=True)
    if not args.keep and not problems_total:
        shutil.rmtree(args.root, ignore_errors=True)
    print("stress: OK" if not problems_total else f"stress: {problems_total} problem(s)")
    return 0 if not problems_total else 1


if __name__ == "__main__":
    sys.exit(main())
