"""Notebook 05 (long training): the runs read at a given step (the short study's end, 2,000 steps at cpu) and at
their end, the comparison of every variant with the baseline at both points, the outcomes and the claims.

* `summarize_at`: one row per run as if it had stopped at step S: its best and last evaluation at or before S
  (`summarize_runs`'s columns, so `aggregate` and the claims functions take it as it is), the GP up to S.
* `summarize_long`: `summarize_runs` plus ``gp_end`` (median gradient penalty over the last `GP_END_FRACTION` of the
  logged steps), ``log10_gp_end`` and ``outcome_class`` (completed / diverged / collapsed, `classify`).
* `compare_points`: each variant minus the baseline at each point (Welch intervals, Holm over the variants at each
  point), and whether the end says what the 2,000-step point said; `ranking_points`: each configuration's mean
  and rank at each point; `outcome_counts`: completed / diverged / collapsed per configuration.
* `long_training_claims`: this notebook's rows of claims.csv, by the rules of `report.claims`.

Every file of a run folder is read through `report.runs` (`load_evals`, `load_metrics`: `RunDir`'s readers).
Metrics are lower = better. Which statistic the claims use (the value at the end, not the best) and the families
were fixed before any long run was read (issue 12): the paper's late-training claims (divergence, collapse, case 3's
end) are about where training ends, and a best over evaluations would pick a value from before a divergence.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .claims import ALPHA, descriptive_claim, early_final_note, instability_claims, with_verdicts
from .runs import (GP_HIGH, GP_HIGH_WINDOW, load_evals, load_metrics, metric_columns, run_entries, summarize_runs,
                   sustained_above)
from .stats import holm_adjusted_p, holm_levels, t_interval, welch_interval

__all__ = ["GP_END_FRACTION", "OUTCOME_CLASSES", "classify", "summarize_at", "summarize_long", "outcome_counts",
           "compare_points", "ranking_points", "paper_statements", "long_training_claims", "describe_points",
           "grid_steps", "SHORT_STUDY", "short_study_summary", "what_changes",
           "what_changes_markdown", "point_name"]

GP_END_FRACTION = 0.1  # gp_end: the median GP over the last 10% of a run's logged steps (one step's GP is noisy)
OUTCOME_CLASSES = ("completed", "diverged", "collapsed")


def classify(state: str, gp_high_step) -> str:
    """'diverged' (stopped by the divergence rule), 'collapsed' (finished, but its GP stayed above `GP_HIGH` for
    `GP_HIGH_WINDOW` steps: a lost critic the rule let finish), 'completed', or the state itself (failed, running,
    ...)."""
    if state == "diverged":
        return "diverged"
    if state == "completed":
        return "collapsed" if gp_high_step is not None and np.isfinite(gp_high_step) else "completed"
    return state or "missing"


def _gp_end(gp: pd.Series, fraction: float = GP_END_FRACTION) -> float:
    ok = pd.to_numeric(gp, errors="coerce")
    ok = ok[np.isfinite(ok)]
    if not len(ok):
        return np.nan
    return float(ok.iloc[-max(1, int(round(len(ok) * fraction))):].median())


def summarize_long(runs, metrics: list[str] | None = None) -> pd.DataFrame:
    """`summarize_runs` plus ``gp_end`` (median GP over the last `GP_END_FRACTION` of the logged steps; a diverged
    run: its last steps before it stopped), ``log10_gp_end`` and ``outcome_class`` (`classify`)."""
    entries = run_entries(runs)
    summary = summarize_runs(entries, metrics)
    steps = load_metrics(entries)
    gp_end = []
    for name in summary["name"]:
        st = steps[steps["name"] == name] if len(steps) else steps
        gp_end.append(_gp_end(st["gp"]) if len(st) else np.nan)
    summary["gp_end"] = gp_end
    with np.errstate(divide="ignore", invalid="ignore"):
        summary["log10_gp_end"] = np.log10(summary["gp_end"].where(summary["gp_end"] > 0))
    summary["outcome_class"] = [classify(s, g) for s, g in zip(summary["state"], summary["gp_high_step"])]
    return summary


def summarize_at(runs, step: int, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per run read at ``step``: label, seed, name, state, ``reached`` (the run trained to ``step``: its
    logged steps or its status reach it), ``<m>_best`` / ``<m>_best_step`` (min over the evaluations at or before
    ``step``), ``<m>_final`` / ``<m>_final_step`` (the last evaluation at or before ``step``), ``gp_max`` and
    ``gp_high_step`` over the steps up to ``step``. A run that stopped before ``step`` (diverged, failed, still
    running) has NaN metrics: it has no value there."""
    entries = run_entries(runs)
    base = summarize_runs(entries, metrics=[])
    evals, steps = load_evals(entries), load_metrics(entries)
    metrics = list(metrics) if metrics is not None else metric_columns(evals)
    rows = []
    for e, b in zip(entries, base.to_dict("records")):
        st = steps[(steps["name"] == e["name"]) & (steps["step"] <= step)] if len(steps) else steps
        last_logged = steps.loc[steps["name"] == e["name"], "step"].max() if len(steps) else np.nan
        run_step = b.get("step")
        reached = bool((np.isfinite(last_logged) and last_logged >= step)
                       or (run_step is not None and run_step == run_step and run_step >= step))
        row = dict(label=e["label"], seed=e["seed"], name=e["name"], state=b["state"], at_step=step, reached=reached)
        ev = evals[(evals["name"] == e["name"]) & (evals["step"] <= step)] if len(evals) else evals
        for m in metrics:
            vals = pd.to_numeric(ev[m], errors="coerce") if m in ev else pd.Series(dtype=float)
            ok = vals[np.isfinite(vals)] if reached else vals.iloc[0:0]
            row[f"{m}_best"] = float(ok.min()) if len(ok) else np.nan
            row[f"{m}_best_step"] = int(ev.loc[ok.idxmin(), "step"]) if len(ok) else np.nan
            row[f"{m}_final"] = float(ok.iloc[-1]) if len(ok) else np.nan
            row[f"{m}_final_step"] = int(ev.loc[ok.index[-1], "step"]) if len(ok) else np.nan
        gp = pd.to_numeric(st["gp"], errors="coerce") if len(st) else pd.Series(dtype=float)
        row["gp_max"] = float(gp[np.isfinite(gp)].max()) if np.isfinite(gp).any() else np.nan
        row["gp_high_step"] = sustained_above(st["step"], gp, GP_HIGH, GP_HIGH_WINDOW) if len(st) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def outcome_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (first-appearance order): n, completed, diverged, collapsed, other (failed, running...), and
    where: the divergence steps and the steps from which the GP stayed high ("s<seed>: <step>", "none").
    ``summary``: `summarize_long`'s."""
    rows = []
    for label in pd.unique(summary["label"]):
        g = summary[summary["label"] == label]
        cls = g["outcome_class"]
        row = dict(label=label, n=len(g), **{c: int((cls == c).sum()) for c in OUTCOME_CLASSES})
        row["other"] = int((~cls.isin(OUTCOME_CLASSES)).sum())
        row["diverged_at"] = ", ".join(f"s{int(r.seed)}: {int(r.step)}" for r in g.itertuples()
                                       if r.outcome_class == "diverged" and r.step == r.step) or "none"
        row["gp_high_from"] = ", ".join(f"s{int(r.seed)}: {int(r.gp_high_step)}" for r in g.itertuples()
                                        if np.isfinite(r.gp_high_step)) or "none"
        rows.append(row)
    return pd.DataFrame(rows)


