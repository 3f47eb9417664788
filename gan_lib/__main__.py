"""Command line: ``python -m gan_lib {train,eval,reproduce} ...``.

    python -m gan_lib train --model igan --dataset celeba --data-root PATH --preset cpu --out runs/igan \\
        [--set key=value ...]
    python -m gan_lib eval runs/igan [--metrics swd kid] [--checkpoint best|last]
    python -m gan_lib reproduce [--preset smoke|cpu|paper] [--data-root PATH] [--only 01,03] [--jobs N] \\
        [--executor local|ray [--address HOST:PORT]]
    python -m gan_lib weights fetch|check      # pytorch-fid's Inception weights, for FID

A subcommand is a function ``add_<name>(subparsers)`` in ``SUBCOMMANDS`` that adds its parser and sets
``func`` (``args -> exit code``). A user's mistake (a `gan_lib.errors.UserError`: bad preset, key, value, data
folder, a run folder in use or holding another run, a damaged checkpoint, a full disk) prints one line,
``error: <what to do>``, and exits with code 2 (75 when the run folder is being trained by another process).
Ctrl-C exits with code 130 after saying how to resume.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from .config import CHOICES, PRESETS, ConfigError, make_config, parse_overrides
from .errors import report_user_errors

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


# --- train ---

def add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) one GAN run", description=(
        "Train a GAN with WGAN-GP + TTUR into a run folder. An existing folder with checkpoints/last.pt is "
        "resumed; a folder holding another run without a checkpoint is refused (see --restart). Any TrainConfig "
        "field can be set with --set key=value (lists: comma separated)."))
    p.add_argument("--model", choices=CHOICES["model"], help="GAN (default: igan)")
    p.add_argument("--dataset", help="celeba | mnist | folder | synthetic (default: celeba)")
    p.add_argument("--data-root", help="data folder (default: the dataset's usual places)")
    p.add_argument("--preset", choices=list(PRESETS), help="config preset (default: cpu; not with --config)")
    p.add_argument("--out", required=True, help="run folder; with several --seeds it must contain {seed}, e.g. "
                   "'runs/igan-s{seed}'")
    p.add_argument("--config", help="a config.json (e.g. a run's) to start from instead of the preset")
    p.add_argument("--steps", type=int, help="generator steps (overrides the preset)")
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", help="comma-separated seeds trained as ONE stacked model, each into its own folder "
                   "(--out with {seed}); see gan_lib.stacking")
    p.add_argument("--device", choices=CHOICES["device"])
    p.add_argument("--precision", choices=CHOICES["precision"])
    p.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable, e.g. --set n_critic=5 metrics=swd,kid")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--restart", action="store_true",
                   help="start over: move the folder's old run aside to <out>.old-<time> (nothing is deleted)")
    p.set_defaults(func=cmd_train)


def config_from_args(args):
    """The TrainConfig the arguments ask for: ``--config FILE`` (the one config hand-off, e.g. from the study
    runner) or ``--preset``, then the explicit options and ``--set`` pairs on top."""
    from .config import TrainConfig

    overrides = parse_overrides([kv for group in args.overrides for kv in group])
    for key in ("model", "dataset", "data_root", "steps", "seed", "device", "precision"):
        value = getattr(args, key, None)
        if value is None:
            continue
        if key in overrides and overrides[key] != value:  # the same setting asked for twice, differently
            raise ConfigError(f"--{key.replace('_', '-')} {value} and --set {key}={overrides[key]} disagree: "
                              "give it once")
        overrides[key] = value
    if getattr(args, "seeds", None) and ("seed" in overrides):
        raise ConfigError("--seeds lists the seeds to train; drop --seed / --set seed=")
    if getattr(args, "config", None):
        if getattr(args, "preset", None):
            raise ConfigError("--config replaces the preset: give --config or --preset, not both")
        try:
            base = TrainConfig.load(args.config).to_dict()
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read --config {args.config}: {e}") from None
        return TrainConfig.from_dict({**base, **overrides})
    return make_config(getattr(args, "preset", None) or "cpu", **overrides)


def parse_seeds(text: str) -> list[int]:
    """``--seeds "0,1,2"`` -> [0, 1, 2]: distinct integers, each a valid ``seed`` (`ConfigError` otherwise)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list distinct seeds, e.g. 0,1,2; got {text!r}")
    for seed in seeds:
        make_config("smoke", seed=seed)  # the config's own rule for a seed
    return seeds


