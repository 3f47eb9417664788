"""Notebook 05 (long training, issue 12): its specs and schedule, run folders that never meet 01-04's, the runs read
at the short study's end and at their end (hand-made run folders with known numbers), outcomes, claims, figures.
The notebook itself runs end to end in tests/test_notebooks.py."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_runs import make_run
from matplotlib.figure import Figure

from gan_lib import plots, report, reproduce, study
from gan_lib.report import long_training as lt
from gan_lib.report.claims import read_claims, save_claims, verdict

BASE = study.igan_label(3, 4, 2)
LABELS = [BASE, BASE + "-two-involutions", BASE + "-two-involutions-clip", study.igan_label(7, 4, 2),
          BASE + "-kernel-batch-norm"]


# --- specs, schedule, run folders ---

def test_specs_reuse_the_labels_and_configurations_of_02_and_03():
    specs = study.long_training((0, 1, 2))
    assert [s.label for s in specs[::3]] == LABELS and [s.seed for s in specs[:3]] == [0, 1, 2]
    assert study.SPECS["05_long_training"] is study.long_training and "05_long_training" in study.EXPERIMENTS
    same = {s.name: s.overrides for s in study.stability((0, 1, 2)) + study.involution_cases((0, 1, 2))}
    for s in specs:  # the same configuration as the short study's run of that name, only in another folder
        assert s.overrides == same[s.name] and s.subdir == "05_long_training"
    cfg = specs[9].config("cpu")
    assert (cfg.kernel_size, cfg.groups, cfg.reduction_ratio, cfg.num_blocks) == (7, 4, 2, 1)


def test_schedule_keeps_the_papers_shape():
    cpu = study.long_training_schedule("cpu")
    assert cpu == dict(steps=8000, eval_every=500, lr_decay_every=160, sample_every=2000, ckpt_every=500)
    assert cpu["steps"] // cpu["lr_decay_every"] == 50 == study.make_config("paper").steps // 1000
    assert study.long_training_reference_step("cpu") == 2000 == study.make_config("cpu").steps
    assert study.long_training_schedule("paper", 10_000)["lr_decay_every"] == 200
    assert study.long_training_reference_step("paper", 10_000) == 2000
    # a quick check shorter than the short study: the reference is a quarter of the run, on an evaluation
    assert study.long_training_reference_step("smoke", 4, 2) == 2
    assert study.long_training_schedule("smoke", 8, 2) == dict(steps=8, eval_every=2, lr_decay_every=1,
                                                                sample_every=2, ckpt_every=2)
    exp = study.experiment("05_long_training", "cpu")
    cfg = exp.configs()[BASE]
    assert (cfg.steps, cfg.eval_every, cfg.lr_decay_every, cfg.sample_every, cfg.ckpt_every) == (8000, 500, 160,
                                                                                                 2000, 500)
    assert (cfg.image_size, cfg.width, cfg.batch_size) == (32, 32, 64)
    # given explicitly, a value wins; the other notebooks keep their preset's schedule
    assert study.experiment("05_long_training", "cpu", steps=12_000, lr_decay_every=100).common[
        "lr_decay_every"] == 100
    assert study.experiment("05_long_training", "cpu", steps=12_000).common["lr_decay_every"] == 240
    assert study.experiment("03_stability", "cpu").configs()[BASE].steps == 2000


def test_run_folders_never_meet_the_short_studys():
    for root in ("runs", "results/runs"):
        short = {study.run_path(root, "cpu", "celeba", 32, s) for name, fn in study.SPECS.items()
                 if name != "05_long_training" for s in fn((0, 1, 2))}
        long = {study.run_path(root, "cpu", "celeba", 32, s) for s in study.long_training((0, 1, 2))}
        assert len(long) == 15 and not long & short
        assert {p.parents[2] for p in long} == {Path(root) / "05_long_training"}
        # the notebook's own root, as reproduce passes it, is not nested again
        assert {study.run_path(Path(root) / "05_long_training", "cpu", "celeba", 32, s)
                for s in study.long_training((0, 1, 2))} == long
        assert reproduce.notebook_runs_root(Path(root), "05_long_training", "cpu") == Path(root) / "05_long_training"
        assert reproduce.notebook_runs_root(Path(root) / "05_long_training", "05_long_training", "cpu") == Path(
            root) / "05_long_training"
    assert reproduce.select_notebooks("05") == ["05_long_training"]


def test_a_finished_short_run_is_neither_reused_nor_resumed(tmp_path):
    """03's 2,000-step run of the same name stays untouched: 05 looks in its own folder (train=False: nothing runs)."""
    short = make_run(tmp_path / "smoke" / "synthetic32", BASE, 0, [3.0, 2.0])
    before = (short / "status.json").read_text()
    (out,) = study.run_all(study.long_training((0,))[:1], "smoke", dataset="synthetic", runs_root=tmp_path,
                           progress=False, train=False, steps=8, eval_every=2)
    assert out["state"] == "not_trained" and Path(out["path"]) == tmp_path / "05_long_training" / "smoke" / \
        "synthetic32" / f"{BASE}-s0"
    assert (short / "status.json").read_text() == before


