"""Run folders -> tables (pandas DataFrames), aggregated over seeds, and written as CSV + Markdown.

Input everywhere: a list of runs, each an outcome dict from `study.run_all` (keys ``label``, ``seed``,
``path``, ``state``, ...), a run folder path, or a `RunDir`. A run folder is named ``<label>-s<seed>``.

* `load_runs`: one row per run: label, seed, state, outcome text, measured sec/step, best metric, config.
* `load_metrics` / `load_evals`: metrics.csv / evals.csv of every run, stacked (long format).
* `summarize_runs`: one row per run: best (min over evaluations) and final value of each metric, GP.
* `aggregate`: one row per configuration label: mean, sd, n and a 95% t-interval over seeds.
* `table2`: the paper's Table 2 rebuilt from the seven involution cases (Experiment 2).
* `save_table`: CSV and Markdown (a small Markdown writer; no ``tabulate`` needed).
* ``describe_*``: a few sentences on what a table says (computed from it, for the notebooks).

Metrics are "lower is better" (FID, KID, SWD). Runs without evaluations (failed early) keep NaN values.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .run_dir import METRIC_COLUMNS, RunDir

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


# --- runs ---

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
        cfg = _read_json(path / "config.json")
        m = re.search(r"-s(\d+)$", name)
        entry["seed"] = cfg.get("seed", int(m.group(1)) if m else 0)
    return entry


def run_entries(runs) -> list[dict]:
    """Normalise ``runs`` (outcome dicts, paths or RunDirs) to dicts with label, seed, name and path."""
    if isinstance(runs, (str, Path, RunDir, dict)):
        runs = [runs]
    return [_run_entry(r) for r in runs]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


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


def _csv(path: Path) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    df = pd.read_csv(path)
    return df.apply(pd.to_numeric, errors="coerce")


def load_runs(runs, skip_timing_rows: int = SKIP_TIMING_ROWS) -> pd.DataFrame:
    """One row per run: label, seed, name, path, state, step, steps, reason, outcome, sec_per_step (median of
    metrics.csv), best_metric/best_value/best_step, device and precision_used (status.json) and the config
    columns (`CONFIG_COLUMNS`; their ``precision`` is the one asked for, e.g. "auto")."""
    rows = []
    for e in run_entries(runs):
        run = RunDir(e["path"])
        status, cfg = _read_json(run.status_path), _read_json(run.config_path)
        state = status.get("state") or e.get("state") or "missing"
        if e.get("state") == "failed":  # the runner's verdict (e.g. a crash after status said 'running')
            state = "failed"
        step = status.get("step", e.get("step"))
        reason = status.get("reason") or e.get("reason")
        best = status.get("best") or {}
        row = dict(label=e["label"], seed=e["seed"], name=e["name"], path=str(e["path"]), state=state, step=step,
                   steps=status.get("steps", cfg.get("steps")), reason=reason,
                   outcome=outcome_text(state, step, status.get("steps"), reason),
                   sec_per_step=measured_sec_per_step(_csv(run.metrics_path), skip_timing_rows),
                   best_metric=best.get("metric"), best_value=best.get("value"), best_step=best.get("step"),
                   device=status.get("device"), precision_used=status.get("precision"))
        row.update({k: cfg.get(k) for k in CONFIG_COLUMNS if k != "steps"})
        rows.append(row)
    return pd.DataFrame(rows)


def _stacked(runs, reader) -> pd.DataFrame:
    frames = []
    for e in run_entries(runs):
        df = reader(RunDir(e["path"]))
        if len(df):
            df.insert(0, "name", e["name"])
            df.insert(0, "seed", e["seed"])
            df.insert(0, "label", e["label"])
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label", "seed", "name", "step"])


def load_metrics(runs) -> pd.DataFrame:
    """metrics.csv of every run, stacked: label, seed, name, step, loss_d, loss_g, gp, emd, lr_g, lr_d,
    sec_per_step (one row per run and generator step)."""
    df = _stacked(runs, lambda r: _csv(r.metrics_path))
    for c in METRIC_COLUMNS:
        if c not in df:
            df[c] = np.nan
    return df


def load_evals(runs) -> pd.DataFrame:
    """evals.csv of every run, stacked: label, seed, name, step, eval_sec, one column per metric."""
    return _stacked(runs, lambda r: _csv(r.evals_path))


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


# --- per run and per configuration ---

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
    ``<m>_final`` for each metric (all metric columns by default), and ``gp_max``, ``gp_final``,
    ``gp_high_step`` (`GP_HIGH`: the step from which the GP stayed high, NaN if never), ``emd_final`` from
    metrics.csv."""
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