def seed_runs(args, cfg) -> tuple[list, list[str]]:
    """(configs, run folders) for ``--seeds a,b,c`` (``--out`` must contain ``{seed}``), else for ``cfg`` alone."""
    if not args.out.strip():
        raise ConfigError("--out is empty: name the run folder, e.g. --out runs/igan")
    if not args.seeds:
        return [cfg], [args.out.replace("{seed}", str(cfg.seed))]
    seeds = parse_seeds(args.seeds)
    if len(seeds) > 1 and "{seed}" not in args.out:
        raise ConfigError(f"with several --seeds, --out must contain {{seed}} (one folder per seed), e.g. "
                          f"'{args.out.rstrip('/')}-s{{seed}}'")
    from .config import TrainConfig

    cfgs = [TrainConfig.from_dict({**cfg.to_dict(), "seed": s}) for s in seeds]
    return cfgs, [args.out.replace("{seed}", str(s)) for s in seeds]


def cmd_train(args) -> int:
    from .run_dir import RunDir
    from .train import train_seeds

    cfgs, outs = seed_runs(args, config_from_args(args))
    runs = [RunDir(out).check_path() for out in outs]
    source = f"config {args.config}" if args.config else f"{args.preset or 'cpu'} preset"
    for cfg, run in zip(cfgs, runs):
        verb = describe_start(run, cfg, args.restart)
        print(f"{verb} {cfg.model} seed {cfg.seed} ({source}: {cfg.image_size}px, width {cfg.width}, batch "
              f"{cfg.batch_size}, {cfg.steps} steps, {cfg.precision}) on {cfg.dataset} -> {run.path}", flush=True)
    if len(runs) > 1:
        print(f"{len(runs)} seeds stacked into one model", flush=True)
    note = heavy_note(cfgs[0])
    if note:
        print(note, flush=True)
    t0 = time.time()
    try:
        statuses = train_seeds(cfgs, [r.path for r in runs], progress=not args.no_progress, restart=args.restart)
    except KeyboardInterrupt:
        print("\n\n".join(summary(r.path, time.time() - t0) for r in runs))
        return EXIT_INTERRUPTED
    print("\n\n".join(summary(r.path, time.time() - t0) for r in runs))
    return 0 if all(st["state"] in ("completed", "diverged") for st in statuses) else 1


def heavy_note(cfg) -> str | None:
    """A line before a run that this machine will take very long over: the paper's shape on a CPU."""
    from .train import resolve_device

    if resolve_device(cfg.device).type == "cpu" and cfg.image_size == 64 and cfg.steps >= 10_000:
        return (f"note: {cfg.steps} steps at the paper's shape (64x64, width {cfg.width}) on a CPU take 15 hours to "
                "days (1-9 s a step on the 2-core CPUs of README 'Speed'); the cpu preset (--preset cpu) is the CPU "
                "study")
    return None


def describe_start(run, cfg, restart: bool = False) -> str:
    """How ``train`` will start on ``run`` ("training", "resuming (step N)", ...), checked before any work:
    `RunLocked` when another process trains it, `RunExists` when it holds another run without a checkpoint,
    `ConfigError` when the config cannot continue it (train checks all this again under the folder's lock)."""
    from .config import RESUMABLE_FIELDS
    from .run_dir import RunLocked
    from .train import check_resume_config, config_differences

    try:
        holder = run.lock_holder()
    except OSError:  # no flock on this filesystem: train() warns
        holder = None
    if holder is not None:
        raise RunLocked(run.path, holder)
    if restart:
        return "restarting (the old run is moved aside)" if run.run_files() else "training"
    mode = run.check_can_start(lambda saved: not config_differences(saved, cfg, ignore=RESUMABLE_FIELDS))
    if mode == "new":
        return "training"
    if run.config_path.exists():
        check_resume_config(run.load_config(), cfg)
    status = run.read_status()
    done = status.get("checkpoint_step")
    if done is not None and done > cfg.steps:
        raise ConfigError(f"{run.path} is at step {done}; steps={cfg.steps} cannot shorten it: ask for "
                          f"--steps {done} or more, or start over with --restart")
    if status.get("state") == "completed" and done == cfg.steps:
        return f"already completed at step {done}/{cfg.steps}, nothing to train:"
    return f"resuming (step {done})"


