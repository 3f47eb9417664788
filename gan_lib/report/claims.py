"""Claims as data: one row per claim of the paper that a notebook tests, with its estimate, interval, the rule
that judges it and the verdict that rule gives. Verdicts are computed here, never typed.

A notebook builds its rows with `notebook_claims` and writes them with `save_claims` into
``results/<preset>/claims.csv`` (beside the notebooks' folders; each notebook replaces its own rows);
``python -m gan_lib reproduce`` then writes the "paper vs ours" table of ``results/README.md`` from that file
(`update_readme`, between markers), so no number in it is typed.

The rule (`verdict`), fixed before the comparisons are read:

* ``difference``: the paper predicts the sign of ours minus the reference (``expected_sign``; every metric is
  lower = better, so "A is better than B" is ``A - B`` with sign -1). ``reproduced`` when the interval lies on the
  predicted side of 0, ``contradicted`` when it lies on the other side, else ``inconclusive``.
* ``equivalence``: the paper says "no difference". ``reproduced`` when the interval lies inside
  [-margin, margin], ``contradicted`` when it lies outside it (wholly beyond one end), else ``inconclusive``.
  The 95% interval is used (the usual two one-sided tests use the 90% one: this is the stricter reading).
* ``descriptive``: a measurement with no prediction to test (a cost, a rank correlation): ``measured``.

Intervals: Welch t-intervals of the difference of the seeds' means (`stats.welch_interval`), the configuration's
best metric (min over evaluations, the paper's min(FID)) unless said otherwise; the final metric's difference is
given beside it at the same level (``final_*``: the best is a selected statistic). Families of comparisons (Table
2's cases against case 1; iGAN against the two other GANs; the stability variants against the baseline) are
Holm-corrected: each row's interval is at the level Holm tests it at (`stats.holm_levels`), so the verdict read
from the interval is Holm's decision; ``adjustment`` names the family and ``confidence`` the level.

A null result with a wide interval is ``inconclusive``: at 3 seeds only large differences can show.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..run_dir import atomic_write_text
from .runs import GP_HIGH, GP_HIGH_WINDOW, HEADLINE_METRICS
from .stats import holm_adjusted_p, holm_levels, t_interval, welch_interval

__all__ = ["ALPHA", "COLUMNS", "KINDS", "VERDICTS", "MARGINS", "equivalence_margin", "verdict", "with_verdicts",
           "early_final_note", "difference_family", "equivalence_claim", "machine_effect_claim", "descriptive_claim",
           "notebook_claims",
           "CLAIMS", "claims_path", "save_claims", "read_claims", "claims_markdown", "readme_claims_table",
           "configurations_table", "readme_blocks", "readme_block_text", "readme_markers", "update_readme",
           "AGGREGATE_TABLES", "MARGIN_NOTES", "long_training_table"]

ALPHA = 0.05
KINDS = ("difference", "equivalence", "descriptive")
VERDICTS = ("reproduced", "contradicted", "inconclusive", "measured")
COLUMNS = ("notebook", "claim", "paper", "metric", "kind", "expected_sign", "margin", "estimate", "ci_low", "ci_high",
           "n_seeds", "adjustment", "verdict", "confidence", "p_value", "p_adjusted", "final_estimate",
           "final_ci_low", "final_ci_high", "note")

# Equivalence margins: the largest difference of a metric's mean (over seeds) that counts as "no difference", per
# (preset, metric), declared here before any comparison is read. cpu preset, best SWD (x1e3): the seed-to-seed sd
# of one configuration in notebook 01 (the study's first runs, trained before any comparison of 02-04: DCGAN 0.6,
# SAGAN 1.3, iGAN 1.1; pooled 1.03, declared as 1.0) puts two seeds of the same configuration ~1.5 apart on
# average; the margin is twice the declared sd, 2.0: a mean difference within the spread of single seeds is "no
# difference". Other presets and metrics have no known spread yet: their equivalence claims stay inconclusive
# (margin NaN) until one is declared here.
MARGINS = {("cpu", "swd"): 2.0}
COUNT_METRICS = ("parameters", "unstable runs")  # descriptive estimates that are counts (shown without decimals)
MARGIN_NOTES = {("cpu", "swd"): "margin 2.0 = twice the pooled seed sd of best SWD in notebook 01 "
                                   "(1.03, declared as 1.0)"}


def equivalence_margin(preset: str, metric: str) -> float:
    """The declared margin of `MARGINS` for (preset, metric), NaN when none is declared."""
    return float(MARGINS.get((preset, metric), np.nan))


def _finite(*values) -> bool:
    return all(v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v)
               for v in values)


def verdict(kind: str, ci_low: float, ci_high: float, expected_sign: float | None = None,
            margin: float | None = None) -> str:
    """The verdict of one claim from its (adjusted) interval by the rule of the module docstring."""
    if kind == "descriptive":
        return "measured"
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}; one of {KINDS}")
    if not _finite(ci_low, ci_high):
        return "inconclusive"
    if ci_low > ci_high:
        raise ValueError(f"interval [{ci_low}, {ci_high}] has low > high")
    if kind == "difference":
        if expected_sign not in (-1, 1, -1.0, 1.0):
            raise ValueError(f"a difference claim needs expected_sign -1 or +1, got {expected_sign!r}")
        low, high = (ci_low, ci_high) if expected_sign > 0 else (-ci_high, -ci_low)  # predicted side: > 0
        if low > 0:
            return "reproduced"
        if high < 0:
            return "contradicted"
        return "inconclusive"
    if not _finite(margin) or margin <= 0:
        return "inconclusive"
    if -margin <= ci_low and ci_high <= margin:
        return "reproduced"
    if ci_low > margin or ci_high < -margin:
        return "contradicted"
    return "inconclusive"


def with_verdicts(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """The rows as a claims table in `COLUMNS` order, each ``verdict`` computed by `verdict` (any given one is
    replaced)."""
    df = pd.DataFrame(list(rows) if not isinstance(rows, pd.DataFrame) else rows)
    for c in COLUMNS:
        if c not in df:
            df[c] = np.nan if c not in ("claim", "paper", "metric", "kind", "adjustment", "note", "notebook") else ""
    df["verdict"] = [verdict(r.kind, r.ci_low, r.ci_high, r.expected_sign, r.margin) for r in df.itertuples()]
    return df[list(COLUMNS)]


# --- building rows ---

def _values(summary: pd.DataFrame, label: str, column: str) -> pd.Series:
    g = summary[summary["label"] == label]
    return pd.to_numeric(g[column], errors="coerce") if column in g else pd.Series(dtype=float)


def early_final_note(summary: pd.DataFrame, labels, metric: str) -> str:
    """Where the "final" value of runs of ``labels`` is not the end of training: the runs that stopped early
    (diverged, failed) and the step of their last ``metric`` evaluation, e.g. "the final of a run that stopped
    early is its last evaluation: kbn seed 0 (diverged) at step 1500"; "" when every run ran to its end."""
    col = f"{metric}_final_step"
    if col not in summary or "state" not in summary:
        return ""
    g = summary[summary["label"].isin(list(labels))]
    early = g[(g["state"] != "completed") & np.isfinite(pd.to_numeric(g[col], errors="coerce"))]
    if not len(early):
        return ""
    runs = ", ".join(f"{r.label} seed {int(r.seed)} ({r.state}) at step {int(getattr(r, col))}"
                     for r in early.itertuples())
    return f"the final of a run that stopped early is its last evaluation: {runs}"