def _finite(values) -> np.ndarray:
    """The finite entries of ``values`` (any array-like), as a flat float array."""
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def t_interval(values, confidence: float = 0.95) -> dict:
    """mean, sd (n-1), n and the two-sided ``confidence`` t-interval of the finite ``values``.

    sd and the interval are NaN for n < 2 (one seed says nothing about the spread)."""
    from scipy import stats

    x = _finite(values)
    n = len(x)
    if n == 0:
        return dict(mean=np.nan, sd=np.nan, n=0, ci_low=np.nan, ci_high=np.nan)
    mean = float(x.mean())
    if n < 2:
        return dict(mean=mean, sd=np.nan, n=1, ci_low=np.nan, ci_high=np.nan)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return dict(mean=mean, sd=sd, n=n, ci_low=mean - half, ci_high=mean + half)


def outcome_summary(states, steps=None) -> str:
    """'3/3 completed' or '1/3 completed, 2/3 diverged (steps 350, 420)' for one configuration."""
    states = list(states)
    steps = list(steps) if steps is not None else [None] * len(states)
    n, parts = len(states), []
    for state in dict.fromkeys(states):
        k = sum(s == state for s in states)
        part = f"{k}/{n} {state}"
        if state in ("diverged", "failed", "interrupted", "running"):
            at = [str(int(st)) for s, st in zip(states, steps) if s == state and st is not None and st == st]
            if at:
                part += f" (step{'s' if len(at) > 1 else ''} {', '.join(at)})"
        parts.append(part)
    return ", ".join(parts)