def _values(summary: pd.DataFrame, label: str, column: str) -> pd.Series:
    g = summary[summary["label"] == label]
    return pd.to_numeric(g[column], errors="coerce") if column in g else pd.Series(dtype=float)


def _family(summary: pd.DataFrame, column: str, pairs: list[tuple[str, str]], alpha: float = ALPHA) -> list[dict]:
    """Welch intervals of ``column`` for each (ours, reference) pair, each at the level Holm tests it at over the
    pairs (one pair: ``1 - alpha``), with p and Holm-adjusted p."""
    plain = [welch_interval(_values(summary, a, column), _values(summary, b, column)) for a, b in pairs]
    p = [w["p_value"] for w in plain]
    levels = holm_levels(p, alpha) if len(pairs) > 1 else np.full(len(pairs), alpha)
    p_adj = holm_adjusted_p(p) if len(pairs) > 1 else np.asarray(p, dtype=float)
    out = []
    for (a, b), w, level, pa in zip(pairs, plain, levels, p_adj):
        at = welch_interval(_values(summary, a, column), _values(summary, b, column), 1 - float(level))
        out.append(dict(at, confidence=1 - float(level), p_value=w["p_value"],
                        p_adjusted=float(pa) if np.isfinite(w["p_value"]) else np.nan))
    return out