# --- reading runs at a step and at their end ---

@pytest.fixture
def flip(tmp_path):
    """'a' (baseline) and 'b', 3 seeds, 40 steps, evaluations at 10, 20, 30, 40: 'b' is 2 lower than 'a' at step 20
    and 4 higher at the end; one more 'b' run diverged at step 15 (no value at 20)."""
    runs = []
    for seed, d in enumerate((0.0, 0.1, -0.1)):
        runs.append(make_run(tmp_path, "a", seed, [5 + d, 4 + d, 3 + d, 2 + d], steps=40, samples=(20, 40)))
        runs.append(make_run(tmp_path, "b", seed, [3 + d, 2 + 2 * d, 4 + d, 6 + 3 * d], steps=40, samples=(20, 40)))
    runs.append(make_run(tmp_path, "b", 3, [9.0], steps=40, step=15, state="diverged", reason="gp"))
    return runs


def test_summarize_at_reads_the_evaluations_up_to_the_step(flip):
    at = lt.summarize_at(flip, 20).set_index("name")
    assert at.loc["a-s0", "swd_final"] == 4.0 and at.loc["a-s0", "swd_best"] == 4.0
    assert at.loc["b-s1", "swd_final"] == pytest.approx(2.2) and at.loc["b-s1", "swd_best"] == pytest.approx(2.2)
    assert at.loc["b-s0", "swd_final_step"] == 20 and at.loc["b-s0", "swd_best_step"] == 20
    assert at.loc["b-s3", "reached"] == False and np.isnan(at.loc["b-s3", "swd_final"])  # noqa: E712
    at25 = lt.summarize_at(flip, 25).set_index("name")  # between evaluations: the last one before
    assert at25.loc["a-s2", "swd_final"] == pytest.approx(3.9) and at25.loc["a-s2", "swd_final_step"] == 20
    end = lt.summarize_long(flip).set_index("name")
    assert end.loc["b-s0", "swd_final"] == 6.0 and end.loc["b-s0", "swd_best"] == 2.0
    assert end.loc["b-s3", "outcome_class"] == "diverged" and end.loc["a-s0", "outcome_class"] == "completed"
    # gp = 0.5 * step (fake_runs): the median of the last 10% of 40 steps (37..40) is 19.25
    assert end.loc["a-s0", "gp_end"] == pytest.approx(0.5 * 38.5)
    assert end.loc["a-s0", "log10_gp_end"] == pytest.approx(np.log10(19.25))
    # up to step 20 the GP (0.5 * step) passes 10 only at 21: never high there, and its max is 10
    assert at.loc["a-s0", "gp_max"] == 10.0 and np.isnan(at.loc["a-s0", "gp_high_step"])


def test_the_2k_ranking_against_the_end(flip):
    points = {"2k": lt.summarize_at(flip, 20), "end": lt.summarize_long(flip)}
    cmp = lt.compare_points(points, "a", "swd").set_index("variant")
    b = cmp.loc["b"]
    assert b["2k_diff"] == pytest.approx(np.mean([2.0, 2.2, 1.8]) - 4.0) and b["2k_direction"] == "better"
    assert b["2k_n"] == 3  # the diverged seed has no value at step 20
    assert b["end_direction"] == "worse" and not b["same"]
    assert b["2k_ci_high"] < 0 < b["end_ci_low"]
    w = report.welch_interval([2.0, 2.2, 1.8], [4.0, 4.1, 3.9])  # one variant: no Holm correction
    assert (b["2k_ci_low"], b["2k_ci_high"]) == pytest.approx((w["ci_low"], w["ci_high"]))
    ranks = lt.ranking_points(points, "swd").set_index("label")
    assert list(ranks["2k_rank"]) == [2, 1] and list(ranks["end_rank"]) == [1, 2] and ranks["rank_changed"].all()
    text = lt.describe_points(cmp.reset_index(), {"2k": "at step 20", "end": "at the end"})
    assert "at step 20: -2 (better)" in text and "at the end: +" in text and "changes between the points" in text
    one_seed = {k: v[v["seed"] == 0] for k, v in points.items()}
    assert lt.compare_points(one_seed, "a", "swd").loc[0, "same"] is None  # no interval: nothing to compare