def aggregate(summary: pd.DataFrame, metrics: list[str] | None = None, by: str = "label",
              confidence: float = 0.95) -> pd.DataFrame:
    """Per configuration (``by``; first-appearance order): n runs, outcome, and for each metric ``m``
    ``m_best_{mean,sd,n,ci_low,ci_high}`` (best = min over a run's evaluations) and ``m_final_{mean,sd}``;
    ``sec_per_step_{mean,sd}`` (NaN when the runs trained on different devices or precisions) and ``devices``
    (e.g. "cuda bf16 x2, cpu fp32 x1"). ``summary`` is `summarize_runs`'s table; ``metrics`` default: those
    present."""
    if metrics is None:
        metrics = [c[:-5] for c in summary.columns if c.endswith("_best")]
    rows = []
    for key in pd.unique(summary[by]):
        g = summary[summary[by] == key]
        row = {by: key, "n": len(g), "outcome": outcome_summary(g["state"], g["step"])}
        for m in metrics:
            best = t_interval(g.get(f"{m}_best", pd.Series(dtype=float)), confidence)
            for k in ("mean", "sd", "n", "ci_low", "ci_high"):
                row[f"{m}_best_{k}"] = best[k]
            final = t_interval(g.get(f"{m}_final", pd.Series(dtype=float)), confidence)
            row[f"{m}_final_mean"], row[f"{m}_final_sd"] = final["mean"], final["sd"]
        sps = t_interval(g["sec_per_step"], confidence)
        row["sec_per_step_mean"], row["sec_per_step_sd"] = sps["mean"], sps["sd"]
        if "device" in g:
            used = g["device"].fillna("?").astype(str) + " " + g.get("precision", pd.Series("", g.index)).fillna("")
            counts = used.str.strip().value_counts(sort=False)
            row["devices"] = ", ".join(f"{d} x{n}" for d, n in counts.items())
            if len(counts) > 1:  # seconds on different machines do not average
                row["sec_per_step_mean"] = row["sec_per_step_sd"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def mean_sd(mean, sd, digits: int = 4) -> str:
    """'12.35 ± 1.2' (sd NaN: just the mean; mean NaN: '')."""
    if mean is None or not np.isfinite(mean):
        return ""
    text = f"{mean:.{digits}g}"
    return text + (f" ± {sd:.2g}" if sd is not None and np.isfinite(sd) else "")


# --- Table 2 ---

def table2(runs, costs: pd.DataFrame | None = None, metrics: list[str] | None = None) -> pd.DataFrame:
    """The paper's Table 2 rebuilt: one row per (K, G, R) case of `study.TABLE2`.

    Columns: case, K, G, R, label, n, outcome; per metric ``m`` (headline metrics present; FID when
    evaluated) ``m_best_mean``, ``m_best_sd`` and the text ``m_best`` ('mean ± sd'); ``C_run`` (the run's
    involution channels = width); ``eq4_params_C_run`` / ``eq4_params_C64`` (eq. 4; when C is not divisible by
    R*G the formula's real value (C/G + K^2) * C/R); ``true_params_C_run`` / ``true_params_C64``
    (count_parameters of the generator's Involution2d); ``paper_params`` and ``paper_params_flag`` (True where
    the printed count disagrees with eq. (4) at C=64: case 6 prints 644, eq. (4) gives 544) and
    ``paper_params_note``; ``paper_min_fid``, ``paper_sec_per_step``; ``sec_per_step`` (ours: median of
    metrics.csv, mean over seeds); both times relative to case 1; with ``costs`` (`cost.cost_table`, indexed
    by label) ``cost_sec_per_step`` and ``peak_rss_mb`` measured side by side.
    """
    from .config import TrainConfig, make_config
    from .cost import involution_layer_params
    from .layers import paper_param_count
    from .study import TABLE2, igan_label

    entries = run_entries(runs)
    summary = summarize_runs(entries)
    evals = load_evals(entries)
    metrics = list(metrics) if metrics is not None else headline_metrics(evals)
    agg = aggregate(summary, metrics) if len(summary) else pd.DataFrame(columns=["label"])
    configs = {}  # label -> the config.json of its first run that has one
    for e in entries:
        cfg = _read_json(Path(e["path"]) / "config.json")
        if cfg:
            configs.setdefault(e["label"], cfg)
    rows = []
    for case in TABLE2:
        K, G, R = case["K"], case["G"], case["R"]
        label = igan_label(K, G, R)
        cfg_dict = configs.get(label)
        a = agg[agg["label"] == label]
        a = a.iloc[0].to_dict() if len(a) else {}
        row = dict(case=case["case"], K=K, G=G, R=R, label=label, n=a.get("n", 0), outcome=a.get("outcome", "not run"),
                   devices=a.get("devices", ""))
        for m in metrics:
            mu, sd = a.get(f"{m}_best_mean", np.nan), a.get(f"{m}_best_sd", np.nan)
            row[f"{m}_best_mean"], row[f"{m}_best_sd"], row[f"{m}_best"] = mu, sd, mean_sd(mu, sd)
        cfg = TrainConfig.from_dict(cfg_dict) if cfg_dict else None
        c_run = cfg.width if cfg else np.nan
        row["C_run"] = c_run
        row["eq4_params_C_run"] = eq4_params(c_run, K, G, R) if cfg else np.nan
        eq4_64 = paper_param_count(64, K, G, R)
        row["eq4_params_C64"] = eq4_64
        base = cfg or make_config("paper", model="igan", kernel_size=K, groups=G, reduction_ratio=R)
        row["true_params_C_run"] = involution_layer_params(cfg) if cfg else np.nan
        row["true_params_C64"] = involution_layer_params(base, width=64)
        row["paper_params"] = case["paper_params"]
        row["paper_params_flag"] = case["paper_params"] != eq4_64
        row["paper_params_note"] = (f"printed {case['paper_params']}, eq. (4) gives {eq4_64}"
                                    if row["paper_params_flag"] else "")
        row["paper_min_fid"] = case["paper_fid"]
        row["paper_sec_per_step"] = case["paper_sec_per_step"]
        row["sec_per_step"] = a.get("sec_per_step_mean", np.nan)
        if costs is not None and label in set(costs.get("label", [])):
            c = costs[costs["label"] == label].iloc[0]
            row["cost_sec_per_step"] = c["sec_per_step"]
            row["peak_rss_mb"] = c["peak_rss_mb"]
        rows.append(row)
    df = pd.DataFrame(rows)
    first = df.iloc[0]
    df["paper_time_rel_case1"] = df["paper_sec_per_step"] / first["paper_sec_per_step"]
    df["time_rel_case1"] = df["sec_per_step"] / first["sec_per_step"]
    if "cost_sec_per_step" in df:
        df["cost_time_rel_case1"] = df["cost_sec_per_step"] / first["cost_sec_per_step"]
    return df


def eq4_params(C, K: int, G: int, R: int) -> float:
    """Eq. (4) at channels C: `layers.paper_param_count` when C is divisible by G and R*G, else the formula's
    real value (C/G + K*K) * C/(R*G) * G (small smoke widths)."""
    from .layers import paper_param_count

    try:
        return float(paper_param_count(int(C), K, G, R))
    except ValueError:
        return (C / G + K * K) * C / (R * G) * G


# --- writing ---

def _cell(v, floatfmt: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "" if v is None or np.isnan(v) else str(v)
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, (float, np.floating)):
        return floatfmt.format(float(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, floatfmt: str = "{:.4g}", index: bool = False) -> str:
    """A GitHub Markdown table of ``df``: numbers right-aligned, floats as ``floatfmt``, NaN empty,
    booleans 'yes'/'' (a flag column), '|' escaped."""
    if index:
        df = df.reset_index()
    cols = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
             "| " + " | ".join("---:" if num else "---" for num in numeric) + " |"]
    for rec in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, floatfmt) for v in rec) + " |")
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, out_dir: str | Path, name: str, floatfmt: str = "{:.4g}") -> dict:
    """Write ``<out_dir>/<name>.csv`` and ``<name>.md``; returns ``{"csv": path, "md": path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md"}
    df.to_csv(paths["csv"], index=False)
    paths["md"].write_text(to_markdown(df, floatfmt))
    return paths


def output_dir(out_dir: str | Path | None, preset: str, notebook: str) -> Path:
    """``out_dir`` or ``results/<preset>/<notebook>`` (created); a relative path is relative to the
    repository root (`study.repo_path`)."""
    from .study import repo_path

    out = repo_path(out_dir if out_dir else Path("results") / preset / notebook)
    out.mkdir(parents=True, exist_ok=True)
    return out


# --- picking runs ---

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
    if not len(load_evals(runs)):
        lines = "\n".join(f"  {r.name}: {r.outcome}" for r in table.itertuples())
        raise RuntimeError(f"no run has an evaluation; nothing to report:\n{lines}")


# --- what the numbers say ---

def _fmt(v, digits=4) -> str:
    return f"{v:.{digits}g}" if v is not None and np.isfinite(v) else "n/a"


def describe_ranking(agg: pd.DataFrame, metric: str, by: str = "label") -> str:
    """Markdown: configurations ranked by mean best ``metric``, with whether the 95% CIs of the first two
    overlap (lower is better)."""
    col = f"{metric}_best_mean"
    if col not in agg or not np.isfinite(agg[col]).any():
        return f"No finite best {metric} to rank."
    ranked = agg[np.isfinite(agg[col])].sort_values(col)
    parts = [f"{r[by]} {mean_sd(r[col], r[f'{metric}_best_sd'])}" for _, r in ranked.iterrows()]
    text = [f"Ranked by best {metric} (lower is better; mean ± sd over seeds): " + " < ".join(parts) + "."]
    if len(ranked) >= 2:
        a, b = ranked.iloc[0], ranked.iloc[1]
        if np.isfinite(a[f"{metric}_best_ci_high"]) and np.isfinite(b[f"{metric}_best_ci_low"]):
            overlap = a[f"{metric}_best_ci_high"] >= b[f"{metric}_best_ci_low"]
            text.append(f"The 95% intervals of {a[by]} [{_fmt(a[f'{metric}_best_ci_low'])}, "
                        f"{_fmt(a[f'{metric}_best_ci_high'])}] and {b[by]} [{_fmt(b[f'{metric}_best_ci_low'])}, "
                        f"{_fmt(b[f'{metric}_best_ci_high'])}] "
                        + ("overlap: the difference is not significant at this number of seeds."
                           if overlap else "do not overlap."))
        else:
            text.append("One seed per configuration: no interval, so the order is not tested.")
    not_done = agg[~agg["outcome"].str.fullmatch(r"\d+/\d+ completed")]
    for _, r in not_done.iterrows():
        text.append(f"{r[by]}: {r['outcome']}.")
    return " ".join(text)


def describe_comparison(agg: pd.DataFrame, metric: str, costs: pd.DataFrame | None = None,
                        igan: str = "igan-k3g4r2") -> str:
    """Experiment 1 / MNIST: the ranking, where iGAN lands (the paper: first by FID), and its cost."""
    text = [describe_ranking(agg, metric)]
    col = f"{metric}_best_mean"
    ok = agg[np.isfinite(agg[col])].sort_values(col) if col in agg else agg.iloc[0:0]
    if igan in set(ok["label"]):
        rank = list(ok["label"]).index(igan) + 1
        text.append(f"The paper ranks iGAN first by min(FID); here it ranks {rank} of {len(ok)} by best {metric}"
                    + (" (agrees)." if rank == 1 else " (does not agree)."))
    if costs is not None and len(costs):
        parts = [f"{r.label} {_fmt(r.sec_per_step, 3)} s/step, {_fmt(r.peak_rss_mb, 4)} MB peak, "
                 f"{int(r.params_G):,} + {int(r.params_D):,} parameters (G + D)" for r in costs.itertuples()]
        text.append("Cost, measured side by side: " + "; ".join(parts) + ".")
    return " ".join(text)


def describe_table2(t2: pd.DataFrame, metric: str) -> str:
    """Experiment 2: best case, rank agreement with the paper's min(FID) (Spearman), time vs eq. (4) count."""
    from scipy import stats

    col = f"{metric}_best_mean"
    ok = t2[np.isfinite(t2[col])] if col in t2 else t2.iloc[0:0]
    text = []
    if len(ok):
        best = ok.sort_values(col).iloc[0]
        text.append(f"Lowest best {metric}: case {int(best['case'])} (K={best['K']}, G={best['G']}, R={best['R']}) "
                    f"{best[f'{metric}_best']}; the paper's best is case 1 (min FID 61.51).")
    if len(ok) >= 3:
        rho, p = stats.spearmanr(ok[col], ok["paper_min_fid"])
        text.append(f"Rank agreement with the paper's min(FID) over {len(ok)} cases: Spearman rho = {rho:.2f} "
                    f"(p = {p:.2g}).")
    time_col = "cost_sec_per_step" if "cost_sec_per_step" in t2 else "sec_per_step"
    tt = t2[np.isfinite(t2[time_col])]
    if len(tt) >= 3:
        rho, _ = stats.spearmanr(tt["K"], tt[time_col])
        rho_p, _ = stats.spearmanr(tt["K"], tt["paper_sec_per_step"])
        text.append(f"Time per step vs kernel size K: Spearman rho = {rho:.2f} here, {rho_p:.2f} in the paper "
                    f"(larger K costs more computation).")
    flagged = t2[t2["paper_params_flag"]]
    for _, r in flagged.iterrows():
        text.append(f"Case {int(r['case'])}: the paper's #parameters disagrees with its eq. (4) "
                    f"({r['paper_params_note']}).")
    rho, _ = stats.spearmanr(t2["eq4_params_C64"], t2["true_params_C64"])
    text.append(f"Eq. (4) is a proportionality: at C=64 case 1 has {int(t2.iloc[0]['eq4_params_C64'])} parameters "
                f"by eq. (4) and {int(t2.iloc[0]['true_params_C64'])} in the layer (W0, W1 with its bias, the batch "
                f"norm); over the seven cases the two counts rank alike with Spearman rho = {rho:.2f}.")
    return " ".join(text)


