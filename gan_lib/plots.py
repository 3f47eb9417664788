"""The paper's figures from run folders (matplotlib, no pyplot state: safe under Agg and in notebooks).

Every function returns a ``matplotlib.figure.Figure`` and, given ``path``, also saves it as PNG (dpi 120).
In a notebook, ``%matplotlib inline`` displays a returned Figure.

=============================  ==============================================================================
`sample_grids`                 Fig. 3: the last sample grid of several runs side by side
`emd_milestones`               Fig. 4: EMD estimate over steps (smoothed; raw faint), grids at milestones below
`metric_curves`                Fig. 5: a metric over training per label, mean line and min-max / CI band over seeds
`stability_curves`             Fig. 6: gradient penalty (log y) and losses over time, a marker where a run diverged
`samples_over_steps`           Fig. 7: one run's sample grids across training steps
`long_training_curves`         05: a metric and the GP over training per label (band over seeds, a step marked)
`grids_at_steps`               05: sample grids, one row per run, one column per step (2k / 4k / 8k)
=============================  ==============================================================================

Runs are given as in `gan_lib.report` (outcome dicts from `study.run_all`, run folder paths or RunDirs).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import report
from .run_dir import RunDir

DPI = 120


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return fig


def sample_files(run) -> dict[int, Path]:
    """{step: samples/step_XXXXXX.png} of one run, sorted by step."""
    path = report.run_entries(run)[0]["path"]
    files = {}
    for p in sorted(RunDir(path).samples_dir.glob("step_*.png")):
        m = re.fullmatch(r"step_(\d+)\.png", p.name)
        if m:
            files[int(m.group(1))] = p
    return dict(sorted(files.items()))


def read_grid(path: str | Path) -> np.ndarray:
    """A sample grid PNG as an (H, W, 3) uint8 array (grayscale grids expanded to 3 channels)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _show(ax, image, title=None):
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def _nearest(files: dict[int, Path], step: int | None) -> int:
    steps = list(files)
    return steps[-1] if step is None else min(steps, key=lambda s: abs(s - step))


def sample_grids(runs, titles: list[str] | None = None, step: int | None = None, path=None,
                 panel_size: float = 3.6) -> Figure:
    """Fig. 3: one panel per run with its sample grid at ``step`` (default: the last one saved; the
    nearest saved step otherwise). Runs without samples get an empty panel saying so."""
    entries = report.run_entries(runs)
    fig = Figure(layout="constrained", figsize=(panel_size * len(entries), panel_size + 0.4))
    axes = np.atleast_1d(fig.subplots(1, len(entries)))
    for i, (ax, e) in enumerate(zip(axes, entries)):
        files = sample_files(e)
        title = titles[i] if titles else e["label"]
        if not files:
            ax.axis("off")
            ax.set_title(f"{title}\n(no samples)", fontsize=9)
            continue
        s = _nearest(files, step)
        _show(ax, read_grid(files[s]), f"{title} (step {s})")
    return _finish(fig, path)


def _smooth(values: pd.Series, frac: float = 0.02) -> pd.Series:
    window = max(1, int(len(values) * frac), 3 if len(values) >= 30 else 1)
    return values.rolling(window, center=True, min_periods=1).mean()


def pick_milestones(steps: list[int], n: int) -> list[int]:
    """Up to ``n`` of ``steps`` spread evenly, always with the first and the last."""
    steps = sorted(steps)
    if len(steps) <= n:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, n)).astype(int))
    return [steps[i] for i in idx]


def _not_finished(what: str, path=None) -> Figure:
    fig = Figure(layout="constrained", figsize=(6, 1.2))
    fig.text(0.5, 0.5, f"{what}: its run has not finished yet (rendered with train=False from a study in progress)",
             ha="center", va="center", fontsize=9)
    return _finish(fig, path)