def test_outcome_counts_completed_diverged_collapsed(tmp_path):
    runs = [make_run(tmp_path, "a", 0, [1.0], steps=150, gp=0.01),
            make_run(tmp_path, "a", 1, [1.0], steps=150, gp=0.5),  # GP above 10 from step 21 for 100+ steps
            make_run(tmp_path, "a", 2, [1.0], steps=150, step=60, state="diverged", gp=0.01),
            make_run(tmp_path, "b", 0, [1.0], steps=150, step=60, state="failed", gp=0.01)]
    s = lt.summarize_long(runs)
    assert list(s["outcome_class"]) == ["completed", "collapsed", "diverged", "failed"]
    counts = lt.outcome_counts(s).set_index("label")
    assert counts.loc["a", ["n", "completed", "diverged", "collapsed", "other"]].tolist() == [3, 1, 1, 1, 0]
    assert counts.loc["a", "diverged_at"] == "s2: 60" and counts.loc["a", "gp_high_from"] == "s1: 21"
    assert counts.loc["b", "other"] == 1 and counts.loc["b", "diverged_at"] == counts.loc["b", "gp_high_from"] == "none"
    assert lt.classify("completed", np.nan) == "completed" and lt.classify("running", 5.0) == "running"


# --- claims ---

@pytest.fixture
def five(tmp_path):
    """The five configurations x 3 seeds, 40 steps, evaluations at 10..40 (reference step 20): two-involutions
    ends 10 worse (and 1 better at 20) with a GP 100x the baseline's; clip ends 5 better; case 3 a little worse
    with a wide spread; kernel batch norm: one seed collapses (GP high)."""
    runs = []
    for label in LABELS:
        for seed, d in enumerate((0.0, 0.2, -0.2)):
            end, at20, gp = 10 + d, 12 + d, 0.001
            if label.endswith("two-involutions"):
                end, at20, gp = 20 + d, 11 + d, 0.1
            elif label.endswith("clip"):
                end = 5 + d
            elif label == study.igan_label(7, 4, 2):
                end = 11 + 10 * d
            elif label.endswith("batch-norm") and seed == 1:
                gp = 0.5
            runs.append(make_run(tmp_path, label, seed, [15 + d, at20, 13 + d, end], steps=130, eval_every=10,
                                 gp=gp))
    return runs


def test_claims_rows_their_families_and_verdicts(five, tmp_path):
    end, at = lt.summarize_long(five), lt.summarize_at(five, 20)
    df = lt.long_training_claims(end, at, "swd", "cpu", reference_step=20, steps=40)
    assert (df["notebook"] == "05").all()
    assert list(df["verdict"]) == [verdict(r.kind, r.ci_low, r.ci_high, r.expected_sign, r.margin)
                                   for r in df.itertuples()]
    diff = df[(df["kind"] == "difference") & (df["metric"] == "swd_final")].reset_index(drop=True)
    assert len(diff) == 4 and set(diff["adjustment"]) == {"holm over 4 variants vs the baseline at the end"}
    assert (diff["expected_sign"] == 1).all()
    v = dict(zip([c.split(":")[0] for c in diff["claim"]], diff["verdict"]))
    assert v == {"two-involutions": "reproduced", "two-involutions-clip": "contradicted",
                 "igan-k7g4r2": "inconclusive", "kernel-batch-norm": "inconclusive"}
    two = diff.iloc[0]
    assert two["estimate"] == pytest.approx(10.0) and two["final_estimate"] == two["estimate"]
    assert "at step 20 -1.00" in two["note"] and "stopped early" not in "".join(diff["note"])
    div = five + [make_run(tmp_path, LABELS[-1], 3, [15.0, 16.0], steps=130, step=25, eval_every=10,
                           state="diverged")]
    kbn = lt.long_training_claims(lt.summarize_long(div), lt.summarize_at(div, 20), "swd", "cpu", 20, 40)
    kbn = kbn[kbn["claim"].str.startswith("kernel-batch-norm: higher swd")].iloc[0]
    assert kbn["note"].endswith("; the final of a run that stopped early is its last evaluation: "
                                f"{LABELS[-1]} seed 3 (diverged) at step 20")
    # Holm: the smallest p is tested at alpha / 4
    assert diff["confidence"].max() == pytest.approx(1 - 0.05 / 4)
    gp = df[df["metric"] == "log10 gp_end"]
    assert len(gp) == 2 and gp.iloc[0]["estimate"] == pytest.approx(2.0) and gp.iloc[0]["verdict"] == "reproduced"
    assert set(gp["adjustment"]) == {"holm over 2 two-involution variants"}
    unstable = df[df["metric"] == "unstable runs"]
    assert dict(zip(unstable["claim"].str.split(":").str[0], unstable["estimate"])) == {
        "two-involutions": 0, "two-involutions-clip": 0, "igan-k7g4r2": 0, "kernel-batch-norm": 1}
    rho = df[df["metric"] == "spearman rho"].iloc[0]
    assert rho["verdict"] == "measured" and "at the end: two-involutions-clip < igan-k3g4r2" in rho["note"]
    # the notebook's rows go into claims.csv beside the other notebooks' and replace its own
    out = tmp_path / "results" / "cpu" / "05_long_training"
    save_claims(lt.long_training_claims(end, at, "swd", "cpu", 20, 40).iloc[:1].assign(notebook="03"), out)
    save_claims(df, out)
    save_claims(df, out)
    saved = read_claims(out.parent / "claims.csv")
    assert list(saved["notebook"]).count("05") == len(df) and list(saved["notebook"]).count("03") == 1


