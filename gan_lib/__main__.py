"""Command line: ``python -m gan_lib {train,eval,reproduce} ...``.

    python -m gan_lib train --model igan --dataset celeba --data-root PATH --preset cpu --out runs/igan \\
        [--set key=value ...]
    python -m gan_lib eval runs/igan [--metrics swd kid] [--checkpoint best|last]
    python -m gan_lib reproduce [--preset smoke|cpu|paper] [--data-root PATH] [--only 01,03] [--jobs N]

A subcommand is a function ``add_<name>(subparsers)`` in ``SUBCOMMANDS`` that adds its parser and sets
``func`` (``args -> exit code``). Bad presets, models or keys exit with code 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import CHOICES, PRESETS, ConfigError, make_config, parse_overrides


# --- train ---

def add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) one GAN run", description=(
        "Train a GAN with WGAN-GP + TTUR into a run folder. An existing folder with checkpoints/last.pt is "
        "resumed. Any TrainConfig field can be set with --set key=value (lists: comma separated)."))
    p.add_argument("--model", choices=CHOICES["model"], help="GAN (default: igan)")
    p.add_argument("--dataset", help="celeba | mnist | folder | synthetic (default: celeba)")
    p.add_argument("--data-root", help="data folder (default: the dataset's usual places)")
    p.add_argument("--preset", default="cpu", choices=list(PRESETS), help="config preset (default: cpu)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, help="generator steps (overrides the preset)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=CHOICES["device"])
    p.add_argument("--precision", choices=CHOICES["precision"])
    p.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable, e.g. --set n_critic=5 metrics=swd,kid")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def config_from_args(args):
    overrides = parse_overrides([kv for group in args.overrides for kv in group])
    for key in ("model", "dataset", "data_root", "steps", "seed", "device", "precision"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    return make_config(args.preset, **overrides)


def cmd_train(args) -> int:
    from .run_dir import RunDir
    from .train import check_resume_config, train

    cfg = config_from_args(args)
    run = RunDir(args.out)
    verb = "training"
    if run.has_checkpoint("last") and run.config_path.exists():
        check_resume_config(run.load_config(), cfg)
        verb = f"resuming (step {run.read_status().get('checkpoint_step')})"
    print(f"{verb} {cfg.model} ({args.preset} preset: {cfg.image_size}px, width {cfg.width}, batch "
          f"{cfg.batch_size}, {cfg.steps} steps, {cfg.precision}) on {cfg.dataset} -> {run.path}", flush=True)
    t0 = time.time()
    try:
        status = train(cfg, run.path, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(summary(run.path, time.time() - t0))
        return 130
    print(summary(run.path, time.time() - t0))
    return 0 if status["state"] in ("completed", "diverged") else 1


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
    from .train import evaluate_run

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    metrics = [m for group in (args.metrics or []) for m in group.split(",") if m] or None
    out = evaluate_run(run_dir, metrics=metrics, num_samples=args.num_samples, checkpoint=args.checkpoint,
                       device=args.device, data_root=args.data_root, progress=True)
    print(f"{run_dir}: {out['checkpoint']}.pt (step {out['step']}), {out['num_samples']} samples, "
          f"{out['eval_sec']:.1f} s")
    for k, v in out["metrics"].items():
        print(f"  {k:20s} {v:.6g}")
    print(f"-> {run_dir / ('eval_' + out['checkpoint'] + '.json')}")
    return 0


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
    p.add_argument("--runs-root", default="runs", help="run folders (default: runs)")
    p.add_argument("--results", default="results", help="executed notebooks, figures, tables (default: results)")
    p.add_argument("--steps", type=int, help="generator steps (default: the preset's; for quick checks)")
    p.add_argument("--eval-every", type=int, help="evaluation interval (default: the preset's)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the preset's, e.g. 0,1,2 for cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-train", action="store_true",
                   help="train nothing: render the notebooks from the runs already finished (a study in progress)")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from .reproduce import exit_code, reproduce, select_notebooks

    seeds = None
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    status = reproduce(args.preset, only=args.only, dataset=args.dataset, data_root=args.data_root,
                       mnist_root=args.mnist_root, jobs=args.jobs, threads=args.threads, runs_root=args.runs_root,
                       results=args.results, steps=args.steps, eval_every=args.eval_every, seeds=seeds,
                       progress=not args.no_progress, train=not args.no_train)
    return exit_code(status, select_notebooks(args.only))


# --- entry point ---

SUBCOMMANDS = [add_train, add_eval, add_reproduce]  # more subcommands: append an add_<name>(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gan_lib", description="Involution GAN reproduction.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, message already printed)
        return int(e.code or 0)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