def _direction(w: dict) -> str:
    """'worse' / 'better' (the interval excludes 0 on that side; lower is better), 'not distinguishable', 'no value'
    (a side has no value) or 'no interval' (fewer than 2 values on a side)."""
    if not np.isfinite(w["diff"]):
        return "no value"
    if not (np.isfinite(w["ci_low"]) and np.isfinite(w["ci_high"])):
        return "no interval"
    if w["ci_low"] > 0:
        return "worse"
    if w["ci_high"] < 0:
        return "better"
    return "not distinguishable"


def compare_points(points: dict[str, pd.DataFrame], baseline: str, metric: str, which: str = "final",
                   alpha: float = ALPHA, variants: list[str] | None = None) -> pd.DataFrame:
    """Each variant minus the baseline at each point: ``points`` {point name: a summary at that point}
    (`summarize_at` for the 2,000-step point, `summarize_long` for the end), on ``<metric>_<which>`` ("final":
    the value at the point; "best": the best up to it). One row per variant: per point ``<point>_diff``,
    ``<point>_ci_low``, ``<point>_ci_high`` (Welch, at the level Holm tests it at over the variants at that point),
    ``<point>_p_adjusted``, ``<point>_direction`` (worse / better / not distinguishable), and ``same``: True when
    every point says the same, False when they differ, None when a point has no interval (fewer than 2 seeds).
    ``variants``: the declared variants (one Holm family at each point, whatever a point holds; a variant without
    runs there has no value and counts as p = 1); None: the first point's labels."""
    if variants is None:
        variants = list(pd.unique(next(iter(points.values()))["label"]))
    variants = [label for label in variants if label != baseline]
    column = f"{metric}_{which}"
    rows = [dict(variant=v, reference=baseline, statistic=column) for v in variants]
    for point, summary in points.items():
        for row, w in zip(rows, _family(summary, column, [(v, baseline) for v in variants], alpha)):
            row.update({f"{point}_diff": w["diff"], f"{point}_ci_low": w["ci_low"], f"{point}_ci_high": w["ci_high"],
                        f"{point}_confidence": w["confidence"], f"{point}_p_adjusted": w["p_adjusted"],
                        f"{point}_n": min(w["n_a"], w["n_b"]), f"{point}_direction": _direction(w)})
    for row in rows:
        said = {row[f"{p}_direction"] for p in points}
        row["same"] = None if said & {"no value", "no interval"} else len(said) == 1
    return pd.DataFrame(rows)


SHORT_STUDY = ("03_stability", "02_involution_hyperparameters")  # where the short study judged each configuration


def short_study_summary(results_dir, labels: list[str]) -> pd.DataFrame:
    """The short study's runs of ``labels`` (2,000 steps at cpu), from the run tables its notebooks rendered into
    ``results_dir`` (= results/<preset>: ``<notebook>/runs.csv``, written from the committed run records): each
    label from the first notebook of `SHORT_STUDY` that has it (03: the baseline and the stability variants; 02:
    case 3), with a ``notebook`` column. Empty when none of them is rendered there."""
    from pathlib import Path

    from .tables import read_table

    parts, seen = [], set()
    for name in SHORT_STUDY:
        if not (Path(results_dir) / name / "runs.csv").exists():
            continue
        runs = read_table(Path(results_dir) / name, "runs")
        mine = runs[runs["label"].isin([label for label in labels if label not in seen])]
        seen |= set(mine["label"])
        parts.append(mine.assign(notebook=name))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["label", "seed", "notebook"])