# --- figures ---

def test_figures(flip, tmp_path):
    evals, metrics = report.load_evals(flip), report.load_metrics(flip)
    fig = plots.long_training_curves(evals, metrics, "swd", mark_step=20, summary=lt.summarize_long(flip),
                                     path=tmp_path / "curves.png")
    assert isinstance(fig, Figure) and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    ax_m, ax_gp = fig.axes[:2]
    assert ax_gp.get_yscale() == "log"
    assert any(list(line.get_xdata()) == [20, 20] for line in ax_m.lines)  # the short study's end
    mean_a = next(line for line in ax_m.lines if line.get_label().startswith("a "))
    assert list(mean_a.get_ydata()) == pytest.approx([5, 4, 3, 2])
    assert lt.grid_steps(20, 80) == [20, 40, 80] and lt.grid_steps(2000, 10_000) == [2000, 4000, 8000, 10_000]
    firsts = report.first_seed(flip) + [report.pick(flip, "b", seed=3)]
    fig = plots.grids_at_steps(firsts, [20, 40], path=tmp_path / "grids.png")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(fig.axes) == 6 and any(t.startswith("no grid at step 20") for t in texts)  # b-s3 diverged at 15


def test_the_families_are_the_declared_variants_whatever_runs_exist(five):
    """A partial render (kernel batch norm not trained yet) keeps the families of the full one: the missing
    variant has no value (p = 1 for Holm, conservative: Holm never rejects less when a p-value falls)."""
    end, at = lt.summarize_long(five), lt.summarize_at(five, 20)
    kbn = BASE + "-kernel-batch-norm"
    part_end, part_at = end[end["label"] != kbn], at[at["label"] != kbn]
    full = lt.long_training_claims(end, at, "swd", "cpu", 20, 40, labels=LABELS)
    part = lt.long_training_claims(part_end, part_at, "swd", "cpu", 20, 40, labels=LABELS)
    diff = part[(part["kind"] == "difference") & (part["metric"] == "swd_final")].set_index("claim")
    assert len(diff) == 4 and set(diff["adjustment"]) == {"holm over 4 variants vs the baseline at the end"}
    row = diff.loc[[c for c in diff.index if c.startswith("kernel-batch-norm")][0]]
    assert row["n_seeds"] == 0 and np.isnan(row["estimate"]) and row["verdict"] == "inconclusive"
    full_diff = full[(full["kind"] == "difference") & (full["metric"] == "swd_final")].set_index("claim")
    for claim, r in diff.iterrows():  # every verdict reached without kernel batch norm stands with it
        if r["verdict"] != "inconclusive":
            assert full_diff.loc[claim, "verdict"] == r["verdict"]
    # without the declared labels the family shrinks to the runs present (what the labels argument prevents)
    shrunk = lt.long_training_claims(part_end, part_at, "swd", "cpu", 20, 40)
    assert "holm over 3 variants vs the baseline at the end" in set(shrunk["adjustment"])
    cmp = lt.compare_points({"end": part_end}, BASE, "swd", variants=LABELS).set_index("variant")
    assert list(cmp.index) == LABELS[1:] and cmp.loc[kbn, "end_direction"] == "no value"
    assert cmp["end_confidence"].max() == pytest.approx(1 - 0.05 / 4)


