"""What the numbers say: a few sentences computed from the tables, for the notebooks.

These texts describe (rankings, outcomes, intervals); the verdicts on the paper's claims are the claims table's
(`gan_lib.report.claims`), computed by its rules.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .runs import GP_HIGH, GP_HIGH_WINDOW
from .stats import t_interval
from .tables import mean_sd, outcome_summary

__all__ = ["describe_ranking", "describe_comparison", "describe_table2", "describe_outcomes", "dataset_note",
           "SELECTION_NOTE"]


def _fmt(v, digits=4) -> str:
    return f"{v:.{digits}g}" if v is not None and np.isfinite(v) else "n/a"


SELECTION_NOTE = ("\"Best\" is the minimum over a run's evaluations (the paper's min(FID)): a selected statistic, "
                  "biased low against the value a run ends with, and more so for noisier runs; the final value "
                  "(the last evaluation) is not selected.")


def describe_ranking(agg: pd.DataFrame, metric: str, by: str = "label") -> str:
    """Markdown: configurations ranked by mean best ``metric``, with whether the 95% CIs of the first two
    overlap (lower is better); then the order by the final value, and where it differs from the best's."""
    col = f"{metric}_best_mean"
    if col not in agg or not np.isfinite(agg[col]).any():
        return f"No finite best {metric} to rank."
    ranked = agg[np.isfinite(agg[col])].sort_values(col, kind="stable")
    parts = [f"{r[by]} {mean_sd(r[col], r[f'{metric}_best_sd'])}" for _, r in ranked.iterrows()]
    text = [f"Ranked by best {metric} (lower is better; mean ± sd over seeds): " + " < ".join(parts) + "."]
    if len(ranked) >= 2:
        a, b = ranked.iloc[0], ranked.iloc[1]
        if np.isfinite(a[f"{metric}_best_ci_high"]) and np.isfinite(b[f"{metric}_best_ci_low"]):
            overlap = a[f"{metric}_best_ci_high"] >= b[f"{metric}_best_ci_low"]
            text.append(f"The 95% intervals of {a[by]} [{_fmt(a[f'{metric}_best_ci_low'])}, "
                        f"{_fmt(a[f'{metric}_best_ci_high'])}] and {b[by]} [{_fmt(b[f'{metric}_best_ci_low'])}, "
                        f"{_fmt(b[f'{metric}_best_ci_high'])}] "
                        + ("overlap" if overlap else "do not overlap")
                        + " (each configuration's own interval; the claims table tests the differences).")
        else:
            text.append("One seed per configuration: no interval, so the order is not tested.")
    fcol = f"{metric}_final_mean"
    if fcol in agg and len(ranked) >= 2:
        final = agg[np.isfinite(pd.to_numeric(agg[fcol], errors="coerce"))].sort_values(fcol, kind="stable")
        fparts = [f"{r[by]} {mean_sd(r[fcol], r.get(f'{metric}_final_sd'))}" for _, r in final.iterrows()]
        same = list(final[by]) == list(ranked[by])
        text.append(f"By final {metric}: " + " < ".join(fparts) + "; "
                    + ("the same order." if same else "**a different order from the best's.**"))
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
        fcol = f"{metric}_final_mean"
        final = agg[np.isfinite(agg[fcol])].sort_values(fcol, kind="stable") if fcol in agg else agg.iloc[0:0]
        frank = (f" and {list(final['label']).index(igan) + 1} of {len(final)} by final {metric}"
                 if igan in set(final["label"]) else "")
        text.append(f"The paper ranks iGAN first by min(FID); here it ranks {rank} of {len(ok)} by best {metric}"
                    f"{frank} (whether the differences are real: the claims section).")
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


def _beside_baseline(g: pd.DataFrame, base: pd.DataFrame, metric: str) -> str:
    """The best and the final ``metric`` of runs ``g`` beside the baseline's (mean ± sd over seeds): a
    description, no test (whether they differ is the claims table's verdict, with its family-wise correction)."""
    parts = []
    for stat in ("best", "final"):
        col = f"{metric}_{stat}"
        if col in g and col in base:
            a, b = t_interval(g[col]), t_interval(base[col])
            parts.append(f"{stat} {metric} {mean_sd(a['mean'], a['sd'])} vs the baseline's "
                         f"{mean_sd(b['mean'], b['sd'])}")
    return ", ".join(parts)


def describe_outcomes(summary: pd.DataFrame, claims: dict | None = None, metric: str | None = None,
                      baseline: str | None = None) -> str:
    """§5.3: which configurations completed or diverged (and where), which runs had the GP high for long
    (`GP_HIGH` for `GP_HIGH_WINDOW` steps: a collapse the divergence rule lets finish, or the run-up to a
    divergence), beside what the paper reports (``claims``: label -> its statement). With ``metric`` and
    ``baseline`` (a label), each other configuration's best and final metric stand beside the baseline's (means,
    no test: the claims table tests the differences, with Holm's correction, and gives the verdicts)."""
    text = []
    base = summary[summary["label"] == baseline] if baseline is not None else summary.iloc[0:0]
    for label in pd.unique(summary["label"]):
        g = summary[summary["label"] == label]
        n, n_div = len(g), int((g["state"] == "diverged").sum())
        line = f"- **{label}**: {outcome_summary(g['state'], g['step'])}; max GP {_fmt(g['gp_max'].max(), 3)}"
        high_all = g[np.isfinite(g["gp_high_step"])]
        high = high_all[high_all["state"] != "diverged"]
        before = high_all[high_all["state"] == "diverged"]
        for runs, when in ((high, "without stopping the run"), (before, "before diverging")):
            if len(runs):
                at = ", ".join(f"seed {int(r.seed)} from step {int(r.gp_high_step)}" for r in runs.itertuples())
                line += f"; GP above {GP_HIGH:g} for {GP_HIGH_WINDOW} steps {when} in {len(runs)}/{n} ({at})"
        if metric is not None and len(base) and label != baseline:
            beside = _beside_baseline(g, base, metric)
            line += f"; {beside}" if beside else ""
            if n_div:
                line += " (a diverged run's final is its last evaluation before it stopped)"
        if claims and label in claims:
            kept = (f"{len(high)}/{n} kept the GP high" if not n_div else
                    f"{len(high)} of the {n - n_div} that did not kept the GP high")
            line += f". Paper: {claims[label]}; here: {n_div}/{n} diverged, {kept}"
        text.append(line + ".")
    if metric is not None and len(base):
        text.append(f"\nThese are means over seeds, not tests: whether a configuration's {metric} differs from the "
                    "baseline's is the claims table's verdict (its interval, with Holm's correction over the "
                    "variants).")
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