def difference_family(summary: pd.DataFrame, metric: str, comparisons: list[dict], family: str,
                      notebook: str, alpha: float = ALPHA) -> list[dict]:
    """Difference claims ``ours - reference`` of best ``metric`` over seeds, Holm-corrected as one family.

    ``comparisons``: dicts with claim, paper, ours (label), reference (label), expected_sign. With one comparison
    there is no correction ("none"). Each row's interval is the Welch interval at the level Holm tests it at;
    ``final_*`` the final metric's difference at the same level."""
    best = [welch_interval(_values(summary, c["ours"], f"{metric}_best"),
                           _values(summary, c["reference"], f"{metric}_best")) for c in comparisons]
    p = [w["p_value"] for w in best]
    m = len(comparisons)
    levels = holm_levels(p, alpha) if m > 1 else np.full(m, alpha)
    p_adj = holm_adjusted_p(p) if m > 1 else np.asarray(p, dtype=float)
    adjustment = f"holm over {m} {family}" if m > 1 else "none"
    rows = []
    for c, w, level, pa in zip(comparisons, best, levels, p_adj):
        conf = 1 - float(level)
        at = welch_interval(_values(summary, c["ours"], f"{metric}_best"),
                            _values(summary, c["reference"], f"{metric}_best"), conf)
        fin = welch_interval(_values(summary, c["ours"], f"{metric}_final"),
                             _values(summary, c["reference"], f"{metric}_final"), conf)
        rows.append(dict(notebook=notebook, claim=c["claim"], paper=c["paper"], metric=f"{metric}_best",
                         kind="difference", expected_sign=c["expected_sign"], margin=np.nan, estimate=at["diff"],
                         ci_low=at["ci_low"], ci_high=at["ci_high"], n_seeds=min(at["n_a"], at["n_b"]),
                         adjustment=adjustment, confidence=conf, p_value=w["p_value"],
                         p_adjusted=float(pa) if np.isfinite(w["p_value"]) else np.nan,
                         final_estimate=fin["diff"], final_ci_low=fin["ci_low"], final_ci_high=fin["ci_high"],
                         note="; ".join(filter(None, [f"{c['ours']} - {c['reference']}", early_final_note(
                             summary, [c["ours"], c["reference"]], metric)]))))
    return rows


