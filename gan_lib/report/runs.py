"""Run folders -> DataFrames: one row per run, the stacked per-step and per-evaluation logs, and picking runs.

Input everywhere: a list of runs, each an outcome dict from `study.run_all` (keys ``label``, ``seed``,
``path``, ``state``, ...), a run folder path, or a `RunDir`. A run folder is named ``<label>-s<seed>``.
Every file of a run folder is read through `gan_lib.run_dir.RunDir` (the one reader of those files).

Metrics are "lower is better" (FID, KID, SWD). Runs without evaluations (failed early) keep NaN values.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..run_dir import METRIC_COLUMNS, RunDir

__all__ = ["HEADLINE_METRICS", "GP_HIGH", "GP_HIGH_WINDOW", "CONFIG_COLUMNS", "NON_METRIC_EVAL_COLUMNS",
           "SKIP_TIMING_ROWS", "run_entries", "run_config", "outcome_text", "measured_sec_per_step", "load_runs",
           "load_metrics", "load_evals", "metric_columns", "headline_metrics", "primary_metric", "sustained_above",
           "summarize_runs", "pick", "first_seed", "check_evaluated"]

# Headline metrics in the order they are preferred: FID / KID on the Inception features when its weights exist;
# else SWD (Karras et al. 2018, on the images' Laplacian pyramid: needs no network), and only then the KID / FID
# on gan_lib's random-conv features, an untrained offline stand-in whose KID does not separate the GANs of the
# cpu study (all its intervals contain 0, results/README.md).
HEADLINE_METRICS = ("fid", "kid", "swd", "kid_randconv", "fid_randconv")
# A run whose gradient penalty (before lambda) stays above GP_HIGH for GP_HIGH_WINDOW consecutive steps has lost
# its 1-Lipschitz critic (GP 10 = a gradient norm of ~4.2; in the cpu study no run that trained normally passed 3.2):
# reported as "GP high from step N", a collapse the training-time divergence rule (GP > 100 for a window,
# TrainConfig.gp_explode_*) lets finish. Analysis only: it does not change how runs are trained.
GP_HIGH, GP_HIGH_WINDOW = 10.0, 100
CONFIG_COLUMNS = ("model", "dataset", "split", "image_size", "width", "num_blocks", "kernel_size", "groups",
                  "reduction_ratio", "kernel_norm", "kernel_clip", "batch_size", "steps", "precision")
NON_METRIC_EVAL_COLUMNS = ("step", "eval_sec")
SKIP_TIMING_ROWS = 10  # metrics.csv rows left out of the sec/step median (start-up, first evaluation)


def run_config(run: RunDir) -> dict:
    """config.json of a run folder, or {} when it has none (a run that failed before writing it)."""
    return run.load_config() if run.config_path.exists() else {}


def _frame(rows: list[dict]) -> pd.DataFrame:
    """`RunDir`'s CSV rows (dicts of strings) as a numeric DataFrame (unparseable cells: NaN)."""
    return pd.DataFrame(rows).apply(pd.to_numeric, errors="coerce") if rows else pd.DataFrame()


def _run_entry(run) -> dict:
    """An outcome dict / path / RunDir -> dict(label, seed, name, path, state?, reason?, step?)."""
    if isinstance(run, dict):
        if "path" not in run:
            raise ValueError(f"run outcome {run!r} has no 'path'")
        entry = dict(run)
        entry["path"] = Path(run["path"])
    else:
        path = Path(run.path if isinstance(run, RunDir) else run)
        if not path.is_dir():
            raise FileNotFoundError(f"run folder {path} does not exist")
        entry = {"path": path}
    path = entry["path"]
    name = entry.get("name") or path.name
    entry["name"] = name
    if "label" not in entry:
        entry["label"] = re.sub(r"-s\d+$", "", name)
    if entry.get("seed") is None:
        m = re.search(r"-s(\d+)$", name)
        entry["seed"] = run_config(RunDir(path)).get("seed", int(m.group(1)) if m else 0)
    return entry


def run_entries(runs) -> list[dict]:
    """Normalise ``runs`` (outcome dicts, paths or RunDirs) to dicts with label, seed, name and path."""
    if isinstance(runs, (str, Path, RunDir, dict)):
        runs = [runs]
    return [_run_entry(r) for r in runs]


def outcome_text(state: str | None, step, steps=None, reason: str | None = None) -> str:
    """'completed', 'diverged at step N (reason)', 'failed: reason', ... for one run."""
    state = state or "missing"
    if state == "completed":
        return "completed"
    if state == "diverged":
        return f"diverged at step {step}" + (f" ({reason})" if reason else "")
    if state == "failed":
        return "failed" + (f": {reason}" if reason else "")
    if state in ("running", "interrupted"):
        return f"{state} at step {step}" + (f"/{steps}" if steps else "")
    return state


