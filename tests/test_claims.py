"""gan_lib.report.claims: the verdict rule on hand-made intervals, Holm's step-down on hand-computed p-values,
families and the machine effect on hand-made seeds (against scipy), claims.csv (each notebook replaces its own
rows), the README blocks generated between markers, and that the committed results/README.md and claims.csv agree."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_runs import make_run
from scipy import stats

from gan_lib import report
from gan_lib.report import claims as C

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")


@pytest.mark.parametrize("low, high, sign, expected", [
    (1.0, 3.0, +1, "reproduced"),       # wholly on the predicted side
    (-3.0, -1.0, +1, "contradicted"),   # wholly on the other side
    (-1.0, 2.0, +1, "inconclusive"),    # contains 0
    (0.0, 2.0, +1, "inconclusive"),     # touches 0: not wholly on a side
    (-3.0, -1.0, -1, "reproduced"),
    (1.0, 3.0, -1, "contradicted"),
    (-0.5, 0.5, -1, "inconclusive"),
    (NAN, NAN, +1, "inconclusive"),     # one seed: no interval
])
def test_difference_rule(low, high, sign, expected):
    assert C.verdict("difference", low, high, expected_sign=sign) == expected


@pytest.mark.parametrize("low, high, margin, expected", [
    (-1.0, 1.5, 2.0, "reproduced"),     # inside [-2, 2]
    (-2.0, 2.0, 2.0, "reproduced"),     # the ends count as inside
    (2.5, 4.0, 2.0, "contradicted"),    # wholly beyond +margin
    (-5.0, -2.1, 2.0, "contradicted"),  # wholly beyond -margin
    (1.0, 3.0, 2.0, "inconclusive"),    # crosses the margin
    (-3.0, 3.0, 2.0, "inconclusive"),   # wider than the margin on both sides
    (-0.1, 0.1, NAN, "inconclusive"),   # no margin declared
    (NAN, NAN, 2.0, "inconclusive"),
])
def test_equivalence_rule(low, high, margin, expected):
    assert C.verdict("equivalence", low, high, margin=margin) == expected


def test_descriptive_and_bad_input():
    assert C.verdict("descriptive", NAN, NAN) == "measured"
    with pytest.raises(ValueError, match="kind"):
        C.verdict("vibes", 1.0, 2.0)
    with pytest.raises(ValueError, match="expected_sign"):
        C.verdict("difference", 1.0, 2.0)
    with pytest.raises(ValueError, match="low > high"):
        C.verdict("difference", 2.0, 1.0, expected_sign=1)


def test_with_verdicts_replaces_a_typed_verdict():
    rows = [dict(notebook="01", claim="x", kind="difference", expected_sign=1, estimate=2.0, ci_low=1.0, ci_high=3.0,
                 verdict="contradicted")]
    df = C.with_verdicts(rows)
    assert list(df.columns) == list(C.COLUMNS) and df.loc[0, "verdict"] == "reproduced"


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005 (tested at .05/4, rejected), 0.01 (.05/3, rejected), 0.03 (.05/2 = .025: not rejected, Holm
    # stops), 0.04 (keeps .025)
    assert report.holm_levels(p) == pytest.approx([0.05 / 3, 0.025, 0.025, 0.0125])
    assert report.holm_adjusted_p(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # the same decisions both ways
    assert list(np.asarray(p) <= report.holm_levels(p)) == list(report.holm_adjusted_p(p) <= 0.05)
    assert report.holm_levels([0.03, 0.024]).tolist() == pytest.approx([0.05, 0.025])  # both rejected
    # the smallest fails at .025: Holm stops, and 0.03, below the .05 it would have had next, is tested at .025 too
    assert report.holm_levels([0.026, 0.03]).tolist() == pytest.approx([0.025, 0.025])
    assert report.holm_levels([NAN, 0.001]).tolist() == pytest.approx([0.05, 0.025])  # NaN counts as 1
    assert report.holm_adjusted_p([NAN, 0.001]).tolist() == pytest.approx([1.0, 0.002])


def _summary(values: dict, finals: dict | None = None, machines: dict | None = None) -> pd.DataFrame:
    rows = []
    for label, vals in values.items():
        for seed, v in enumerate(vals):
            device, precision = (machines or {}).get((label, seed), ("cpu", "fp32"))
            fin = (finals or {}).get(label, vals)[seed]
            rows.append(dict(label=label, seed=seed, state="completed", device=device, precision=precision,
                             swd_best=v, swd_final=fin, gp_high_step=NAN))
    return pd.DataFrame(rows)


def test_a_family_is_holm_corrected_and_its_intervals_are_scipys():
    """Case b's difference (+3.5, p ~ 0.013) is significant alone but not after Holm over 6 comparisons."""
    ref = [10.0, 11.0, 12.0]
    values = {"ref": ref, "b": [13.5, 14.5, 15.5]}
    values.update({f"n{i}": [10.0 + i / 10, 12.0, 11.0 - i / 10] for i in range(5)})  # five nulls
    s = _summary(values, finals={"b": [11.0, 12.0, 13.0]})
    alone = report.welch_interval(values["b"], ref)
    assert alone["ci_low"] > 0 and 0.05 / 6 < alone["p_value"] < 0.05
    comparisons = [dict(claim=label, paper="", ours=label, reference="ref", expected_sign=1)
                   for label in values if label != "ref"]
    rows = C.with_verdicts(C.difference_family(s, "swd", comparisons, "cases vs ref", "02"))
    b = rows.iloc[0]
    assert b["adjustment"] == "holm over 6 cases vs ref" and b["verdict"] == "inconclusive"
    assert b["confidence"] == pytest.approx(1 - 0.05 / 6)
    ref_ci = stats.ttest_ind(values["b"], ref, equal_var=False).confidence_interval(1 - 0.05 / 6)
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((ref_ci.low, ref_ci.high))
    assert b["estimate"] == pytest.approx(3.5) and b["n_seeds"] == 3 and b["p_adjusted"] == pytest.approx(
        min(1, 6 * alone["p_value"]))
    assert b["final_estimate"] == pytest.approx(1.0)  # the final metric beside the best
    assert (rows["verdict"] == "inconclusive").all()
    # one comparison alone: no correction, the 95% interval, the verdict of that interval
    one = C.with_verdicts(C.difference_family(s, "swd", comparisons[:1], "cases vs ref", "02")).iloc[0]
    assert one["adjustment"] == "none" and one["verdict"] == "reproduced" and one["confidence"] == pytest.approx(0.95)