def summary(run_dir, wall_sec: float | None = None) -> str:
    """A one-screen summary of a run folder."""
    from .run_dir import RunDir

    run = RunDir(run_dir)
    st = run.read_status()
    lines = [f"run     {run.path}", f"status  {st.get('state')} at step {st.get('step')}/{st.get('steps')}"
             + (f" ({st['reason']})" if st.get("reason") else "")]
    sps = st.get("sec_per_step")
    if wall_sec is not None or sps:
        lines.append("time    " + (f"{_hms(wall_sec)} wall" if wall_sec is not None else "")
                     + (f", {sps:.3f} s/step ({1 / sps:.1f} steps/s)" if sps else "")
                     + f" on {st.get('device')}, {st.get('precision')}")
    best = st.get("best") or {}
    if best.get("metric"):
        lines.append(f"best    {best['metric']} = {best['value']:.4g} at step {best['step']} "
                     f"-> {run.checkpoint_path('best')}")
    evals = run.read_evals()
    if evals:
        last = evals[-1]
        vals = ", ".join(f"{k}={float(v):.4g}" for k, v in last.items() if k not in ("step", "eval_sec") and v)
        lines.append(f"eval    step {last['step']}: {vals}")
    n_rows = len(run.read_metrics())
    n_png = len(list(run.samples_dir.glob("*.png"))) if run.samples_dir.exists() else 0
    ckpts = [p.name for p in sorted(run.checkpoints_dir.glob("*.pt"))] if run.checkpoints_dir.exists() else []
    lines.append(f"files   config.json, metrics.csv ({n_rows} rows), evals.csv ({len(evals)} rows), "
                 f"samples/ ({n_png} png), checkpoints/ ({', '.join(ckpts) or 'none'})")
    if st.get("state") == "interrupted":
        lines.append("resume  run the same train command again")
    return "\n".join(lines)


def _hms(sec: float) -> str:
    sec = int(round(sec))
    return f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}"


# --- eval ---

def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run's best (or last) generator",
                       description="Evaluate a run folder's generator; prints the metrics and writes "
                                   "eval_<checkpoint>.json in the folder.")
    p.add_argument("run_dir")
    p.add_argument("--metrics", nargs="+", help="metric names (default: the run's config)")
    p.add_argument("--num-samples", type=int, help="generated images (default: the run's eval_num_samples)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="auto", choices=CHOICES["device"])
    p.add_argument("--data-root", help="data folder, when it moved since training")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from .config import MIN_EVAL_SAMPLES, check_metric_names
    from .run_dir import RunDir
    from .train import evaluate_run

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    metrics = [m for group in (args.metrics or []) for m in group.split(",") if m] or None
    if metrics:
        check_metric_names(metrics, "--metrics")
        from .metrics.evaluate import available_metrics

        available = available_metrics()
        missing = [m for m in metrics if not available[m]]
        if missing:  # asked for by name: an error (a run's own config only warns and leaves them out)
            raise ConfigError(f"--metrics {' '.join(missing)} needs pytorch-fid's Inception weights, not found: "
                              "fetch them with 'python -m gan_lib weights fetch' (see README, 'How to get FID'), "
                              "or use " + " ".join(f"{m}_randconv" for m in missing) + " (offline features)")
    if args.num_samples is not None and args.num_samples < MIN_EVAL_SAMPLES:
        raise ConfigError(f"--num-samples must be >= {MIN_EVAL_SAMPLES}, got {args.num_samples}")
    note = run_note(RunDir(run_dir))
    if note:
        print(note, flush=True)
    out = evaluate_run(run_dir, metrics=metrics, num_samples=args.num_samples, checkpoint=args.checkpoint,
                       device=args.device, data_root=args.data_root, progress=True)
    if out.get("num_samples_asked"):
        print(f"note: --num-samples {out['num_samples_asked']} is more than the {out['num_samples']} real images; "
              f"used {out['num_samples']}", flush=True)
    print(f"{run_dir}: {out['checkpoint']}.pt (step {out['step']}), {out['num_samples']} samples, "
          f"{out['eval_sec']:.1f} s")
    for k, v in out["metrics"].items():
        print(f"  {k:20s} {v:.6g}")
    print(f"-> {run_dir / ('eval_' + out['checkpoint'] + '.json')}")
    return 0


def run_note(run) -> str | None:
    """A line about a run that is not finished: still being trained, or crashed (status "running", nobody
    training it: stale)."""
    from .run_lock import describe_holder

    status = run.read_status()
    live = run.liveness(status)
    if live == "live":
        holder = run.lock_holder() or {"pid": status.get("pid"), "host": status.get("host")}
        return (f"note: {run.path} is still being trained by {describe_holder(holder)}; evaluating its "
                f"checkpoint of the moment")
    if live == "stale":
        return (f"note: {run.path} says 'running' (step {status.get('step')}) but no process trains it: it "
                f"crashed or was killed; run the same train command to resume it")
    return None


# --- reproduce ---

def add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="train the study and execute its notebooks (papermill + HTML)",
                       description=(
        "Run the study's notebooks (notebooks/0*.ipynb) with papermill into "
        "<results>/<preset>/<notebook>/<notebook>.ipynb and render HTML beside them. Each notebook's runs are "
        "trained first (finished runs are reused: running this again resumes the study). A failing notebook is "
        "recorded in <results>/<preset>/reproduce_status.json and the others go on; the exit code is 1 when "
        "any failed. Without --dataset/--data-root: CelebA when found, else the synthetic set (with a "
        "warning). The MNIST notebook is skipped when no MNIST is found."))
    p.add_argument("--preset", default="cpu", choices=list(PRESETS), help="config preset (default: cpu)")
    p.add_argument("--dataset", help="dataset of notebooks 01-03: celeba | synthetic | folder | mnist "
                                     "(default: celeba if found, else synthetic)")
    p.add_argument("--data-root", help="its folder (default: the dataset's usual places)")
    p.add_argument("--mnist-root", help="MNIST folder for 04 (default: $GAN_LIB_MNIST, ./data/MNIST, "
                                        "../shared/data/MNIST)")
    p.add_argument("--only", help="notebooks to run, by number or name, comma separated (e.g. 01,03)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel (default 1)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: cores // jobs when jobs > 1)")
    add_executor_args(p)
    p.add_argument("--runs-root", default="runs", help="run folders (default: runs)")
    p.add_argument("--results", default="results", help="executed notebooks, figures, tables (default: results)")
    p.add_argument("--steps", type=int, help="generator steps (default: the preset's; for quick checks)")
    p.add_argument("--eval-every", type=int, help="evaluation interval (default: the preset's)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the preset's, e.g. 0,1,2 for cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-train", action="store_true",
                   help="train nothing: render the notebooks from the runs already finished (a study in progress)")
    p.set_defaults(func=cmd_reproduce)