def measured_sec_per_step(metrics: pd.DataFrame, skip: int = SKIP_TIMING_ROWS) -> float:
    """Median of metrics.csv's ``sec_per_step`` leaving out the first ``skip`` rows (at most half of them)."""
    if metrics is None or "sec_per_step" not in metrics or not len(metrics):
        return float("nan")
    values = pd.to_numeric(metrics["sec_per_step"], errors="coerce").to_numpy()
    values = values[min(skip, len(values) // 2):]
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


def load_runs(runs, skip_timing_rows: int = SKIP_TIMING_ROWS) -> pd.DataFrame:
    """One row per run: label, seed, name, path, state, step, steps, reason, outcome, sec_per_step (median of
    metrics.csv), best_metric/best_value/best_step, device and precision_used (status.json) and the config
    columns (`CONFIG_COLUMNS`; their ``precision`` is the one asked for, e.g. "auto")."""
    rows = []
    for e in run_entries(runs):
        run = RunDir(e["path"])
        status, cfg = run.read_status(), run_config(run)
        state = status.get("state") or e.get("state") or "missing"
        if e.get("state") == "failed":  # the runner's verdict (e.g. a crash after status said 'running')
            state = "failed"
        step = status.get("step", e.get("step"))
        reason = status.get("reason") or e.get("reason")
        best = status.get("best") or {}
        row = dict(label=e["label"], seed=e["seed"], name=e["name"], path=str(e["path"]), state=state, step=step,
                   steps=status.get("steps", cfg.get("steps")), reason=reason,
                   outcome=outcome_text(state, step, status.get("steps"), reason),
                   sec_per_step=measured_sec_per_step(_frame(run.read_metrics()), skip_timing_rows),
                   best_metric=best.get("metric"), best_value=best.get("value"), best_step=best.get("step"),
                   device=status.get("device"), precision_used=status.get("precision"))
        row.update({k: cfg.get(k) for k in CONFIG_COLUMNS if k != "steps"})
        rows.append(row)
    return pd.DataFrame(rows)


def _stacked(runs, reader) -> pd.DataFrame:
    frames = []
    for e in run_entries(runs):
        df = _frame(reader(RunDir(e["path"])))
        if len(df):
            df.insert(0, "name", e["name"])
            df.insert(0, "seed", e["seed"])
            df.insert(0, "label", e["label"])
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label", "seed", "name", "step"])


def load_metrics(runs) -> pd.DataFrame:
    """metrics.csv of every run, stacked: label, seed, name, step, loss_d, loss_g, gp, emd, lr_g, lr_d,
    sec_per_step (one row per run and generator step)."""
    df = _stacked(runs, RunDir.read_metrics)
    for c in METRIC_COLUMNS:
        if c not in df:
            df[c] = np.nan
    return df


def load_evals(runs) -> pd.DataFrame:
    """evals.csv of every run, stacked: label, seed, name, step, eval_sec, one column per metric."""
    return _stacked(runs, RunDir.read_evals)


def metric_columns(evals: pd.DataFrame) -> list[str]:
    """The metric columns of a (stacked) evals table: not step/eval_sec, not a KID ``*_std``."""
    skip = {"label", "seed", "name", *NON_METRIC_EVAL_COLUMNS}
    return [c for c in evals.columns if c not in skip and not c.endswith("_std")]


def headline_metrics(evals: pd.DataFrame) -> list[str]:
    """The `HEADLINE_METRICS` present with at least one finite value (e.g. ``["kid_randconv", "swd"]``)."""
    return [m for m in HEADLINE_METRICS if m in evals and np.isfinite(pd.to_numeric(evals[m])).any()]


def primary_metric(evals: pd.DataFrame) -> str:
    """The first headline metric present (FID if evaluated, else KID, else SWD, else the random-conv ones)."""
    found = headline_metrics(evals)
    if not found:
        raise ValueError(f"no evaluated metric in these runs (evals columns: {list(evals.columns)}); did every "
                         f"run fail before its first evaluation?")
    return found[0]


def sustained_above(steps, values, threshold: float, window: int) -> float:
    """The first step from which ``values`` stay above ``threshold`` for ``window`` consecutive rows (a NaN
    breaks the streak); NaN when they never do."""
    above = (pd.to_numeric(pd.Series(values), errors="coerce") > threshold).to_numpy()
    steps = pd.Series(steps).to_numpy()
    streak = 0
    for i, hit in enumerate(above):
        streak = streak + 1 if hit else 0
        if streak >= window:
            return float(steps[i - window + 1])
    return np.nan


def summarize_runs(runs, metrics: list[str] | None = None, skip_timing_rows: int = SKIP_TIMING_ROWS) -> pd.DataFrame:
    """One row per run: label, seed, state, step, outcome, sec_per_step, device and precision (as the run
    resolved them: a study may mix machines), ``<m>_best``, ``<m>_best_step``,
    ``<m>_final``, ``<m>_final_step`` for each metric (all metric columns by default), and ``gp_max``, ``gp_final``,
    ``gp_high_step`` (`GP_HIGH`: the step from which the GP stayed high, NaN if never), ``emd_final`` from
    metrics.csv.

    ``<m>_best`` is the minimum over the run's evaluations (the paper's min(FID)): a selected statistic, biased
    low against the value a run ends with; ``<m>_final`` is its last evaluation (for a run that stopped early, e.g.
    diverged, the last one before it stopped: ``<m>_final_step`` says where)."""
    entries = run_entries(runs)
    table = load_runs(entries, skip_timing_rows)
    evals, steps = load_evals(entries), load_metrics(entries)
    metrics = list(metrics) if metrics is not None else metric_columns(evals)
    rows = []
    for e, base in zip(entries, table.to_dict("records")):
        row = {k: base[k] for k in ("label", "seed", "name", "state", "step", "steps", "outcome", "sec_per_step",
                                    "device")}
        row["precision"] = base.get("precision_used") or base.get("precision")  # resolved ("auto" -> bf16/fp32)
        ev = evals[evals["name"] == e["name"]] if len(evals) else evals
        for m in metrics:
            vals = pd.to_numeric(ev[m], errors="coerce") if m in ev else pd.Series(dtype=float)
            ok = vals[np.isfinite(vals)]
            row[f"{m}_best"] = float(ok.min()) if len(ok) else np.nan
            row[f"{m}_best_step"] = int(ev.loc[ok.idxmin(), "step"]) if len(ok) else np.nan
            row[f"{m}_final"] = float(ok.iloc[-1]) if len(ok) else np.nan
            row[f"{m}_final_step"] = int(ev.loc[ok.index[-1], "step"]) if len(ok) else np.nan
        st = steps[steps["name"] == e["name"]] if len(steps) else steps
        gp = pd.to_numeric(st["gp"], errors="coerce") if len(st) else pd.Series(dtype=float)
        gp_ok = gp[np.isfinite(gp)]
        row["gp_max"] = float(gp_ok.max()) if len(gp_ok) else np.nan
        row["gp_final"] = float(gp_ok.iloc[-1]) if len(gp_ok) else np.nan
        row["gp_high_step"] = sustained_above(st["step"], gp, GP_HIGH, GP_HIGH_WINDOW) if len(st) else np.nan
        emd = pd.to_numeric(st["emd"], errors="coerce") if len(st) else pd.Series(dtype=float)
        emd_ok = emd[np.isfinite(emd)]
        row["emd_final"] = float(emd_ok.iloc[-1]) if len(emd_ok) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def pick(runs, label: str, seed: int | None = None, missing_ok: bool = False) -> dict | None:
    """The run of ``label`` (the lowest seed unless ``seed``); KeyError naming the labels present, or None
    with ``missing_ok`` (a study rendered before that run finished: the figure functions then say so)."""
    entries = [e for e in run_entries(runs) if e["label"] == label and (seed is None or e["seed"] == seed)]
    if not entries and missing_ok:
        return None
    if not entries:
        have = sorted({e["label"] for e in run_entries(runs)})
        raise KeyError(f"no run with label {label!r}" + (f" and seed {seed}" if seed is not None else "")
                       + f"; labels present: {have}")
    return min(entries, key=lambda e: e["seed"])


def first_seed(runs) -> list[dict]:
    """One run per label (its lowest seed), in first-appearance order."""
    entries = run_entries(runs)
    return [pick(entries, label) for label in dict.fromkeys(e["label"] for e in entries)]


def check_evaluated(runs) -> None:
    """Raise RuntimeError listing each run's outcome when no run has any evaluation to report."""
    table = load_runs(runs)
    if not len(table):
        raise RuntimeError("no finished run to report: train the runs first (train=True), or point runs_root at "
                           "the folder that holds them")
    if not len(load_evals(runs)):
        lines = "\n".join(f"  {r.name}: {r.outcome}" for r in table.itertuples())
        raise RuntimeError(f"no run has an evaluation; nothing to report:\n{lines}")