def emd_milestones(run, milestones: int | list[int] = 5, path=None, smooth: float = 0.02) -> Figure:
    """Fig. 4: the critic's EMD estimate E[D(real)] - E[D(fake)] per step (raw, faint; rolling mean over
    ``smooth`` of the steps, solid) with dashed lines at milestone steps, and the sample grids at those steps
    beneath (``milestones``: a count spread over the saved grids, or a list of steps). ``run`` None (not
    finished yet): a figure that says so."""
    if run is None:
        return _not_finished("Fig. 4", path)
    e = report.run_entries(run)[0]
    metrics = report.load_metrics([e])
    files = sample_files(e)
    steps = (pick_milestones(list(files), milestones) if isinstance(milestones, int)
             else [_nearest(files, s) for s in milestones] if files else [])
    ncol = max(1, len(steps))
    fig = Figure(layout="constrained", figsize=(max(8.0, 2.2 * ncol), 6.0))
    gs = fig.add_gridspec(2, ncol, height_ratios=[1.3, 1.0])
    ax = fig.add_subplot(gs[0, :])
    if len(metrics):
        emd = pd.to_numeric(metrics["emd"], errors="coerce")
        ax.plot(metrics["step"], emd, color="C0", alpha=0.25, lw=0.8, label="EMD (raw)")
        ax.plot(metrics["step"], _smooth(emd, smooth), color="C0", lw=1.8, label="EMD (smoothed)")
        ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no metrics.csv rows", ha="center", va="center", transform=ax.transAxes)
    for s in steps:
        ax.axvline(s, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("generator step")
    ax.set_ylabel("EMD estimate")
    ax.set_title(f"{e['label']} (seed {e['seed']}): EMD over training")
    for i, s in enumerate(steps):
        _show(fig.add_subplot(gs[1, i]), read_grid(files[s]), f"step {s}")
    return _finish(fig, path)


def _band(values: np.ndarray, band: str):
    """(low, high) across seeds (columns) for each row: 'minmax', 'sd' or 'ci' (95% t-interval)."""
    if band == "minmax":
        return np.nanmin(values, axis=1), np.nanmax(values, axis=1)
    lows, highs = [], []
    for row in values:
        t = report.t_interval(row)
        if band == "ci":
            lows.append(t["ci_low"])
            highs.append(t["ci_high"])
        else:
            lows.append(t["mean"] - t["sd"])
            highs.append(t["mean"] + t["sd"])
    return np.array(lows), np.array(highs)


def metric_curves(evals: pd.DataFrame, metrics: str | list[str], band: str = "minmax", labels=None, path=None,
                  title: str | None = None, logy: bool = False) -> Figure:
    """Fig. 5: per label, the mean over seeds of ``metric`` against the training step with a band over seeds
    (``band``: 'minmax', 'sd' or 'ci'; drawn when a label has 2+ seeds); one panel per metric.
    ``evals``: `report.load_evals`'s table."""
    if band not in ("minmax", "sd", "ci"):
        raise ValueError(f"band must be 'minmax', 'sd' or 'ci', got {band!r}")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("no metric to plot (the runs have no evaluations?)")
    labels = list(labels) if labels is not None else list(pd.unique(evals["label"]))
    fig = Figure(layout="constrained", figsize=(5.5 * len(metrics), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        if metric not in evals:
            raise KeyError(f"metric {metric!r} not in the evaluations; present: {report.metric_columns(evals)}")
        for i, label in enumerate(labels):
            g = evals[evals["label"] == label]
            if not len(g):
                continue
            wide = g.pivot_table(index="step", columns="seed", values=metric, aggfunc="mean").sort_index()
            mean = wide.mean(axis=1, skipna=True)
            n_seeds = wide.shape[1]
            ax.plot(wide.index, mean, marker="o", ms=3, color=f"C{i}", label=f"{label} (n={n_seeds})")
            if n_seeds > 1:
                lo, hi = _band(wide.to_numpy(dtype=float), band)
                ax.fill_between(wide.index, lo, hi, color=f"C{i}", alpha=0.2, lw=0)
        ax.set_xlabel("generator step")
        ax.set_ylabel(metric)
        if logy:
            ax.set_yscale("log")
        ax.set_title(title or f"{metric} over training ({'min-max' if band == 'minmax' else band} over seeds)",
                     fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _finish(fig, path)


def stability_curves(runs, path=None, smooth: float = 0.02) -> Figure:
    """Fig. 6: per run (colour by label, one line per seed) the gradient penalty (log y) and the critic and
    generator losses over steps (rolling mean over ``smooth`` of the steps); an ``x`` marks the step where
    a run diverged (from status.json); a dotted line the GP level (`report.GP_HIGH`) above which a run that
    stays there has collapsed."""
    entries = report.run_entries(runs)
    metrics, table = report.load_metrics(entries), report.load_runs(entries)
    labels = list(dict.fromkeys(e["label"] for e in entries))
    fig = Figure(layout="constrained", figsize=(15, 4.3))
    axes = fig.subplots(1, 3)
    panels = (("gp", "gradient penalty (log)"), ("loss_d", "critic loss"), ("loss_g", "generator loss"))
    for r in table.itertuples():
        g = metrics[metrics["name"] == r.name]
        color = f"C{labels.index(r.label)}"
        first = r.seed == min(e["seed"] for e in entries if e["label"] == r.label)
        for ax, (col, _) in zip(axes, panels):
            if not len(g):
                continue
            y = pd.to_numeric(g[col], errors="coerce")
            if col == "gp":
                y = y.clip(lower=1e-8)
            ax.plot(g["step"], _smooth(y, smooth), color=color, lw=1.2, label=r.label if first else None)
            ok = np.isfinite(y) & (g["step"] <= (r.step if r.step == r.step and r.step else g["step"].max()))
            if r.state == "diverged" and ok.any():  # the last finite value at or before the divergence step
                x_at, y_at = float(g["step"][ok].iloc[-1]), float(y[ok].iloc[-1])
                ax.plot([x_at], [y_at], "x", color=color, ms=10, mew=2.5)
                if col == "gp":
                    ax.annotate(f"diverged @ {r.step}", (x_at, y_at), fontsize=7, color=color, xytext=(4, 4),
                                textcoords="offset points")
    for ax, (col, name) in zip(axes, panels):
        if col == "gp":
            ax.set_yscale("log")
            ax.axhline(report.GP_HIGH, color="0.4", ls=":", lw=1,
                       label=f"GP {report.GP_HIGH:g}: stays above -> collapse")
        ax.set_xlabel("generator step")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _finish(fig, path)


def samples_over_steps(run, steps: list[int] | None = None, max_panels: int = 6, path=None,
                       panel_size: float = 2.8) -> Figure:
    """Fig. 7: one run's sample grids at ``steps`` (default: up to ``max_panels`` saved steps spread over
    training, first and last included), titled with the run's outcome (a run without grids, or ``run`` None:
    a note)."""
    if run is None:
        return _not_finished("Fig. 7", path)
    e = report.run_entries(run)[0]
    files = sample_files(e)
    outcome = report.load_runs([e]).iloc[0]["outcome"]
    if not files:  # a run that failed before its first grid: say so in the figure
        fig = Figure(layout="constrained", figsize=(6, 1.5))
        fig.text(0.5, 0.5, f"{e['label']} (seed {e['seed']}): no samples/step_*.png in {e['path']}\n({outcome})",
                 ha="center", va="center", fontsize=9)
        return _finish(fig, path)
    chosen = pick_milestones(list(files), max_panels) if steps is None else [_nearest(files, s) for s in steps]
    fig = Figure(layout="constrained", figsize=(panel_size * len(chosen), panel_size + 0.6))
    axes = np.atleast_1d(fig.subplots(1, len(chosen)))
    for ax, s in zip(axes, chosen):
        _show(ax, read_grid(files[s]), f"step {s}")
    fig.suptitle(f"{e['label']} (seed {e['seed']}): {outcome}", fontsize=10)
    return _finish(fig, path)


# --- notebook 05 (long training) ---

def _seed_band(df: pd.DataFrame, column: str, smooth: float | None, log: bool):
    """(steps, centre, low, high, n_seeds) of ``column`` across the seeds of one label: each run smoothed (rolling
    mean over ``smooth`` of its rows; None: raw), then the mean over seeds (of log10 when ``log``: a geometric
    mean) and the min-max band."""
    import warnings

    runs = []
    for name, g in df.groupby("name", sort=False):
        y = pd.to_numeric(g[column], errors="coerce")
        if log:
            y = np.log10(y.where(y > 0))
        if smooth:
            y = _smooth(y, smooth)
        runs.append(pd.Series(y.to_numpy(), index=g["step"].to_numpy(), name=name))
    wide = pd.concat(runs, axis=1).sort_index()
    values = wide.to_numpy(dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step where every seed is NaN (after a divergence)
        centre, low, high = np.nanmean(values, axis=1), np.nanmin(values, axis=1), np.nanmax(values, axis=1)
    if log:
        centre, low, high = 10 ** centre, 10 ** low, 10 ** high
    return wide.index.to_numpy(), centre, low, high, wide.shape[1]


def long_training_curves(evals: pd.DataFrame, metrics: pd.DataFrame, metric: str, mark_step: int | None = None,
                         summary: pd.DataFrame | None = None, labels=None, path=None, smooth: float = 0.02,
                         mark_label: str = "end of the short study") -> Figure:
    """Notebook 05: per configuration, ``metric`` (left, from `report.load_evals`) and the gradient penalty (right,
    log y, from `report.load_metrics`, each run smoothed over ``smooth`` of its steps) over training: the mean over
    seeds (geometric for the GP) with the min-max band; a dashed line at ``mark_step`` (the short study's end,
    2,000 steps at cpu). With ``summary`` (`report.summarize_runs`'s): on the GP panel a triangle where a run's GP
    started to stay above `report.GP_HIGH` (``gp_high_step``) and an ``x`` where a run diverged."""
    labels = list(labels) if labels is not None else list(pd.unique(evals["label"]))
    fig = Figure(layout="constrained", figsize=(13, 4.6))
    ax_m, ax_gp = fig.subplots(1, 2)
    for i, label in enumerate(labels):
        color = f"C{i}"
        ev = evals[evals["label"] == label]
        if len(ev) and metric in ev:
            x, c, lo, hi, n = _seed_band(ev, metric, None, False)
            ax_m.plot(x, c, marker="o", ms=3, color=color, label=f"{label} (n={n})")
            if n > 1:
                ax_m.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
        st = metrics[metrics["label"] == label]
        if len(st):
            x, c, lo, hi, n = _seed_band(st, "gp", smooth, True)
            ax_gp.plot(x, c, color=color, lw=1.3, label=f"{label} (n={n})")
            if n > 1:
                ax_gp.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
        if summary is not None:
            for r in summary[summary["label"] == label].itertuples():
                if np.isfinite(r.gp_high_step):
                    ax_gp.plot([r.gp_high_step], [report.GP_HIGH], "v", color=color, ms=8, mec="k", mew=0.5)
                if r.state == "diverged" and r.step == r.step:
                    ax_gp.plot([r.step], [report.GP_HIGH], "x", color=color, ms=10, mew=2.5)
    ax_gp.set_yscale("log")
    ax_gp.axhline(report.GP_HIGH, color="0.4", ls=":", lw=1)
    for ax, name in ((ax_m, f"{metric} (mean, min-max over seeds)"),
                     (ax_gp, "gradient penalty (geometric mean, min-max; v: stays above "
                             f"{report.GP_HIGH:g} from there, x: diverged)")):
        if mark_step:
            ax.axvline(mark_step, color="k", ls="--", lw=1, alpha=0.7)
            ax.annotate(f"{mark_label} ({mark_step:,})", (mark_step, 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", fontsize=7)
        ax.set_xlabel("generator step")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    ax_m.set_ylabel(metric)
    ax_gp.set_ylabel("gradient penalty")
    ax_m.legend(fontsize=7)
    return _finish(fig, path)


def grids_at_steps(runs, steps: list[int], path=None, panel_size: float = 2.6) -> Figure:
    """Notebook 05: one row per run (e.g. the first seed of each configuration), one column per step of ``steps``
    (2k / 4k / 8k), each the run's sample grid saved at exactly that step; a run without one there (it stopped
    earlier, or saves grids at other steps) gets a panel saying so."""
    entries = report.run_entries(runs)
    table = report.load_runs(entries)
    fig = Figure(layout="constrained", figsize=(panel_size * len(steps) + 1.5, panel_size * len(entries) + 0.3))
    axes = np.atleast_2d(fig.subplots(len(entries), len(steps), squeeze=False))
    for row, (e, r) in enumerate(zip(entries, table.itertuples())):
        files = sample_files(e)
        for col, s in enumerate(steps):
            ax = axes[row, col]
            if s in files:
                _show(ax, read_grid(files[s]), f"step {s:,}" if row == 0 else None)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.5, f"no grid at step {s:,}\n({r.outcome})", ha="center", va="center", fontsize=7,
                        transform=ax.transAxes, wrap=True)
                if row == 0:
                    ax.set_title(f"step {s:,}", fontsize=9)
        axes[row, 0].set_ylabel(f"{e['label']}\n(seed {e['seed']})", fontsize=8)
    return _finish(fig, path)
