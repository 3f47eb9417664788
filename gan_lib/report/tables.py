"""Tables over runs: per configuration (mean, sd, n and t-interval over seeds of the best and the final metric),
the paper's Table 2 rebuilt, the step-cost table, and the CSV + Markdown writer.

"Best" is the minimum over a run's evaluations (the paper's min(FID)): a selected statistic, lower than the value
the run ends with and more so the noisier the metric; every table shows the final value beside it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..run_dir import atomic_write_text
from .runs import headline_metrics, load_evals, run_config, run_entries, summarize_runs
from .stats import t_interval

__all__ = ["mean_sd", "outcome_summary", "aggregate", "table2", "eq4_params", "to_markdown", "save_table",
           "read_table", "output_dir", "repo_relative", "step_costs"]


def mean_sd(mean, sd, digits: int = 4) -> str:
    """'12.35 ± 1.2' (sd NaN: just the mean; mean NaN: '')."""
    if mean is None or not np.isfinite(mean):
        return ""
    text = f"{mean:.{digits}g}"
    return text + (f" ± {sd:.2g}" if sd is not None and np.isfinite(sd) else "")


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
    ``m_best_{mean,sd,n,ci_low,ci_high}`` (best = min over a run's evaluations) and
    ``m_final_{mean,sd,n,ci_low,ci_high}`` (the last evaluation); ``sec_per_step_{mean,sd}`` (NaN when the runs
    trained on different devices or precisions) and ``devices`` (e.g. "cuda bf16 x2, cpu fp32 x1").
    ``summary`` is `summarize_runs`'s table; ``metrics`` default: those present."""
    if metrics is None:
        metrics = [c[:-5] for c in summary.columns if c.endswith("_best")]
    rows = []
    for key in pd.unique(summary[by]):
        g = summary[summary[by] == key]
        row = {by: key, "n": len(g), "outcome": outcome_summary(g["state"], g["step"])}
        for m in metrics:
            for which in ("best", "final"):
                t = t_interval(g.get(f"{m}_{which}", pd.Series(dtype=float)), confidence)
                for k in ("mean", "sd", "n", "ci_low", "ci_high"):
                    row[f"{m}_{which}_{k}"] = t[k]
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


# --- Table 2 ---

def table2(runs, costs: pd.DataFrame | None = None, metrics: list[str] | None = None) -> pd.DataFrame:
    """The paper's Table 2 rebuilt: one row per (K, G, R) case of `study.TABLE2`.

    Columns: case, K, G, R, label, n, outcome; per metric ``m`` (headline metrics present; FID when
    evaluated) ``m_best_mean``, ``m_best_sd`` and the text ``m_best`` ('mean ± sd'), and the same for
    ``m_final``; ``C_run`` (the run's involution channels = width); ``eq4_params_C_run`` / ``eq4_params_C64``
    (eq. 4; when C is not divisible by R*G the formula's real value (C/G + K^2) * C/R); ``true_params_C_run`` /
    ``true_params_C64`` (count_parameters of the generator's Involution2d); ``paper_params`` and
    ``paper_params_flag`` (True where the printed count disagrees with eq. (4) at C=64: case 6 prints 644, eq. (4)
    gives 544) and ``paper_params_note``; ``paper_min_fid``, ``paper_sec_per_step``; ``sec_per_step`` (ours:
    median of metrics.csv, mean over seeds); both times relative to case 1; with ``costs`` (`cost.cost_table`,
    indexed by label) ``cost_sec_per_step`` and ``peak_rss_mb`` measured side by side.
    """
    from ..config import TrainConfig, make_config
    from ..cost import involution_layer_params
    from ..layers import paper_param_count
    from ..run_dir import RunDir
    from ..study import TABLE2, igan_label

    entries = run_entries(runs)
    summary = summarize_runs(entries)
    evals = load_evals(entries)
    metrics = list(metrics) if metrics is not None else headline_metrics(evals)
    agg = aggregate(summary, metrics) if len(summary) else pd.DataFrame(columns=["label"])
    configs = {}  # label -> the config.json of its first run that has one
    for e in entries:
        cfg = run_config(RunDir(e["path"]))
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
            for which in ("best", "final"):
                mu, sd = a.get(f"{m}_{which}_mean", np.nan), a.get(f"{m}_{which}_sd", np.nan)
                row[f"{m}_{which}_mean"], row[f"{m}_{which}_sd"], row[f"{m}_{which}"] = mu, sd, mean_sd(mu, sd)
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
    from ..layers import paper_param_count

    try:
        return float(paper_param_count(int(C), K, G, R))
    except ValueError:
        return (C / G + K * K) * C / (R * G) * G


# --- step costs ---

def step_costs(configs: dict, out_dir: str | Path, measure: bool = True, threads: int | None = None,
               progress: bool = True, name: str = "table_cost") -> pd.DataFrame:
    """The side-by-side step-cost table of ``configs`` (`cost.cost_table`), saved as ``<out_dir>/<name>``.

    ``measure=False`` (a notebook rendered with ``train=False``: nothing new is measured) reuses the saved table
    when it has a row for every configuration, so re-rendering a study on a busy machine keeps the timings taken
    side by side on the idle one; it measures when there is no such table."""
    from ..cost import cost_table

    saved = Path(out_dir) / f"{name}.csv"
    if not measure and saved.exists():
        costs = pd.read_csv(saved)
        if set(configs) <= set(costs.get("label", [])):
            return costs.set_index("label").loc[list(configs)].reset_index()
    costs = cost_table(configs, threads=threads, progress=progress)
    save_table(costs, out_dir, name)
    return costs


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
    """Write ``<out_dir>/<name>.csv`` and ``<name>.md`` (atomically); returns ``{"csv": path, "md": path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md"}
    atomic_write_text(paths["csv"], df.to_csv(index=False))
    atomic_write_text(paths["md"], to_markdown(df, floatfmt))
    return paths


def read_table(out_dir: str | Path, name: str) -> pd.DataFrame:
    """``<out_dir>/<name>.csv`` as written by `save_table`."""
    return pd.read_csv(Path(out_dir) / f"{name}.csv")


def output_dir(out_dir: str | Path | None, preset: str, notebook: str) -> Path:
    """``out_dir`` or ``results/<preset>/<notebook>`` (created); a relative path is relative to the
    repository root (`study.repo_path`)."""
    from ..study import repo_path

    out = repo_path(out_dir if out_dir else Path("results") / preset / notebook)
    out.mkdir(parents=True, exist_ok=True)
    return out


def repo_relative(path: str | Path | None) -> str | None:
    """``path`` relative to the repository root when it lies inside it, or inside the ``../shared/`` folder beside
    it (where the data live: ``../shared/data/celeba``), else as given: what a rendered report or a committed status
    file shows instead of this machine's absolute path. Relative paths are read back against the repository root
    (`study.repo_path`)."""
    from ..study import REPO

    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_absolute():
        return str(p)
    p = p.resolve()
    for base, prefix in ((REPO, ""), (REPO.parent / "shared", os.path.join("..", "shared"))):
        try:
            rel = p.relative_to(base)
        except ValueError:
            continue
        if not prefix:
            return str(rel) if str(rel) != "." else "."
        return os.path.join(prefix, str(rel)) if str(rel) != "." else prefix
    return str(p)