def test_machine_effect_is_paired_over_configurations():
    values = {"a": [30.0, 32.0, 33.0], "b": [40.0, 41.0, 40.5], "c": [35.0, 36.0, 34.0]}
    machines = {(label, seed): ("cuda", "bf16") for label in values for seed in (0, 1)}
    s = _summary(values, machines=machines)
    row = C.machine_effect_claim(s, "swd", 2.0, "02")
    diffs = [v[2] - (v[0] + v[1]) / 2 for v in values.values()]  # cpu fp32 (seed 2) - mean cuda bf16 (seeds 0-1)
    ci = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert row["estimate"] == pytest.approx(np.mean(diffs)) and (row["ci_low"], row["ci_high"]) == pytest.approx(
        (ci.low, ci.high))
    assert "cpu fp32 minus cuda bf16" in row["claim"] and row["kind"] == "equivalence" and row["margin"] == 2.0
    assert C.machine_effect_claim(_summary(values), "swd", 2.0, "02") is None  # one machine: no row


def test_notebook_claims_on_fake_runs(tmp_path):
    runs = [make_run(tmp_path, label, seed, [v + seed, v + seed + 1.0])
            for label, v in (("dcgan", 20.0), ("sagan", 21.0), ("igan-k3g4r2", 10.0)) for seed in range(3)]
    s = report.summarize_runs(runs)
    costs = pd.DataFrame(dict(label=["dcgan", "sagan", "igan-k3g4r2"], sec_per_step=[0.2, 0.4, 0.3],
                              params_G=[100, 150, 120]))
    df = report.notebook_claims("01_gan_comparison", s, "swd", "cpu", costs)
    assert list(df["kind"]) == ["difference", "difference", "descriptive"]
    # iGAN is 10 lower than DCGAN in every seed (zero spread on both sides): a point interval below 0
    assert df.loc[0, "estimate"] == pytest.approx(-10.0) and df.loc[0, "verdict"] == "reproduced"
    assert df.loc[2, "estimate"] == pytest.approx(1.5) and df.loc[2, "verdict"] == "measured"
    assert "+20 parameters in G" in df.loc[2, "note"]
    with pytest.raises(KeyError, match="no claims"):
        report.notebook_claims("09_nothing", s, "swd", "cpu")