def what_changes(comparison: pd.DataFrame, points: list[str], short: pd.DataFrame, end: pd.DataFrame,
                 baseline: str) -> pd.DataFrame:
    """Claim by claim, what the long runs change: per variant of `compare_points`'s ``comparison`` (which has the
    ``points``, the short study's first and the end last), the paper's statement, each
    point's difference [interval] and its verdict by `report.claims.verdict` (difference, the paper's sign: the
    variant is worse), the unstable runs (`report.claims.unstable`) in the short study and in the long runs, and
    ``change``: "holds: <verdict>" when the first point and the end agree, else "<first> -> <end>"."""
    from .claims import unstable_count, verdict

    paper = paper_statements()
    names = list(points)
    first, last = names[0], names[-1]

    def count(summary, label):
        k, n = unstable_count(summary, label)
        return f"{k} of {n}" if n else "n/a"

    rows = []
    for r in comparison.to_dict("records"):
        row = dict(label=r["variant"], paper=paper.get(r["variant"], ""))
        for p in names:
            low, high = r[f"{p}_ci_low"], r[f"{p}_ci_high"]
            row[f"{p}_value"] = _interval(dict(diff=r[f"{p}_diff"], ci_low=low, ci_high=high))
            row[f"{p}_n"] = r[f"{p}_n"]
            row[f"{p}_verdict"] = (verdict("difference", low, high, 1.0) if np.isfinite(r[f"{p}_diff"])
                                   else "no value")
        row["unstable_short"] = count(short, r["variant"])
        row["unstable_short_baseline"] = count(short, baseline)
        row["unstable_long"] = count(end, r["variant"])
        row["unstable_long_baseline"] = count(end, baseline)
        a, b = row[f"{first}_verdict"], row[f"{last}_verdict"]
        row["change"] = f"holds: {a}" if a == b else f"{a} -> {b}"
        rows.append(row)
    return pd.DataFrame(rows)


def point_name(point: str) -> str:
    """How the tables name a point of `compare_points`: "short" (the short study's runs), "at<S>" (the long runs
    read at step S), "end" (the long runs at their end)."""
    if point == "short":
        return "short study"
    if point.startswith("at") and point[2:].isdigit():
        return f"long runs at step {int(point[2:]):,}"
    return "long runs at the end" if point == "end" else point


def what_changes_markdown(changes: pd.DataFrame) -> str:
    """`what_changes`'s table as Markdown (the notebook's and results/README.md's "what the long runs change"):
    per variant the paper's statement, each point's difference [interval] (n) and verdict (the points: the
    ``<point>_verdict`` columns, named by `point_name`), the unstable runs and the change."""
    from .claims import _md

    if not len(changes):
        return "No variant to compare."
    names = [c.removesuffix("_verdict") for c in changes.columns if c.endswith("_verdict")]
    points = {p: point_name(p) for p in names}
    head = (["configuration", "the paper"] + [f"{points[p]}: difference [interval], verdict" for p in names]
            + ["unstable runs (baseline): short / long", "what the long runs change"])
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for r in changes.to_dict("records"):
        cells = [r["label"], r["paper"]]
        for p in names:
            n = r[f"{p}_n"]
            cells.append(f"{r[f'{p}_value']}" + (f" (n = {int(n)})" if n == n else "") + f": {r[f'{p}_verdict']}")
        cells.append(f"{r['unstable_short']} ({r['unstable_short_baseline']}) / {r['unstable_long']} "
                     f"({r['unstable_long_baseline']})")
        cells.append(f"**{r['change']}**")
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def ranking_points(points: dict[str, pd.DataFrame], metric: str, which: str = "final") -> pd.DataFrame:
    """Each configuration's mean, sd, n and 95% t-interval of ``<metric>_<which>`` at each point, and its rank there
    (1 = lowest mean); ``rank_changed`` when the ranks differ."""
    labels = list(pd.unique(next(iter(points.values()))["label"]))
    out = pd.DataFrame({"label": labels})
    for point, summary in points.items():
        stats = [t_interval(_values(summary, label, f"{metric}_{which}")) for label in labels]
        for k in ("mean", "sd", "n", "ci_low", "ci_high"):
            out[f"{point}_{k}"] = [s[k] for s in stats]
        out[f"{point}_rank"] = out[f"{point}_mean"].rank(method="min")
    ranks = out[[f"{p}_rank" for p in points]]
    out["rank_changed"] = ranks.nunique(axis=1, dropna=False) > 1
    return out


