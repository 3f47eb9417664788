"""gan_lib.report on hand-made run folders with known numbers: per-run summaries, mean / sd / t-interval over
seeds, outcomes, Table 2 (columns, eq. 4, the case 6 flag) and the Markdown writer."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_runs import SLOW_ROWS_SEC, make_run

from gan_lib import report
from gan_lib.layers import Involution2d, count_parameters
from gan_lib.study import TABLE2, igan_label


@pytest.fixture
def runs(tmp_path):
    """label 'a': 3 seeds with best swd 1, 2, 3; label 'b': one completed, one diverged at step 15."""
    paths = [make_run(tmp_path, "a", 0, [5.0, 1.0], sec=0.1),
             make_run(tmp_path, "a", 1, [2.0, 4.0], sec=0.2),
             make_run(tmp_path, "a", 2, [3.0, 3.0], sec=0.3),
             make_run(tmp_path, "b", 0, [7.0, 6.0], device="cuda", precision="bf16"),
             make_run(tmp_path, "b", 1, [8.0], state="diverged", step=15,
                      reason="gradient penalty above 100.0 for 10 consecutive steps (step 15)")]
    return paths


def test_summarize_runs_best_final_and_timing(runs):
    s = report.summarize_runs(runs)
    assert list(s["label"]) == ["a", "a", "a", "b", "b"] and list(s["seed"]) == [0, 1, 2, 0, 1]
    assert list(s["swd_best"]) == [1.0, 2.0, 3.0, 6.0, 8.0]
    assert list(s["swd_best_step"]) == [20, 10, 10, 20, 10]
    assert list(s["swd_final"]) == [1.0, 4.0, 3.0, 6.0, 8.0]
    assert list(s["swd_16_best"]) == [0.5, 1.0, 1.5, 3.0, 4.0]
    # the first 10 (slow) rows are left out of the median
    assert s["sec_per_step"].tolist()[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert s.loc[4, "outcome"].startswith("diverged at step 15 (gradient penalty")
    assert s.loc[4, "gp_max"] == pytest.approx(0.5 * 15) and s.loc[0, "gp_final"] == pytest.approx(10.0)
    assert "swd_16_std" not in s and "eval_sec_best" not in s
    assert list(s["device"]) == ["cpu", "cpu", "cpu", "cuda", "cpu"] and s.loc[3, "precision"] == "bf16"


def test_aggregate_mean_sd_and_t_interval(runs):
    agg = report.aggregate(report.summarize_runs(runs), ["swd"])
    a = agg.set_index("label").loc["a"]
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n), sd = 1
    assert a["n"] == 3 and a["outcome"] == "3/3 completed"
    assert a["swd_best_mean"] == pytest.approx(2.0) and a["swd_best_sd"] == pytest.approx(1.0)
    assert a["swd_best_n"] == 3
    assert a["swd_best_ci_low"] == pytest.approx(2.0 - half) and a["swd_best_ci_high"] == pytest.approx(2.0 + half)
    assert a["swd_final_mean"] == pytest.approx(8 / 3) and a["swd_final_sd"] == pytest.approx(np.std([1, 4, 3], ddof=1))
    assert a["sec_per_step_mean"] == pytest.approx(0.2)
    b = agg.set_index("label").loc["b"]
    assert b["outcome"] == "1/2 completed, 1/2 diverged (step 15)"
    assert b["swd_best_mean"] == pytest.approx(7.0) and b["swd_best_sd"] == pytest.approx(math.sqrt(2))
    assert list(agg["label"]) == ["a", "b"]  # first-appearance order


def test_t_interval_edge_cases():
    one = report.t_interval([3.0, float("nan")])
    assert one["n"] == 1 and one["mean"] == 3.0 and math.isnan(one["sd"]) and math.isnan(one["ci_low"])
    assert report.t_interval([])["n"] == 0
    two = report.t_interval([1.0, 3.0], confidence=0.9)
    assert two["ci_high"] - two["mean"] == pytest.approx(6.313751514675041 * math.sqrt(2) / math.sqrt(2))


def test_outcomes_from_run_all_dicts_and_missing_folders(runs, tmp_path):
    failed = dict(label="c", seed=0, name="c-s0", path=str(tmp_path / "never-made"), state="failed",
                  step=None, reason="exit code 1; see train.log", reused=False)
    table = report.load_runs([str(runs[0]), failed])
    assert list(table["state"]) == ["completed", "failed"]
    assert table.loc[1, "outcome"] == "failed: exit code 1; see train.log"
    s = report.summarize_runs([runs[0], failed])
    assert math.isnan(s.loc[1, "swd_best"])
    with pytest.raises(FileNotFoundError, match="never-made"):
        report.load_runs([tmp_path / "never-made"])
    with pytest.raises(KeyError, match=r"no run with label 'zzz'.*\['a', 'c'\]"):
        report.pick([runs[0], failed], "zzz")
    assert report.pick(runs, "a")["seed"] == 0 and report.pick(runs, "a", seed=2)["seed"] == 2
    assert report.pick(runs, "zzz", missing_ok=True) is None  # a study rendered before that run finished
    assert [e["label"] for e in report.first_seed(runs)] == ["a", "b"]


def test_long_tables(runs):
    m = report.load_metrics(runs)
    assert len(m) == 20 * 4 + 15 and {"label", "seed", "step", "gp", "emd", "sec_per_step"} <= set(m.columns)
    assert m["sec_per_step"].max() == SLOW_ROWS_SEC
    ev = report.load_evals(runs)
    assert len(ev) == 9 and report.metric_columns(ev) == ["swd", "swd_16"]
    assert report.headline_metrics(ev) == ["swd"] and report.primary_metric(ev) == "swd"
    # SWD heads the offline metrics; the Inception ones head everything when their weights exist
    ev["kid_randconv"] = 0.001
    assert report.headline_metrics(ev) == ["swd", "kid_randconv"] and report.primary_metric(ev) == "swd"
    ev["fid"] = 30.0
    assert report.headline_metrics(ev) == ["fid", "swd", "kid_randconv"] and report.primary_metric(ev) == "fid"


def test_table2_columns_eq4_and_case6_flag(tmp_path):
    runs = []
    for i, c in enumerate(TABLE2):
        runs.append(make_run(tmp_path, igan_label(c["K"], c["G"], c["R"]), 0, [10.0 + i], model="igan",
                             kernel_size=c["K"], groups=c["G"], reduction_ratio=c["R"], width=16))
    costs = pd.DataFrame(dict(label=[igan_label(c["K"], c["G"], c["R"]) for c in TABLE2],
                              sec_per_step=[0.1 * (i + 1) for i in range(7)], peak_rss_mb=[500.0] * 7))
    t2 = report.table2(runs, costs=costs)
    for col in ("case", "K", "G", "R", "label", "n", "outcome", "swd_best_mean", "swd_best_sd", "swd_best", "C_run",
                "eq4_params_C_run", "eq4_params_C64", "true_params_C_run", "true_params_C64", "paper_params",
                "paper_params_flag", "paper_params_note", "paper_min_fid", "paper_sec_per_step", "sec_per_step",
                "cost_sec_per_step", "peak_rss_mb", "paper_time_rel_case1", "time_rel_case1"):
        assert col in t2, col
    assert list(t2["eq4_params_C64"]) == [800, 520, 2080, 200, 2336, 544, 1312]
    assert list(t2["paper_params"]) == [800, 520, 2080, 200, 2336, 644, 1312]
    assert list(t2["paper_params_flag"]) == [False] * 5 + [True, False]
    assert t2.loc[5, "paper_params_note"] == "printed 644, eq. (4) gives 544"
    assert list(t2["swd_best_mean"]) == [10.0 + i for i in range(7)]
    assert (t2["C_run"] == 16).all()
    # eq. (4) at C=16: exact where C divides by R*G, the formula's real value otherwise (R=8, G=4: 32)
    assert t2.loc[0, "eq4_params_C_run"] == (16 // 4 + 9) * (16 // 8) * 4
    assert t2.loc[1, "eq4_params_C_run"] == pytest.approx((16 / 4 + 49) * 16 / 8)
    for i, c in enumerate(TABLE2):
        assert t2.loc[i, "true_params_C64"] == count_parameters(Involution2d(64, c["K"], c["G"], c["R"]))
        assert t2.loc[i, "true_params_C_run"] == count_parameters(Involution2d(16, c["K"], c["G"], c["R"]))
    assert t2["cost_sec_per_step"].tolist() == pytest.approx([0.1 * (i + 1) for i in range(7)])
    assert t2.loc[2, "paper_time_rel_case1"] == pytest.approx(0.342 / 0.154)
    assert t2.loc[0, "sec_per_step"] == pytest.approx(0.1)
    text = report.describe_table2(t2, "swd")
    assert "case 1" in text and "644" in text and "Spearman" in text


def test_table2_with_missing_cases(tmp_path):
    t2 = report.table2([make_run(tmp_path, igan_label(3, 4, 2), 0, [4.0], model="igan")])
    assert t2.loc[0, "outcome"] == "1/1 completed" and (t2.loc[1:, "outcome"] == "not run").all()
    assert t2.loc[1:, "eq4_params_C64"].notna().all() and t2.loc[1:, "swd_best_mean"].isna().all()


def test_markdown_writer_and_save_table(tmp_path):
    df = pd.DataFrame({"name": ["a|b", "c"], "n": [1, 22], "x": [1.23456, float("nan")], "flag": [True, False]})
    assert report.to_markdown(df) == (
        "| name | n | x | flag |\n"
        "| --- | ---: | ---: | --- |\n"
        "| a\\|b | 1 | 1.235 | yes |\n"
        "| c | 22 |  |  |\n")
    assert report.to_markdown(df, floatfmt="{:.1f}").splitlines()[2] == "| a\\|b | 1 | 1.2 | yes |"
    paths = report.save_table(df, tmp_path / "out", "t")
    assert paths["md"].read_text() == report.to_markdown(df)
    back = pd.read_csv(paths["csv"])
    assert list(back.columns) == ["name", "n", "x", "flag"] and back.loc[0, "x"] == pytest.approx(1.23456)


def test_describe_texts(runs):
    agg = report.aggregate(report.summarize_runs(runs), ["swd"])
    text = report.describe_ranking(agg, "swd")
    assert text.startswith("Ranked by best swd") and "a 2 ± 1 < b 7 ± 1.4" in text
    assert "b: 1/2 completed, 1/2 diverged (step 15)." in text
    s = report.summarize_runs(runs)
    out = report.describe_outcomes(s, {"a": "stable", "b": "diverges"})
    assert "**a**: 3/3 completed" in out and "Paper: stable; here: 0/3 diverged, 0/3 kept the GP high" in out
    assert "Paper: diverges; here: 1/2 diverged, 0 of the 1 that did not kept the GP high" in out
    assert report.mean_sd(2.0, float("nan")) == "2" and report.mean_sd(float("nan"), 1.0) == ""


def test_welch_interval_matches_scipy():
    from scipy import stats

    a, b = [10.0, 11.5, 12.0, 9.0], [7.0, 8.0, 6.5]
    w = report.welch_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert w["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (w["ci_low"], w["ci_high"]) == pytest.approx((ref.low, ref.high))
    one = report.welch_interval([1.0], b)
    assert one["diff"] == pytest.approx(1.0 - np.mean(b)) and np.isnan(one["ci_low"])
    assert np.isnan(report.welch_interval([], b)["diff"])


def test_describe_outcomes_puts_best_and_final_beside_the_baseline_without_a_test_of_its_own(runs, tmp_path):
    """Each variant's best and final stand beside the baseline's as means; the text tests nothing (no
    'significant', no interval of its own: those are the claims table's, with Holm's correction) and says so."""
    runs = runs + [make_run(tmp_path, "c", s, [v]) for s, v in enumerate([10.0, 11.0, 12.0])]
    runs.append(make_run(tmp_path, "d", 0, [2.5]))
    s = report.summarize_runs(runs)
    claims = {"a": "stable", "b": "diverges", "c": "collapse", "d": "collapse"}
    out = report.describe_outcomes(s, claims, metric="swd", baseline="a")
    lines = out.splitlines()
    assert "vs the baseline" not in lines[0] and "here: 0/3 diverged, 0/3 kept the GP high" in lines[0]
    # b: best 6, 8 (7 ± 1.4), final 6, 8; a: best 1, 2, 3, final 1, 4, 3 (8/3 ± 1.5)
    assert "best swd 7 ± 1.4 vs the baseline's 2 ± 1, final swd 7 ± 1.4 vs the baseline's 2.667 ± 1.5" in lines[1]
    assert "(a diverged run's final is its last evaluation before it stopped)" in lines[1]
    assert "here: 1/2 diverged, 0 of the 1 that did not kept the GP high" in lines[1]
    assert "best swd 11 ± 1 vs the baseline's 2 ± 1" in lines[2] and "diverged run" not in lines[2]
    assert "best swd 2.5 vs the baseline's 2 ± 1" in lines[3]
    assert "here: 0/1 diverged, 0/1 kept the GP high" in lines[3]
    assert "significant" not in out and "CI" not in out and "interval" not in "\n".join(lines[:4])
    assert lines[-1].startswith("These are means over seeds, not tests") and "claims table" in lines[-1]
    # without a baseline: no comparison, no closing sentence
    plain = report.describe_outcomes(s, claims)
    assert "baseline" not in plain and "not tests" not in plain


def test_sustained_above_finds_the_first_long_streak():
    steps = list(range(1, 11))
    vals = [0, 50, 50, 0, 50, 50, 50, float("nan"), 50, 50]
    assert report.sustained_above(steps, vals, 10, 3) == 5
    assert report.sustained_above(steps, vals, 10, 4) != report.sustained_above(steps, vals, 10, 4)  # NaN: never
    assert report.sustained_above(steps, vals, 10, 2) == 2


def test_a_completed_run_whose_gp_stays_high_counts_as_unstable(tmp_path):
    """A collapse that completes (the GP stays far above a healthy critic's, below the divergence threshold) is
    reported, and it satisfies an instability claim, while the stable baseline agrees."""
    runs = [make_run(tmp_path, "base", 0, [2.0]), make_run(tmp_path, "base", 1, [3.0])]
    # gp = step: above GP_HIGH (10) from step 11 on, for 140 consecutive steps
    runs += [make_run(tmp_path, "bn", 0, [9.0], steps=150, gp=1.0), make_run(tmp_path, "bn", 1, [4.0])]
    s = report.summarize_runs(runs)
    assert s.loc[2, "gp_high_step"] == 11 and s["gp_high_step"].drop(2).isna().all()
    out = report.describe_outcomes(s, {"base": "stable", "bn": "collapse"}, metric="swd", baseline="base")
    base, bn = out.splitlines()[:2]
    assert "here: 0/2 diverged, 0/2 kept the GP high" in base and "GP above" not in base
    assert "GP above 10 for 100 steps without stopping the run in 1/2 (seed 0 from step 11)" in bn
    assert "here: 0/2 diverged, 1/2 kept the GP high" in bn


def test_a_run_whose_gp_stayed_high_before_it_diverged_is_named_as_such(tmp_path):
    """The run-up to a divergence is reported (not hidden by counting only the runs that finished)."""
    runs = [make_run(tmp_path, "base", 0, [2.0]), make_run(tmp_path, "base", 1, [3.0])]
    runs += [make_run(tmp_path, "bn", 0, [9.0], steps=150, step=140, gp=1.0, state="diverged"),
             make_run(tmp_path, "bn", 1, [4.0])]
    out = report.describe_outcomes(report.summarize_runs(runs), {"bn": "collapse"}, metric="swd", baseline="base")
    bn = out.splitlines()[1]
    assert "GP above 10 for 100 steps before diverging in 1/2 (seed 0 from step 11)" in bn
    assert "without stopping the run" not in bn
    assert "here: 1/2 diverged, 0 of the 1 that did not kept the GP high" in bn


def test_aggregate_does_not_average_seconds_across_devices(runs):
    agg = report.aggregate(report.summarize_runs(runs), ["swd"]).set_index("label")
    assert agg.loc["a", "devices"] == "cpu fp32 x3" and agg.loc["a", "sec_per_step_mean"] == pytest.approx(0.2)
    assert agg.loc["b", "devices"] == "cuda bf16 x1, cpu fp32 x1" and np.isnan(agg.loc["b", "sec_per_step_mean"])
    assert agg.loc["b", "swd_best_mean"] == pytest.approx(7.0)  # the metrics still pool the seeds


def test_aggregate_gives_the_final_metric_beside_the_best(runs):
    agg = report.aggregate(report.summarize_runs(runs), ["swd"]).set_index("label")
    a = agg.loc["a"]  # finals 1, 4, 3
    ref = report.t_interval([1.0, 4.0, 3.0])
    assert a["swd_final_n"] == 3 and (a["swd_final_ci_low"], a["swd_final_ci_high"]) == pytest.approx(
        (ref["ci_low"], ref["ci_high"]))
    from scipy import stats
    ci = stats.ttest_1samp([1.0, 4.0, 3.0], 0).confidence_interval(0.95)
    assert (ref["ci_low"], ref["ci_high"]) == pytest.approx((ci.low, ci.high))


def test_describe_ranking_says_when_the_final_order_differs(tmp_path):
    runs = [make_run(tmp_path, "a", s, [1.0, 9.0]) for s in range(2)]  # lowest best, highest final
    runs += [make_run(tmp_path, "b", s, [5.0, 5.0 + s]) for s in range(2)]
    text = report.describe_ranking(report.aggregate(report.summarize_runs(runs), ["swd"]), "swd")
    assert "By final swd: b 5.5 ± 0.71 < a 9 ± 0; **a different order from the best's.**" in text
    both = report.describe_comparison(report.aggregate(report.summarize_runs(runs), ["swd"]), "swd", igan="a")
    assert "here it ranks 1 of 2 by best swd and 2 of 2 by final swd (whether" in both
    runs += [make_run(tmp_path, "c", s, [7.0, 8.0]) for s in range(2)]
    same = report.describe_ranking(report.aggregate(report.summarize_runs(runs[2:]), ["swd"]), "swd")
    assert "the same order." in same


def test_step_costs_reuses_the_saved_table_only_when_asked(tmp_path, monkeypatch):
    from gan_lib import cost

    calls = []

    def fake_cost_table(configs, threads=None, progress=True):
        calls.append(list(configs))
        return pd.DataFrame(dict(label=list(configs), sec_per_step=[0.1 * (i + 1) for i in range(len(configs))]))

    monkeypatch.setattr(cost, "cost_table", fake_cost_table)
    configs = {"a": None, "b": None}
    first = report.step_costs(configs, tmp_path, measure=False)  # nothing saved yet: measured and saved
    assert calls == [["a", "b"]] and (tmp_path / "table_cost.csv").exists()
    again = report.step_costs({"b": None, "a": None}, tmp_path, measure=False)  # reused, in the configs' order
    assert len(calls) == 1 and list(again["label"]) == ["b", "a"] and again["sec_per_step"].tolist() == [0.2, 0.1]
    report.step_costs(configs, tmp_path, measure=True)  # train=True: measured again
    report.step_costs({"a": None, "c": None}, tmp_path, measure=False)  # a configuration it lacks: measured
    assert len(calls) == 3 and list(first["label"]) == ["a", "b"]


def test_repo_relative():
    from gan_lib.study import REPO

    assert report.repo_relative(REPO / "results" / "cpu") == "results/cpu"
    assert report.repo_relative(REPO.parent / "shared" / "data") == "../shared/data"
    assert report.repo_relative("runs") == "runs" and report.repo_relative(None) is None
    assert report.repo_relative(REPO) == "."
    beside = REPO.parent / "elsewhere" / "x"  # beside the repository but not in ../shared: kept absolute
    assert report.repo_relative(beside) == str(beside.resolve())


def test_final_step_and_the_note_on_finals_of_runs_that_stopped_early(runs):
    s = report.summarize_runs(runs)
    assert list(s["swd_final_step"]) == [20, 20, 20, 20, 10]  # b seed 1 diverged at 15: its last evaluation, 10
    note = report.early_final_note(s, ["a", "b"], "swd")
    assert note == "the final of a run that stopped early is its last evaluation: b seed 1 (diverged) at step 10"
    assert report.early_final_note(s, ["a"], "swd") == ""
    rows = report.difference_family(s, "swd", [dict(claim="b worse", paper="-", ours="b", reference="a",
                                                    expected_sign=1.0)], "x", "01")
    assert rows[0]["note"] == "b - a; " + note
    eq = report.equivalence_claim(s, "swd", claim="same", paper="-", ours="a", reference="a", margin=2.0,
                                  notebook="01")
    assert eq["note"] == "a - a"


def test_describe_ranking_reports_the_intervals_overlap_without_calling_it_a_test(runs):
    text = report.describe_ranking(report.aggregate(report.summarize_runs(runs), ["swd"]), "swd")
    assert "overlap (each configuration's own interval; the claims table tests the differences)." in text
    assert "significant" not in text
