"""Intervals and multiple-comparison control, on the finite values of plain arrays.

* `t_interval`: mean, sd, n and the t-interval of one sample (scipy.stats.ttest_1samp).
* `welch_interval`: mean(a) - mean(b), its Welch t-interval and two-sided p-value (scipy.stats.ttest_ind,
  unequal variances).
* `holm_levels` / `holm_adjusted_p`: Holm's step-down procedure (Holm 1979). scipy.stats has no Holm (its
  ``false_discovery_control`` is Benjamini-Hochberg / -Yekutieli, which controls the false discovery rate, not the
  family-wise error) and statsmodels is not a dependency for six lines of arithmetic, so it is written out here and
  tested against hand-computed values.
"""
from __future__ import annotations

import numpy as np

__all__ = ["finite", "t_interval", "welch_interval", "holm_levels", "holm_adjusted_p"]


def finite(values) -> np.ndarray:
    """The finite entries of ``values`` (any array-like), as a flat float array."""
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def t_interval(values, confidence: float = 0.95) -> dict:
    """mean, sd (n-1), n, the two-sided ``confidence`` t-interval and the p-value of mean = 0 over the finite
    ``values``. sd, the interval and p are NaN for n < 2 (one seed says nothing about the spread); a zero sd
    gives the point interval [mean, mean]."""
    from scipy import stats

    x = finite(values)
    n = len(x)
    if n == 0:
        return dict(mean=np.nan, sd=np.nan, n=0, ci_low=np.nan, ci_high=np.nan, p_value=np.nan)
    mean = float(x.mean())
    if n < 2:
        return dict(mean=mean, sd=np.nan, n=1, ci_low=np.nan, ci_high=np.nan, p_value=np.nan)
    sd = float(x.std(ddof=1))
    if sd == 0:
        return dict(mean=mean, sd=0.0, n=n, ci_low=mean, ci_high=mean, p_value=0.0 if mean else 1.0)
    res = stats.ttest_1samp(x, 0.0)
    ci = res.confidence_interval(confidence)
    return dict(mean=mean, sd=sd, n=n, ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(res.pvalue))


def welch_interval(a, b, confidence: float = 0.95) -> dict:
    """diff = mean(a) - mean(b), its Welch t-interval at ``confidence`` (ci_low, ci_high), the two-sided p-value
    of diff = 0, and n_a, n_b, over the finite values. The interval and p are NaN when either side has fewer than 2
    values; both sides constant: the point interval [diff, diff]."""
    from scipy import stats

    x, y = finite(a), finite(b)
    out = dict(diff=np.nan, ci_low=np.nan, ci_high=np.nan, p_value=np.nan, n_a=len(x), n_b=len(y))
    if len(x) == 0 or len(y) == 0:
        return out
    out["diff"] = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return out
    if x.std() == 0 and y.std() == 0:
        return {**out, "ci_low": out["diff"], "ci_high": out["diff"], "p_value": 0.0 if out["diff"] else 1.0}
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(confidence)
    return {**out, "ci_low": float(ci.low), "ci_high": float(ci.high), "p_value": float(res.pvalue)}


def holm_levels(p_values, alpha: float = 0.05) -> np.ndarray:
    """The significance level each hypothesis is tested at by Holm's step-down procedure.

    Sorted by p-value, the i-th smallest (i = 1..m) is tested at alpha / (m - i + 1) while every smaller one was
    rejected; from the first that is not rejected on, every later one keeps that first level (Holm stops there,
    and each later p-value is at least as large, so none of them is rejected). A NaN p-value (no test possible)
    counts as 1. The interval of hypothesis j at confidence ``1 - level[j]`` then excludes 0 exactly when Holm
    rejects it (for a t-test, the interval and the test agree), which is what the claims' verdicts read."""
    p = np.asarray(p_values, dtype=float)
    p = np.where(np.isfinite(p), p, 1.0)
    m = len(p)
    levels = np.empty(m)
    stopped = None
    for rank, j in enumerate(np.argsort(p, kind="stable")):
        level = alpha / (m - rank) if stopped is None else stopped
        if stopped is None and p[j] > level:
            stopped = level
        levels[j] = level
    return levels


def holm_adjusted_p(p_values) -> np.ndarray:
    """Holm-adjusted p-values: max over the sorted prefix of (m - i + 1) * p_(i), capped at 1 (reject at alpha
    when adjusted p <= alpha; the same decisions as `holm_levels`). NaN p-values count as 1."""
    p = np.asarray(p_values, dtype=float)
    p = np.where(np.isfinite(p), p, 1.0)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, j in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[j]))
        adjusted[j] = running
    return adjusted