def test_stability_claims_count_unstable_runs(tmp_path):
    from gan_lib.study import STABILITY_CLAIMS

    runs = []
    for label in STABILITY_CLAIMS:
        for seed in range(2):
            collapsed = label.endswith("batch-norm") and seed == 1
            runs.append(make_run(tmp_path, label, seed, [5.0 + seed], steps=150, gp=1.0 if collapsed else 0.01))
    df = report.notebook_claims("03_stability", report.summarize_runs(runs), "swd", "cpu")
    assert (df["kind"] == "difference").sum() == 4 and set(df.loc[df["kind"] == "difference", "adjustment"]) == {
        "holm over 4 variants vs the baseline"}
    counts = df[df["kind"] == "descriptive"].set_index("claim")["estimate"]
    bn = [c for c in counts.index if c.startswith("kernel-batch-norm")]
    assert counts[bn[0]] == 1 and counts.drop(bn).eq(0).all()


def test_save_claims_replaces_the_notebooks_own_rows(tmp_path):
    out1, out2 = tmp_path / "cpu" / "01_x", tmp_path / "cpu" / "02_y"
    row = dict(claim="c", kind="difference", expected_sign=1, estimate=1.0, ci_low=0.5, ci_high=1.5)
    C.save_claims(C.with_verdicts([dict(row, notebook="02"), dict(row, notebook="02", claim="d")]), out2)
    C.save_claims(C.with_verdicts([dict(row, notebook="01")]), out1)
    path = C.save_claims(C.with_verdicts([dict(row, notebook="01", ci_low=-1.0, claim="new")]), out1)
    assert path == tmp_path / "cpu" / "claims.csv"
    df = C.read_claims(path)
    assert list(df["notebook"]) == ["01", "02", "02"] and list(df["claim"]) == ["new", "c", "d"]
    assert list(df["verdict"]) == ["inconclusive", "reproduced", "reproduced"]


def test_update_readme_fills_only_the_marked_blocks(tmp_path):
    results = tmp_path / "results"
    row = dict(notebook="01", claim="iGAN lower", paper="61.51", metric="swd_best", kind="difference",
               expected_sign=-1, estimate=-1.5, ci_low=-2.5, ci_high=-0.5, n_seeds=3, adjustment="none",
               confidence=0.95)
    C.save_claims(C.with_verdicts([row]), results / "cpu" / "01_gan_comparison")
    readme = results / "README.md"
    before, after = "# Results\n\nhand-written\n\n", "\n## more hand-written text\n"
    readme.write_text(before + C.readme_markers("claims", "cpu") + after)
    assert C.update_readme(readme, results / "cpu", "cpu") == ["claims"]
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(after)
    block = C.readme_block_text(text, "claims", "cpu")
    assert block == C.readme_claims_table(C.read_claims(results / "cpu" / "claims.csv"))
    assert "| 01 | iGAN lower | 61.51 | swd_best | -1.50 [-2.50, -0.50] (n = 3) |" in block
    assert "**reproduced**" in block and "1 rows: 1 reproduced." in block
    assert C.update_readme(readme, results / "cpu", "cpu") == ["claims"] and readme.read_text() == text  # stable
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert C.update_readme(plain, results / "cpu", "cpu") == [] and plain.read_text() == "no markers\n"