def grid_steps(reference: int, steps: int) -> list[int]:
    """The steps whose sample grids the notebook shows: the reference step, twice it, four times it and the end
    (2k / 4k / 8k at cpu), those within the run."""
    return sorted({s for s in (reference, 2 * reference, 4 * reference, steps) if 0 < s <= steps})


def paper_statements() -> dict[str, str]:
    """What the paper reports for each configuration of notebook 05 (label -> statement): §5.3's stability claims
    (`study.STABILITY_CLAIMS`) and Table 2's case 3."""
    from ..study import STABILITY_CLAIMS, TABLE2, igan_label

    case3 = next(c for c in TABLE2 if c["case"] == 3)
    return {**STABILITY_CLAIMS, igan_label(case3["K"], case3["G"], case3["R"]): (
        f"case 3 (K={case3['K']}, G={case3['G']}, R={case3['R']}) ends worst of Table 2: min FID "
        f"{case3['paper_fid']:.2f} vs case 1's {TABLE2[0]['paper_fid']:.2f}")}


def _short(label: str, base: str) -> str:
    return label.removeprefix(base + "-") if label != base else label


def long_training_claims(end: pd.DataFrame, at_reference: pd.DataFrame, metric: str, preset: str,
                         reference_step: int, steps: int, alpha: float = ALPHA,
                         labels: list[str] | None = None) -> pd.DataFrame:
    """Notebook 05's rows of claims.csv (``notebook`` "05"), verdicts by `report.claims.verdict`:

    1. difference, one Holm family over the four variants, expected sign +1: each variant (two involutions,
       with clipping, case 3 = K7 G4 R2, kernel batch norm) has a higher ``metric`` than the baseline (case 1) at
       the end of the long runs (their last evaluation: ``<metric>_final``); the note gives the same difference at
       the reference step (2,000 at cpu) and the best's;
    2. difference, one Holm family over the two two-involution variants, expected sign +1: their gradient penalty
       at the end (log10 of `summarize_long`'s ``gp_end``) is higher than the baseline's ("the gradient penalty
       keeps increasing");
    3. descriptive: per variant, the runs that diverged or collapsed (`classify`), beside the baseline's;
    4. descriptive: Spearman's rho between the configurations' mean ``metric`` at the reference step and at the end
       (does the ranking of the short study hold?).

    ``end``: `summarize_long` of the runs; ``at_reference``: `summarize_at` of them at ``reference_step``;
    ``labels``: the notebook's declared configurations (the families are fixed by them, not by the runs that exist:
    a partial render has the final families; a variant without runs has no value and counts as p = 1); None: the
    labels of ``end``."""
    from scipy import stats

    from ..study import igan_label

    nb = "05"
    base = igan_label(3, 4, 2)
    paper = paper_statements()
    declared = list(labels) if labels is not None else list(pd.unique(end["label"]))
    labels = [label for label in declared if label != base]
    rows = []
    final = _family(end, f"{metric}_final", [(v, base) for v in labels], alpha)
    best = _family(end, f"{metric}_best", [(v, base) for v in labels], alpha)
    ref = _family(at_reference, f"{metric}_final", [(v, base) for v in labels], alpha)
    family = f"holm over {len(labels)} variants vs the baseline at the end" if len(labels) > 1 else "none"
    for v, w, b, r in zip(labels, final, best, ref):
        rows.append(dict(
            notebook=nb, claim=f"{_short(v, base)}: higher {metric} than the baseline at the end ({steps} steps)",
            paper=paper.get(v, ""), metric=f"{metric}_final", kind="difference", expected_sign=1.0, margin=np.nan,
            estimate=w["diff"], ci_low=w["ci_low"], ci_high=w["ci_high"], n_seeds=min(w["n_a"], w["n_b"]),
            adjustment=family, confidence=w["confidence"], p_value=w["p_value"], p_adjusted=w["p_adjusted"],
            final_estimate=w["diff"], final_ci_low=w["ci_low"], final_ci_high=w["ci_high"],
            note=(f"{v} - {base}; the estimate is the final value; at step {reference_step} {_interval(r)}"
                  + (f" ({_direction(r)})" if np.isfinite(r["ci_low"]) else "")
                  + f"; best over the run {_interval(b)}"
                  + "".join(f"; {n}" for n in [early_final_note(end, [v, base], metric)] if n))))
    two = [v for v in labels if "two-involutions" in v]
    gp = _family(end, "log10_gp_end", [(v, base) for v in two], alpha)
    gp_family = f"holm over {len(two)} two-involution variants" if len(two) > 1 else "none"
    for v, w in zip(two, gp):
        rows.append(dict(
            notebook=nb, claim=f"{_short(v, base)}: higher gradient penalty than the baseline at the end "
                               f"(log10 of the median GP over the last {GP_END_FRACTION:.0%} of the steps)",
            paper=paper.get(v, ""), metric="log10 gp_end", kind="difference", expected_sign=1.0, margin=np.nan,
            estimate=w["diff"], ci_low=w["ci_low"], ci_high=w["ci_high"], n_seeds=min(w["n_a"], w["n_b"]),
            adjustment=gp_family, confidence=w["confidence"], p_value=w["p_value"], p_adjusted=w["p_adjusted"],
            final_estimate=w["diff"], final_ci_low=w["ci_low"], final_ci_high=w["ci_high"],
            note=f"{v} - {base}; a difference of 1 = 10x the GP"))

    rows += instability_claims(nb, end, base, labels, paper, f"diverged or collapsed (GP above {GP_HIGH:g} for "
                                                            f"{GP_HIGH_WINDOW} steps) in {steps} steps")
    all_labels = list(pd.unique(end["label"]))
    m_ref = [_values(at_reference, label, f"{metric}_final").mean() for label in all_labels]
    m_end = [_values(end, label, f"{metric}_final").mean() for label in all_labels]
    ok = [(a, b) for a, b in zip(m_ref, m_end) if np.isfinite(a) and np.isfinite(b)]
    if len(ok) >= 3:
        rho, p = stats.spearmanr([a for a, _ in ok], [b for _, b in ok])
        order_ref, order_end = ([label for m, label in sorted((m, label) for m, label in zip(means, all_labels)
                                                               if np.isfinite(m))] for means in (m_ref, m_end))
        rows.append(descriptive_claim(
            nb, f"the ranking at step {reference_step} holds at the end: Spearman rho of the configurations' mean "
                f"{metric} at step {reference_step} and at step {steps}",
            "- (the paper reports the end of 50,000 steps only)", "spearman rho", float(rho),
            n_seeds=int(end.groupby("label").size().min()), p_value=float(p),
            note=(f"{len(ok)} configurations; at {reference_step}: {' < '.join(_short(x, base) for x in order_ref)}; "
                  f"at the end: {' < '.join(_short(x, base) for x in order_end)}")))
    return with_verdicts(rows)