def welch_interval(a, b, confidence: float = 0.95) -> dict:
    """mean(a) - mean(b) and its Welch t-interval (unequal variances) over the finite values; NaN interval when
    either side has fewer than 2 values."""
    from scipy import stats

    x, y = _finite(a), _finite(b)
    if len(x) == 0 or len(y) == 0:
        return dict(diff=np.nan, ci_low=np.nan, ci_high=np.nan)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return dict(diff=diff, ci_low=np.nan, ci_high=np.nan)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    if se == 0:
        return dict(diff=diff, ci_low=diff, ci_high=diff)
    df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return dict(diff=diff, ci_low=diff - half, ci_high=diff + half)


def _against_baseline(g: pd.DataFrame, base: pd.DataFrame, metric: str) -> tuple[str, int]:
    """(text, sign): the best ``metric`` of runs ``g`` against the baseline's; sign +1 significantly worse
    (higher), -1 significantly better, 0 not distinguishable or not testable."""
    col = f"{metric}_best"
    if col not in g or col not in base:
        return "", 0
    a, b = t_interval(g[col]), t_interval(base[col])
    w = welch_interval(g[col], base[col])
    text = f"best {metric} {mean_sd(a['mean'], a['sd'])} vs the baseline's {mean_sd(b['mean'], b['sd'])}"
    if not np.isfinite(w["ci_low"]):
        return text + " (too few seeds to test the difference)", 0
    ci = f"difference {_fmt(w['diff'], 3)}, 95% CI [{_fmt(w['ci_low'], 3)}, {_fmt(w['ci_high'], 3)}]"
    if w["ci_low"] > 0:
        return text + f": significantly worse ({ci})", 1
    if w["ci_high"] < 0:
        return text + f": significantly better ({ci})", -1
    return text + f": not distinguishable ({ci})", 0