def equivalence_claim(summary: pd.DataFrame, metric: str, *, claim: str, paper: str, ours: str, reference: str,
                      margin: float, notebook: str, note: str = "", confidence: float = 1 - ALPHA) -> dict:
    """An equivalence claim ``ours - reference`` of best ``metric`` (Welch interval, no family)."""
    at = welch_interval(_values(summary, ours, f"{metric}_best"), _values(summary, reference, f"{metric}_best"),
                        confidence)
    fin = welch_interval(_values(summary, ours, f"{metric}_final"), _values(summary, reference, f"{metric}_final"),
                         confidence)
    return dict(notebook=notebook, claim=claim, paper=paper, metric=f"{metric}_best", kind="equivalence",
                expected_sign=np.nan, margin=margin, estimate=at["diff"], ci_low=at["ci_low"], ci_high=at["ci_high"],
                n_seeds=min(at["n_a"], at["n_b"]), adjustment="none", confidence=confidence, p_value=at["p_value"],
                p_adjusted=np.nan, final_estimate=fin["diff"], final_ci_low=fin["ci_low"],
                final_ci_high=fin["ci_high"], note="; ".join(filter(None, [f"{ours} - {reference}", note,
                                                                           early_final_note(summary, [ours, reference],
                                                                                            metric)])))


def _machines(summary: pd.DataFrame) -> pd.Series:
    prec = summary["precision"] if "precision" in summary else pd.Series("", index=summary.index)
    return (summary["device"].fillna("?").astype(str) + " " + prec.fillna("").astype(str)).str.strip()


def machine_effect_claim(summary: pd.DataFrame, metric: str, margin: float, notebook: str,
                         confidence: float = 1 - ALPHA) -> dict | None:
    """The machine / precision effect of a study that trained each configuration's seeds on two machines: for
    each configuration, mean(runs on machine A) - mean(runs on machine B) (A, B = the two "device precision"
    values in sorted order, e.g. "cpu fp32" and "cuda bf16"), then the t-interval of the mean of those
    differences over the configurations (each configuration one paired observation). An equivalence claim of the
    study's protocol, not of the paper. None when the runs are not on exactly two machines, each configuration on
    both."""
    if "device" not in summary or not len(summary):
        return None
    machines = _machines(summary)
    kinds = sorted(machines.unique())
    if len(kinds) != 2:
        return None
    a, b = kinds
    diffs = {"best": [], "final": []}
    for label in pd.unique(summary["label"]):
        g = summary["label"] == label
        if set(machines[g]) != {a, b}:
            return None
        for which in diffs:
            col = pd.to_numeric(summary[f"{metric}_{which}"], errors="coerce")
            diffs[which].append(col[g & (machines == a)].mean() - col[g & (machines == b)].mean())
    best, final = t_interval(diffs["best"], confidence), t_interval(diffs["final"], confidence)
    n_seeds = int(summary.groupby("label").size().min())
    return dict(notebook=notebook, claim=f"the two machines agree: {a} minus {b}, per configuration, mean over "
                                         f"{best['n']} configurations (a check of the study's protocol)",
                paper="- (not in the paper: our runs mix machines)", metric=f"{metric}_best", kind="equivalence",
                expected_sign=np.nan, margin=margin, estimate=best["mean"], ci_low=best["ci_low"],
                ci_high=best["ci_high"], n_seeds=n_seeds, adjustment="none", confidence=confidence,
                p_value=best["p_value"], p_adjusted=np.nan, final_estimate=final["mean"],
                final_ci_low=final["ci_low"], final_ci_high=final["ci_high"],
                note=f"paired over {best['n']} configurations ({a} vs {b} runs of each)")