def _interval(w: dict) -> str:
    if not np.isfinite(w["diff"]):
        return "n/a"
    if np.isfinite(w["ci_low"]) and np.isfinite(w["ci_high"]):
        return f"{w['diff']:+.2f} [{w['ci_low']:+.2f}, {w['ci_high']:+.2f}]"
    return f"{w['diff']:+.2f} (no interval)"


def describe_points(comparison: pd.DataFrame, points: dict[str, str]) -> str:
    """Markdown: per variant, what `compare_points`'s table says at each point (``points``: {point: how to name it,
    e.g. "at step 2000"}), and whether it changed."""
    if not len(comparison):
        return "No variant to compare."
    lines = []
    for r in comparison.to_dict("records"):
        parts = [f"{name}: {r[f'{p}_diff']:+.3g} ({r[f'{p}_direction']})" if np.isfinite(r[f"{p}_diff"])
                 else f"{name}: no value" for p, name in points.items()]
        verdict = ("not testable at every point (fewer than 2 seeds)" if r["same"] is None or r["same"] != r["same"]
                   else "the same at every point" if r["same"] else "**changes between the points**")
        lines.append(f"- **{r['variant']}** minus the baseline, {r['statistic']}: " + "; ".join(parts)
                     + f": {verdict}.")
    return "\n".join(lines)