def test_configurations_table_says_when_best_and_final_orders_differ(tmp_path):
    runs = [make_run(tmp_path / "runs", "a", s, [1.0 + s, 9.0]) for s in range(2)]  # best low, final high
    runs += [make_run(tmp_path / "runs", "b", s, [5.0, 5.0 + s]) for s in range(2)]
    agg = report.aggregate(report.summarize_runs(runs), ["swd"])
    report.save_table(agg, tmp_path / "cpu" / "01_gan_comparison", "table_comparison")
    text = C.configurations_table(tmp_path / "cpu")
    assert "| 01 | a | 2 | swd | 1.50 ± 0.71" in text and "| 1 | 2 |" in text
    assert "by best swd a < b; by final swd b < a" in text


# --- the committed results ---

RESULTS = REPO / "results"


def test_every_committed_verdict_follows_from_its_interval():
    claims = C.read_claims(RESULTS / "cpu" / "claims.csv")
    assert {"01", "02", "03", "04"} <= set(claims["notebook"])  # every notebook wrote its rows
    recomputed = [C.verdict(r.kind, r.ci_low, r.ci_high, r.expected_sign, r.margin) for r in claims.itertuples()]
    assert list(claims["verdict"]) == recomputed
    tested = claims[claims["kind"] != "descriptive"]
    assert tested["ci_low"].notna().all() and (tested["n_seeds"] >= 3).all()


def test_results_readme_is_generated_from_the_committed_files():
    """The README's generated blocks are what claims.csv and the tables give now: a hand edit of a number in
    them, or a claims.csv re-rendered without `reproduce` rewriting the README, fails here."""
    text = (RESULTS / "README.md").read_text()
    for block, body in C.readme_blocks(RESULTS / "cpu", "cpu").items():
        found = C.readme_block_text(text, block, "cpu")
        assert found is not None, f"results/README.md has no {block} markers"
        assert found == body, f"results/README.md's {block} block differs from the one generated from results/cpu"


def test_reproduce_writes_the_readme_blocks_and_passes_relative_paths(tmp_path, monkeypatch):
    """`reproduce` (training and papermill faked): each notebook gets its paths relative to the repository and no
    progress bars, and the README's blocks are rewritten from the claims the notebooks wrote."""
    from types import SimpleNamespace

    import gan_lib.reproduce as rp
    from gan_lib.study import REPO

    results = tmp_path / "results"
    (results).mkdir()
    (results / "README.md").write_text("# R\n\n" + C.readme_markers("claims", "smoke"))
    seen = {}

    def fake_experiment(name, preset, **kwargs):
        return SimpleNamespace(specs=[1], run=lambda **_: [dict(name="x-s0", state="completed", reason=None)])

    def fake_execute(name, params, out_dir, progress=True):
        seen[name] = params
        row = dict(notebook=name[:2], claim=f"claim of {name}", kind="difference", expected_sign=1, estimate=1.0,
                   ci_low=0.5, ci_high=1.5, n_seeds=3, adjustment="none", confidence=0.95)
        C.save_claims(C.with_verdicts([row]), out_dir)
        return dict(status="ok", notebook=str(out_dir / f"{name}.ipynb"), html=None, error=None)

    monkeypatch.setattr(rp, "experiment", fake_experiment)
    monkeypatch.setattr(rp, "execute_notebook", fake_execute)
    data = REPO.parent / "shared" / "data" / "celeba"  # beside the repository: shown as ../shared/data/celeba
    status = rp.reproduce("smoke", only="01,03", dataset="celeba", data_root=str(data), runs_root=REPO / "runs",
                          results=results, log=lambda *_: None)
    p = seen["01_gan_comparison"]
    assert p["data_root"] == "../shared/data/celeba" and p["runs_root"] == "runs" and p["progress"] is False
    assert p["out_dir"] == str(results / "smoke" / "01_gan_comparison")  # outside the repository: as it is
    assert status["data_root"] == "../shared/data/celeba" and status["readme"] == "wrote claims"
    block = C.readme_block_text((results / "README.md").read_text(), "claims", "smoke")
    assert "| 01 | claim of 01_gan_comparison |" in block and "| 03 | claim of 03_stability |" in block