def descriptive_claim(notebook: str, claim: str, paper: str, metric: str, estimate: float, n_seeds=np.nan,
                      note: str = "", p_value: float = np.nan) -> dict:
    """A measurement without a tested prediction (verdict ``measured``)."""
    return dict(notebook=notebook, claim=claim, paper=paper, metric=metric, kind="descriptive", expected_sign=np.nan,
                margin=np.nan, estimate=estimate, ci_low=np.nan, ci_high=np.nan, n_seeds=n_seeds, adjustment="none",
                confidence=np.nan, p_value=p_value, p_adjusted=np.nan, final_estimate=np.nan, final_ci_low=np.nan,
                final_ci_high=np.nan, note=note)


# --- the notebooks' claims ---

def _num(v, signed: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    text = f"{v:+.2f}" if signed else f"{v:.2f}"
    return text if abs(v) >= 0.1 or v == 0 else (f"{v:+.3g}" if signed else f"{v:.3g}")


def _case_text(c: dict) -> str:
    return f"case {c['case']} (K={c['K']}, G={c['G']}, R={c['R']})"


def _cost(costs: pd.DataFrame | None, label: str, column: str = "sec_per_step") -> float:
    if costs is None or "label" not in costs or label not in set(costs["label"]):
        return np.nan
    return float(costs.loc[costs["label"] == label, column].iloc[0])


def _gans_family(summary, metric, notebook, paper: str, where: str = "") -> list[dict]:
    from ..study import igan_label

    igan = igan_label(3, 4, 2)
    comparisons = [dict(claim=f"iGAN has a lower min({metric}) than {name}{where}", paper=paper, ours=igan,
                        reference=ref, expected_sign=-1) for name, ref in (("DCGAN", "dcgan"), ("SAGAN", "sagan"))]
    return difference_family(summary, metric, comparisons, "comparisons of iGAN with the other two GANs", notebook)


def claims_01(summary: pd.DataFrame, metric: str, preset: str, costs: pd.DataFrame | None = None) -> list[dict]:
    """§5.1: iGAN's min(FID) is the lowest of the three GANs (Fig. 5 left); its cost beside DCGAN's."""
    from ..study import TABLE2, igan_label

    nb = "01"
    rows = _gans_family(summary, metric, nb, paper=f"iGAN lowest min(FID) over training ({TABLE2[0]['paper_fid']}; "
                                                    "DCGAN and SAGAN higher, Fig. 5 left)")
    igan = igan_label(3, 4, 2)
    ratio = _cost(costs, igan) / _cost(costs, "dcgan")
    if np.isfinite(ratio):
        extra = _cost(costs, igan, "params_G") - _cost(costs, "dcgan", "params_G")
        rows.append(descriptive_claim(nb, "iGAN's cost beside DCGAN's: time per training step, iGAN / DCGAN",
                                      "- (§4.4 weighs memory and computation; no number for the three GANs)",
                                      "sec_per_step ratio (side by side)", ratio,
                                      note=f"{_cost(costs, igan):.3g} vs {_cost(costs, 'dcgan'):.3g} s/step; "
                                           f"{extra:+,.0f} parameters in G; one measurement side by side, no seeds"))
    return rows


def claims_02(summary: pd.DataFrame, metric: str, preset: str, costs: pd.DataFrame | None = None) -> list[dict]:
    """§5.2, Table 2: case 1 has the lowest min(FID) (six comparisons, one Holm family); G hardly matters
    (equivalence, case 5 vs 1); rank agreement with the paper's seven values; time grows with K; eq. (4)'s
    misprint; and the machine effect when the cases' seeds were trained on two machines."""
    from scipy import stats

    from ..layers import paper_param_count
    from ..study import TABLE2, igan_label

    nb = "02"
    case1 = TABLE2[0]
    ref = igan_label(case1["K"], case1["G"], case1["R"])
    comparisons = [dict(claim=f"{_case_text(c)} has a higher min({metric}) than case 1 (case 1 is the best)",
                        paper=f"{c['paper_fid']:.2f} vs {case1['paper_fid']:.2f}",
                        ours=igan_label(c["K"], c["G"], c["R"]), reference=ref, expected_sign=+1)
                   for c in TABLE2[1:]]
    rows = difference_family(summary, metric, comparisons, "cases vs case 1", nb)
    case5 = next(c for c in TABLE2 if c["K"] == 3 and c["G"] == 1)
    margin = equivalence_margin(preset, metric)
    rows.append(equivalence_claim(
        summary, metric, claim=f"the group G hardly affects min({metric}): {_case_text(case5)} ~ case 1",
        paper=f"'G hardly affects FID': {case5['paper_fid']:.2f} vs {case1['paper_fid']:.2f}",
        ours=igan_label(case5["K"], case5["G"], case5["R"]), reference=ref, margin=margin, notebook=nb,
        note=MARGIN_NOTES.get((preset, metric), "no margin declared for this preset and metric")))
    means = [_values(summary, igan_label(c["K"], c["G"], c["R"]), f"{metric}_best").mean() for c in TABLE2]
    ok = [(m, c["paper_fid"]) for m, c in zip(means, TABLE2) if np.isfinite(m)]
    if len(ok) >= 3:
        rho, p = stats.spearmanr([m for m, _ in ok], [f for _, f in ok])
        rows.append(descriptive_claim(nb, f"rank agreement of the cases' mean best {metric} with the paper's "
                                          f"min(FID) (Spearman rho)", "7 values, 61.51 to 112.85", "spearman rho",
                                      float(rho), n_seeds=int(summary.groupby("label").size().min()),
                                      note=f"{len(ok)} cases", p_value=float(p)))
    times = [(c["K"], _cost(costs, igan_label(c["K"], c["G"], c["R"])), c["paper_sec_per_step"]) for c in TABLE2]
    times = [t for t in times if np.isfinite(t[1])]
    if len(times) >= 3:
        rho, _ = stats.spearmanr([k for k, _, _ in times], [s for _, s, _ in times])
        rho_paper, _ = stats.spearmanr([k for k, _, _ in times], [p for _, _, p in times])
        t1 = _cost(costs, ref)

        def rel(k, col):
            vals = [(s if col == 1 else p) / (t1 if col == 1 else case1["paper_sec_per_step"])
                    for kk, s, p in times if kk == k]
            return "-".join(f"{v:.2f}" for v in sorted(vals))
        rows.append(descriptive_claim(
            nb, "larger K costs more computation: Spearman rho of time per step (side by side) with K",
            f"rho {rho_paper:.2f} (Table 2's time per step)", "spearman rho", float(rho),
            note=f"time relative to case 1, K=1 / 5 / 7: {rel(1, 1)} / {rel(5, 1)} / {rel(7, 1)} "
                 f"(paper {rel(1, 2)} / {rel(5, 2)} / {rel(7, 2)})"))
    for c in TABLE2:
        eq4 = paper_param_count(64, c["K"], c["G"], c["R"])
        if eq4 != c["paper_params"]:
            rows.append(descriptive_claim(nb, f"{_case_text(c)}: #parameters by eq. (4) at C=64",
                                          f"{c['paper_params']} printed", "parameters", float(eq4),
                                          note="the printed value disagrees with eq. (4): a misprint"))
    machine = machine_effect_claim(summary, metric, margin, nb)
    if machine is not None:
        machine["note"] += "; " + MARGIN_NOTES.get((preset, metric), "no margin declared")
        rows.append(machine)
    return rows


def claims_03(summary: pd.DataFrame, metric: str, preset: str, costs: pd.DataFrame | None = None) -> list[dict]:
    """§5.3: each variant (two involutions, with clipping, spectral / batch norm on the kernel) is worse than
    the stable baseline (one Holm family on best ``metric``), and how many of its runs diverged or kept a high GP."""
    from ..study import STABILITY_CLAIMS, igan_label

    nb = "03"
    base = igan_label(3, 4, 2)
    variants = [label for label in STABILITY_CLAIMS if label != base]
    comparisons = [dict(claim=f"{label.removeprefix(base + '-')}: higher min({metric}) than the baseline",
                        paper=STABILITY_CLAIMS[label], ours=label, reference=base, expected_sign=+1)
                   for label in variants]
    rows = difference_family(summary, metric, comparisons, "variants vs the baseline", nb)

    return rows + instability_claims(nb, summary, base, variants, STABILITY_CLAIMS,
                                     f"diverged or kept the GP above {GP_HIGH:g} for {GP_HIGH_WINDOW} steps")


def unstable(runs: pd.DataFrame) -> pd.Series:
    """Per run (a row of `summarize_runs`): did it diverge (the divergence rule stopped it) or keep its GP above
    `GP_HIGH` for `GP_HIGH_WINDOW` steps (``gp_high_step`` set)?"""
    high = (np.isfinite(pd.to_numeric(runs["gp_high_step"], errors="coerce")) if "gp_high_step" in runs
            else pd.Series(False, index=runs.index))
    return (runs["state"] == "diverged") | high


def unstable_count(runs: pd.DataFrame, label: str) -> tuple[int, int]:
    """(how many of ``label``'s runs are `unstable`, how many runs it has) in ``runs`` (rows of `summarize_runs`)."""
    g = runs[runs["label"] == label] if len(runs) else runs
    return (int(unstable(g).sum()), len(g)) if len(g) else (0, 0)


def instability_claims(nb: str, runs: pd.DataFrame, base: str, labels, paper: dict, what: str) -> list[dict]:
    """One descriptive claim per configuration in ``labels``: how many of its runs are `unstable` ("k of n"),
    beside the baseline ``base``'s count; ``what`` completes "runs that ..."."""
    def count(label):
        return unstable_count(runs, label)

    k0, n0 = count(base)
    rows = []
    for label in labels:
        k, n = count(label)
        if n:
            short = label.removeprefix(base + "-") if label != base else label
            rows.append(descriptive_claim(nb, f"{short}: runs that {what}", paper.get(label, ""), "unstable runs",
                                          float(k), n_seeds=n, note=f"{k} of {n}; the baseline {k0} of {n0}"))
    return rows


def claims_04(summary: pd.DataFrame, metric: str, preset: str, costs: pd.DataFrame | None = None) -> list[dict]:
    """Appendix (MNIST): the paper shows samples only; §5.1's claim (iGAN lowest) is tested on MNIST."""
    return _gans_family(summary, metric, "04", paper="samples only (appendix); §5.1's claim carried to MNIST",
                        where=" on MNIST")


CLAIMS = {"01_gan_comparison": claims_01, "02_involution_hyperparameters": claims_02, "03_stability": claims_03,
          "04_mnist": claims_04}


def notebook_claims(notebook: str, summary: pd.DataFrame, metric: str, preset: str,
                    costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The claims table of ``notebook`` (a key of `CLAIMS`) from its runs' `summarize_runs` table, with verdicts."""
    if notebook not in CLAIMS:
        raise KeyError(f"no claims for notebook {notebook!r}; one of {list(CLAIMS)}")
    return with_verdicts(CLAIMS[notebook](summary, metric, preset, costs))


# --- claims.csv ---

def claims_path(out_dir: str | Path) -> Path:
    """``claims.csv`` beside a notebook's output folder (``results/<preset>/<notebook>`` -> ``results/<preset>``)."""
    return Path(out_dir).parent / "claims.csv"


def read_claims(path: str | Path) -> pd.DataFrame:
    """A claims.csv (empty table with `COLUMNS` when absent); ``notebook`` kept as text ("01")."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    df = pd.read_csv(path, dtype={"notebook": str}, keep_default_na=True)
    for c in ("claim", "paper", "metric", "kind", "adjustment", "verdict", "note"):
        df[c] = df[c].astype(object).fillna("").astype(str)
    return df


def save_claims(claims: pd.DataFrame, out_dir: str | Path) -> Path:
    """Replace this notebook's rows of `claims_path(out_dir)` with ``claims`` (atomic write); returns the path.
    Rows are kept in notebook order, each notebook's rows in the order built."""
    path = claims_path(out_dir)
    claims = with_verdicts(claims)
    mine = set(claims["notebook"])
    old = read_claims(path)
    old = old[~old["notebook"].isin(mine)]
    frames = [f for f in (old, claims) if len(f)]
    both = pd.concat(frames, ignore_index=True) if frames else claims
    both = both.sort_values("notebook", kind="stable")[list(COLUMNS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, both.to_csv(index=False))
    return path


# --- Markdown ---

def _interval(est, low, high) -> str:
    if not np.isfinite(est):
        return "n/a"
    text = _num(est, signed=True)
    return text + (f" [{_num(low, True)}, {_num(high, True)}]" if np.isfinite(low) and np.isfinite(high) else "")


def _rule(r) -> str:
    if r["kind"] == "difference":
        side = "< 0" if r["expected_sign"] < 0 else "> 0"
        text = f"difference {side}"
    elif r["kind"] == "equivalence":
        text = f"equivalence, margin ±{_num(r['margin'])}"
    else:
        return "descriptive"
    level = f"{100 * r['confidence']:.4g}% interval" if np.isfinite(r["confidence"]) else ""
    adj = r["adjustment"] if r["adjustment"] and r["adjustment"] != "none" else "no adjustment"
    return f"{text}; {level}, {adj}"


def _ours(r) -> str:
    if r["kind"] == "descriptive":
        text = f"{r['estimate']:.0f}" if r["metric"] in COUNT_METRICS else _num(r["estimate"])
        extra = [r["note"]] if r["note"] else []
        if np.isfinite(r["p_value"]):
            extra.append(f"p = {r['p_value']:.2g}")
        return text + (f" ({'; '.join(extra)})" if extra else "")
    n = f"n = {int(r['n_seeds'])}" if np.isfinite(r["n_seeds"]) else ""
    return f"{_interval(r['estimate'], r['ci_low'], r['ci_high'])} ({n})"


def _final(r) -> str:
    return "" if r["kind"] == "descriptive" else _interval(r["final_estimate"], r["final_ci_low"], r["final_ci_high"])


def claims_markdown(claims: pd.DataFrame) -> str:
    """The notebook's short "claims" section: each row's claim, estimate [interval], the rule and the verdict."""
    if not len(claims):
        return "No claims."
    lines = ["| claim | paper | metric | ours: estimate [interval] | final | rule | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in claims.iterrows():
        lines.append("| " + " | ".join(_md(x) for x in (r["claim"], r["paper"], r["metric"], _ours(r), _final(r),
                                                         _rule(r), f"**{r['verdict']}**")) + " |")
    return "\n".join(lines) + "\n"


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def readme_claims_table(claims: pd.DataFrame) -> str:
    """The "paper vs ours" table of results/README.md, one row per claims.csv row (numbers rounded, nothing else
    added): notebook, claim, paper, metric, estimate [interval], final, rule, verdict."""
    lines = ["| nb | claim | paper | metric | ours: estimate [interval] | final | rule | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in claims.iterrows():
        lines.append("| " + " | ".join(_md(x) for x in (r["notebook"], r["claim"], r["paper"], r["metric"], _ours(r),
                                                         _final(r), _rule(r), f"**{r['verdict']}**")) + " |")
    counts = claims["verdict"].value_counts()
    summary = ", ".join(f"{int(counts[v])} {v}" for v in VERDICTS if v in counts)
    return "\n".join(lines) + f"\n\n{len(claims)} rows: {summary}.\n"


# --- results/README.md: per-configuration best and final ---

# Each notebook's per-configuration table (`aggregate`), as it saves it.
AGGREGATE_TABLES = {"01_gan_comparison": "table_comparison", "02_involution_hyperparameters": "table_cases",
                    "03_stability": "table_stability", "04_mnist": "table_mnist",
                    "05_long_training": "table_long_training"}


def _headline(table: pd.DataFrame) -> str | None:
    for m in HEADLINE_METRICS:
        col = f"{m}_best_mean"
        if col in table and np.isfinite(pd.to_numeric(table[col], errors="coerce")).any():
            return m
    return None


def _mean_sd_ci(r, prefix) -> str:
    mean, sd = r.get(f"{prefix}_mean", np.nan), r.get(f"{prefix}_sd", np.nan)
    if not np.isfinite(mean):
        return ""
    text = f"{mean:.2f}" + (f" ± {sd:.2f}" if np.isfinite(sd) else "")
    low, high = r.get(f"{prefix}_ci_low", np.nan), r.get(f"{prefix}_ci_high", np.nan)
    return text + (f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) and np.isfinite(high) else "")


def configurations_table(results_dir: str | Path) -> str:
    """Markdown from the notebooks' per-configuration tables in ``results_dir`` (= results/<preset>): for each
    configuration its best and final headline metric (mean ± sd [95% t-interval] over seeds) and its rank by
    each; then, per notebook, whether the two orders differ."""
    results_dir = Path(results_dir)
    lines = ["| nb | configuration | n | metric | best: mean ± sd [95% CI] | final: mean ± sd [95% CI] | rank best | "
             "rank final |", "| --- | --- | ---: | --- | --- | --- | ---: | ---: |"]
    notes = []
    for name, table_name in AGGREGATE_TABLES.items():
        path = results_dir / name / f"{table_name}.csv"
        if not path.exists():
            continue
        table = pd.read_csv(path)
        m = _headline(table)
        if m is None:
            continue
        rank_best = table[f"{m}_best_mean"].rank(method="min")
        rank_final = table[f"{m}_final_mean"].rank(method="min")
        for i, r in table.iterrows():
            lines.append(f"| {name[:2]} | {_md(r['label'])} | {int(r['n'])} | {m} | {_mean_sd_ci(r, f'{m}_best')} | "
                         f"{_mean_sd_ci(r, f'{m}_final')} | {rank_best[i]:.0f} | {rank_final[i]:.0f} |")
        by_best = list(table.sort_values(f"{m}_best_mean", kind="stable")["label"])
        by_final = list(table.sort_values(f"{m}_final_mean", kind="stable")["label"])
        if by_best != by_final:
            notes.append(f"{name[:2]}: by best {m} {' < '.join(by_best)}; by final {m} {' < '.join(by_final)}.")
    text = "\n".join(lines) + "\n"
    text += ("\nThe order by final value differs from the order by best value in: " + " ".join(notes) + "\n"
             if notes else "\nThe order by final value is the order by best value in every notebook.\n")
    return text


# --- README blocks ---

def _markers(block: str, preset: str) -> tuple[str, str]:
    begin = (f"<!-- BEGIN {block} ({preset}): generated by `python -m gan_lib reproduce` from the files in "
             f"{preset}/; edits here are overwritten -->")
    return begin, f"<!-- END {block} ({preset}) -->"


def long_training_table(results_dir: str | Path) -> str:
    """Markdown of notebook 05's "what the long runs change" (``05_long_training/table_what_changes.csv``,
    `long_training.what_changes_markdown`); a line saying so when 05 is not rendered."""
    from .long_training import what_changes_markdown

    path = Path(results_dir) / "05_long_training" / "table_what_changes.csv"
    if not path.exists():
        return "Notebook 05 is not rendered at this preset yet.\n"
    return what_changes_markdown(pd.read_csv(path, keep_default_na=False, na_values=[""]))


def readme_blocks(results_dir: str | Path, preset: str) -> dict[str, str]:
    """{block name: generated Markdown} for results/README.md: ``claims`` (from claims.csv), ``configurations``
    (from the per-configuration tables) and ``long-training`` (notebook 05's "what the long runs change")."""
    results_dir = Path(results_dir)
    return {"claims": readme_claims_table(read_claims(results_dir / "claims.csv")),
            "configurations": configurations_table(results_dir),
            "long-training": long_training_table(results_dir)}


def _block_pattern(block: str, preset: str) -> re.Pattern:
    begin, end = _markers(block, preset)
    return re.compile(re.escape(begin) + r"\n(.*?)" + re.escape(end), re.DOTALL)


def readme_block_text(readme_text: str, block: str, preset: str) -> str | None:
    """The text between a block's markers in a README, None when the markers are absent."""
    m = _block_pattern(block, preset).search(readme_text)
    return m.group(1) if m else None


def update_readme(readme: str | Path, results_dir: str | Path, preset: str) -> list[str]:
    """Replace the generated blocks of ``readme`` that have markers (`readme_blocks`); returns the names of the
    blocks written. A README without markers is left alone (to add a block, put its two marker lines in)."""
    readme = Path(readme)
    text = readme.read_text()
    written = []
    for block, body in readme_blocks(results_dir, preset).items():
        pattern = _block_pattern(block, preset)
        if pattern.search(text):
            begin, end = _markers(block, preset)
            text = pattern.sub(lambda _: f"{begin}\n{body}{end}", text, count=1)
            written.append(block)
    if written:
        atomic_write_text(readme, text)
    return written


def readme_markers(block: str, preset: str) -> str:
    """The two marker lines of a block (to paste into a README once)."""
    begin, end = _markers(block, preset)
    return f"{begin}\n{end}\n"