def _short_tables(results, five_end):
    """Rendered run tables of a fake short study: 03 with the baseline and the stability variants (two
    involutions 5 better than the baseline, kernel spectral norm too), 02 with case 1 and case 3 (case 3 10 worse;
    02's case 1 must not be used: 03 has the baseline)."""
    rows = []
    for label in (BASE, BASE + "-two-involutions", BASE + "-two-involutions-clip", BASE + "-kernel-spectral-norm",
                  BASE + "-kernel-batch-norm"):
        for seed, d in enumerate((0.0, 0.2, -0.2)):
            better = label.endswith(("two-involutions", "spectral-norm"))
            rows.append(dict(label=label, seed=seed, state="completed", swd_final=(5 if better else 10) + d,
                             swd_best=4 + d, gp_high_step=np.nan if seed or "batch" not in label else 700.0))
    report.save_table(pd.DataFrame(rows), results / "03_stability", "runs")
    rows = [dict(label=label, seed=seed, state="completed", swd_final=(30 if label == BASE else 20) + d,
                 swd_best=1.0, gp_high_step=np.nan)
            for label in (BASE, study.igan_label(7, 4, 2)) for seed, d in enumerate((0.0, 0.2, -0.2))]
    report.save_table(pd.DataFrame(rows), results / "02_involution_hyperparameters", "runs")


def test_what_the_long_runs_change_claim_by_claim(five, tmp_path):
    from gan_lib.report import claims as C

    results = tmp_path / "results" / "cpu"
    assert len(lt.short_study_summary(results, LABELS)) == 0  # nothing rendered: no short point
    end, at = lt.summarize_long(five), lt.summarize_at(five, 20)
    _short_tables(results, end)
    short = lt.short_study_summary(results, LABELS)
    assert set(short["label"]) == set(LABELS) and len(short) == 15  # not kernel spectral norm, not 02's case 1
    assert set(short.loc[short["label"] == BASE, "notebook"]) == {"03_stability"}
    assert set(short.loc[short["label"] == study.igan_label(7, 4, 2), "notebook"]) == {
        "02_involution_hyperparameters"}
    assert short.loc[short["label"] == BASE, "swd_final"].mean() == pytest.approx(10.0)

    points = {"short": short, "at20": at, "end": end}
    cmp = lt.compare_points(points, BASE, "swd", variants=LABELS)
    changes = lt.what_changes(cmp, list(points), short, end, BASE).set_index("label")
    two = changes.loc[BASE + "-two-involutions"]
    # short study: 5 better (contradicted); at step 20: 1 better; at the end: 10 worse (reproduced)
    assert (two["short_verdict"], two["at20_verdict"], two["end_verdict"]) == ("contradicted", "contradicted",
                                                                            "reproduced")
    assert two["change"] == "contradicted -> reproduced" and two["short_value"].startswith("-5.00 [")
    # clipping: the same as the baseline in the short study, 5 better at the end
    assert changes.loc[BASE + "-two-involutions-clip", "change"] == "inconclusive -> contradicted"
    assert changes.loc[BASE + "-kernel-batch-norm", "unstable_short"] == "1 of 3"
    assert changes.loc[BASE + "-kernel-batch-norm", "unstable_long"] == "1 of 3"
    assert changes.loc[BASE + "-two-involutions", "unstable_long_baseline"] == "0 of 3"
    # the end's verdicts are the claims table's (the same family, the same level)
    claims = lt.long_training_claims(end, at, "swd", "cpu", 20, 40, labels=LABELS)
    diff = claims[(claims["kind"] == "difference") & (claims["metric"] == "swd_final")]
    assert list(diff["verdict"]) == list(changes["end_verdict"])

    text = lt.what_changes_markdown(changes.reset_index())
    assert "| configuration | the paper | short study: difference [interval], verdict | long runs at step 20: " in text
    assert "| -5.00 [" in text and "(n = 3): contradicted |" in text and "**contradicted -> reproduced**" in text
    assert text.count("\n") == 2 + 4
    assert lt.point_name("at2000") == "long runs at step 2,000" and lt.point_name("end") == "long runs at the end"

    # the README block reads the table the notebook saved; before notebook 05 is rendered it says so
    assert C.long_training_table(results) == "Notebook 05 is not rendered at this preset yet.\n"
    report.save_table(changes.reset_index(), results / "05_long_training", "table_what_changes")
    assert C.long_training_table(results) == text
    readme = tmp_path / "results" / "README.md"
    readme.write_text("# R\n\n" + C.readme_markers("long-training", "cpu"))
    (results / "claims.csv").write_text(",".join(C.COLUMNS) + "\n")
    assert C.update_readme(readme, results, "cpu") == ["long-training"]
    assert C.readme_block_text(readme.read_text(), "long-training", "cpu") == text