def describe_outcomes(summary: pd.DataFrame, claims: dict | None = None, metric: str | None = None,
                      baseline: str | None = None) -> str:
    """§5.3: which configurations completed or diverged (and where), against the paper's claims
    (``claims``: label -> what the paper reports; a claim starting with "stable" expects no divergence,
    any other expects instability: a divergence, or a GP that stays high, `GP_HIGH`). With ``metric`` and
    ``baseline`` (a label), each other configuration's best metric is compared with the baseline's (Welch 95%
    interval of the difference): a collapse that the divergence rule does not stop still shows there."""
    text = []
    base = summary[summary["label"] == baseline] if baseline is not None else summary.iloc[0:0]
    for label in pd.unique(summary["label"]):
        g = summary[summary["label"] == label]
        n_div = int((g["state"] == "diverged").sum())
        line = f"- **{label}**: {outcome_summary(g['state'], g['step'])}; max GP {_fmt(g['gp_max'].max(), 3)}"
        high = g[(g["state"] != "diverged") & np.isfinite(g["gp_high_step"])]
        if len(high):
            at = ", ".join(f"seed {int(r.seed)} from step {int(r.gp_high_step)}" for r in high.itertuples())
            line += (f"; GP above {GP_HIGH:g} for {GP_HIGH_WINDOW} steps without stopping the run in "
                     f"{len(high)}/{len(g)} ({at})")
        cmp_text, worse = ("", 0)
        if metric is not None and len(base) and label != baseline:
            cmp_text, worse = _against_baseline(g, base, metric)
            line += f"; {cmp_text}"
        if claims and label in claims:
            claim = claims[label]
            if claim.startswith("stable"):
                verdict = ("agrees" if n_div == 0 and not len(high)
                           else f"does not agree ({n_div} diverged, {len(high)} with the GP staying high)")
            elif n_div or len(high):
                verdict = "agrees (" + ", ".join(
                    ([f"{n_div}/{len(g)} diverged"] if n_div else [])
                    + ([f"{len(high)}/{len(g)} with the GP staying high"] if len(high) else [])) + ")"
            elif worse > 0:
                verdict = (f"partly: no run diverged, but its best {metric} is significantly worse than the "
                           "baseline's (look at the samples for a collapse)")
            elif worse < 0:
                verdict = (f"not reproduced: no run diverged, and its best {metric} is significantly better "
                           "than the baseline's")
            else:
                verdict = ("not reproduced: no run diverged and the GP never stayed high"
                           + (f"; its best {metric} is not worse than the baseline's" if cmp_text else ""))
            line += f". Paper: {claim}; here: {verdict}"
        text.append(line + ".")
    return "\n".join(text)


def dataset_note(dataset: str) -> str:
    """Markdown: what the dataset means for comparing with the paper (loud for the synthetic stand-in)."""
    if dataset == "synthetic":
        return ("**Synthetic data.** These runs use the built-in synthetic shapes, not CelebA: the pipeline is "
                "exercised end to end, but the numbers say nothing about the paper's claims. Put CelebA in "
                "`./data/celeba/` (`img_align_celeba/*.jpg` and `list_eval_partition.txt`) or set "
                "`GAN_LIB_CELEBA`, then run again.")
    if dataset == "celeba":
        return "CelebA (the paper's dataset, §4.1)."
    if dataset == "mnist":
        return "MNIST (the paper's appendix)."
    return f"Dataset: {dataset}."