def add_executor_args(p) -> None:
    """--stack, --executor, --address, --cpus-per-run, --gpus-per-run (reproduce and scripts/train_experiment.py)."""
    p.add_argument("--stack", choices=("auto", "on", "off"), default="auto",
                   help="train each configuration's seeds as one stacked model (auto, the default: on a GPU only, "
                        "where it is faster; see gan_lib.study.stack_default)")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="where runs train: local subprocesses (default) or Ray tasks (pip install -e '.[ray]')")
    p.add_argument("--address", help="with --executor ray: the Ray cluster to join (HOST:PORT, auto, "
                                     "ray://HOST:10001); default: a local Ray instance of --jobs runs")
    p.add_argument("--cpus-per-run", type=float, default=1, help="with --executor ray: CPUs each run's task "
                                                                  "needs (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=0, help="with --executor ray: GPUs each run's task "
                                                                  "needs, a fraction shares a GPU (default 0)")


def check_executor_args(args) -> None:
    """`ConfigError` for Ray's options without ``--executor ray`` (they would be ignored)."""
    given = [flag for flag, value, default in (("--address", args.address, None), ("--cpus-per-run",
             args.cpus_per_run, 1), ("--gpus-per-run", args.gpus_per_run, 0)) if value != default]
    if args.executor != "ray" and given:
        raise ConfigError(f"{', '.join(given)}: for --executor ray only; add --executor ray, or drop "
                          + ("it" if len(given) == 1 else "them"))


def cmd_reproduce(args) -> int:
    from .reproduce import exit_code, reproduce, select_notebooks

    check_executor_args(args)

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    from .study import cpu_cores

    cores = cpu_cores()
    if args.executor == "local" and args.jobs > cores:
        print(f"note: --jobs {args.jobs} runs at a time on {cores} cores: each gets one thread and they share the "
              "cores", flush=True)
    os.environ["GAN_LIB_STACK"] = args.stack  # read by study.stack_default in the notebooks' kernels
    status = reproduce(args.preset, only=args.only, dataset=args.dataset, data_root=args.data_root,
                       mnist_root=args.mnist_root, jobs=args.jobs, threads=args.threads, runs_root=args.runs_root,
                       results=args.results, steps=args.steps, eval_every=args.eval_every, seeds=seeds,
                       progress=not args.no_progress, train=not args.no_train, executor=args.executor,
                       address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    return exit_code(status, select_notebooks(args.only))


# --- entry point ---

from .weights import add_weights  # noqa: E402  (weights fetch|check: FID's Inception weights)

SUBCOMMANDS = [add_train, add_eval, add_reproduce, add_weights]  # more subcommands: append an add_<name>(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gan_lib", description="Involution GAN reproduction.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """How the CLI shows a Python warning: ``warning: <message>``, one line (not the file, line and source)."""
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, message already printed)
        return int(e.code or 0)
    warnings.formatwarning = one_line_warning
    try:
        return report_user_errors(lambda: args.func(args))
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
