"""The study's notebooks run end to end under the smoke preset (papermill), and so does
``python -m gan_lib reproduce``: figures (PNG), tables (CSV + Markdown, expected columns, finite values),
the executed notebook and its HTML.

To keep this quick on a small CPU: 4 generator steps, evaluations at steps 2 and 4, one torch thread, the
synthetic dataset for 01-03 (real MNIST for 04) and one runs folder shared by every test, so runs common to
several notebooks (iGAN case 1) and the reproduce test's runs are trained once.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from gan_lib import reproduce
from gan_lib.report import read_claims, verdict
from gan_lib.study import EXPERIMENTS

REPO = Path(__file__).resolve().parents[1]
QUICK = dict(preset="smoke", steps=4, eval_every=2, threads=1, progress=False)
PARAMETERS = ("preset", "dataset", "data_root", "image_size", "steps", "seeds", "eval_every", "device", "precision",
              "out_dir", "runs_root", "jobs", "threads", "train", "progress")

# per notebook: the PNGs and {table: columns it must have}
EXPECTED = {
    "01_gan_comparison": (
        ["fig3_samples.png", "fig4_igan_emd.png", "fig5_left_metrics.png"],
        {"runs": ["label", "seed", "outcome", "swd_best", "swd_final", "sec_per_step"],
         "table_comparison": ["label", "n", "outcome", "swd_best_mean", "swd_best_sd", "swd_best_n",
                              "swd_best_ci_low", "swd_best_ci_high", "swd_final_mean", "sec_per_step_mean"],
         "table_cost": ["label", "sec_per_step", "peak_rss_mb", "params_G", "params_D", "params_block_G"]}),
    "02_involution_hyperparameters": (
        ["fig5_right_cases.png", "samples_cases.png"],
        {"table2": ["case", "K", "G", "R", "swd_best_mean", "swd_best", "eq4_params_C_run", "eq4_params_C64",
                    "true_params_C_run", "true_params_C64", "paper_params", "paper_params_flag", "paper_min_fid",
                    "paper_sec_per_step", "sec_per_step", "cost_sec_per_step", "peak_rss_mb"],
         "table_cases": ["label", "swd_best_mean"], "table_cost": ["label", "sec_per_step", "peak_rss_mb"]}),
    "03_stability": (
        ["fig6_stability.png", "fig7_two_involutions.png"],
        {"table_outcomes": ["label", "seed", "outcome", "step", "gp_max", "gp_final", "gp_high_step", "swd_final", "swd_best"],
         "table_stability": ["label", "n", "outcome", "swd_best_mean"]}),
    "04_mnist": (
        ["samples_mnist.png", "metrics_mnist.png"],
        {"table_mnist": ["label", "n", "outcome", "swd_best_mean", "swd_best_ci_low", "sec_per_step_mean"]}),
    "05_long_training": (
        ["fig_swd_gp_over_training.png", "samples_over_training.png"],
        {"table_runs_long": ["label", "seed", "outcome_class", "gp_max", "gp_end", "gp_high_step", "swd_best",
                             "swd_final"],
         "table_outcome_counts": ["label", "n", "completed", "diverged", "collapsed", "other"],
         "table_long_training": ["label", "n", "outcome", "swd_best_mean", "swd_best_sd", "swd_best_ci_low",
                                 "swd_best_ci_high", "swd_final_mean", "swd_final_ci_high"]}),
}
# tables whose intervals and p-values are NaN with one seed (checked for their columns only)
EXPECTED_COLUMNS_ONLY = {"05_long_training": {
    "table_against_baseline": ["variant", "at2_diff", "at2_ci_low", "at2_direction", "end_diff", "end_ci_high",
                               "end_direction", "same"],
    "table_ranking": ["label", "at2_mean", "at2_rank", "end_mean", "end_rank", "rank_changed"],
    # no short study rendered beside it: the two points of the long runs only
    "table_what_changes": ["label", "paper", "at2_value", "at2_verdict", "end_value", "end_verdict", "unstable_long",
                           "change"]}}
UNDEFINED_WITH_ONE_SEED = ("_sd", "_ci_low", "_ci_high")
UNDEFINED_WHEN_IT_NEVER_HAPPENED = ("gp_high_step",)  # NaN: the GP never stayed high


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def check_outputs(name: str, out: Path, n_runs: int) -> None:
    pngs, tables = EXPECTED[name]
    for png in pngs:
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    for table, columns in tables.items():
        df = pd.read_csv(out / f"{table}.csv")
        assert (out / f"{table}.md").read_text().startswith("| "), table
        missing = set(columns) - set(df.columns)
        assert not missing, f"{table}.csv lacks {missing}"
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
                   and not c.endswith(UNDEFINED_WITH_ONE_SEED) and c not in UNDEFINED_WHEN_IT_NEVER_HAPPENED]
        bad = [c for c in numeric if not np.isfinite(df[c].to_numpy(dtype=float)).all()]
        assert not bad, f"{table}.csv has non-finite values in {bad}:\n{df[bad]}"
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == n_runs and (runs["state"] == "completed").all(), runs[["name", "outcome"]]
    claims = read_claims(out.parent / "claims.csv")
    mine = claims[claims["notebook"] == name[:2]]
    assert len(mine), f"{name} wrote no claims rows"
    assert list(mine["verdict"]) == [verdict(r.kind, r.ci_low, r.ci_high, r.expected_sign, r.margin)
                                     for r in mine.itertuples()]


def check_reads_cleanly(path: Path, relative_parameters: bool = True) -> None:
    """An executed notebook: no stderr output (progress bars, warnings), no path inside or beside the repository
    written absolute anywhere in it, no absolute path at all in the injected parameters (``relative_parameters``:
    False where a test passes its temporary folders), and the claims section right after the set-up."""
    nb = nbformat.read(path, as_version=4)
    text = path.read_text()
    for root in (str(REPO), str(REPO.parent)):
        assert root + "/" not in text, f"{path.name} shows the absolute path {root}"
    stderr = [o.get("text", "")[:200] for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, f"{path.name} has stderr output: {stderr}"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and not (relative_parameters and re.search(r'= "/', injected[0].source)), injected[0].source
    titles = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"]
    assert titles[1] == "## Claims", titles
    claims_cell = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Claims")) + 1
    shown = "".join(o.get("data", {}).get("text/markdown", "") for o in nb.cells[claims_cell].outputs)
    assert "| claim |" in shown and "**" in shown, "the claims table is not shown"


def test_notebooks_are_clean_and_parameterised():
    for name in EXPERIMENTS:
        nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert nb.cells[0].cell_type == "markdown"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        names = {line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line
                 and not line.startswith("#")}
        assert set(PARAMETERS) <= names, (name, set(PARAMETERS) - names)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{name} has stored outputs"
                assert "def " not in cell.source and "class " not in cell.source, f"{name} defines code"


@pytest.mark.slow
@pytest.mark.parametrize("name, n_runs", [("01_gan_comparison", 3), ("02_involution_hyperparameters", 7),
                                          ("03_stability", 5), ("05_long_training", 5)])
def test_notebook_runs_on_synthetic(name, n_runs, runs_root, tmp_path):
    out = tmp_path / name
    params = dict(QUICK, dataset="synthetic", runs_root=str(runs_root), out_dir=str(out))
    result = reproduce.execute_notebook(name, params, out, progress=False)
    assert result["status"] == "ok", result["error"]
    assert Path(result["notebook"]).exists() and Path(result["html"]).read_text().lstrip().startswith("<!DOCTYPE html>")
    check_outputs(name, out, n_runs)
    if name == "02_involution_hyperparameters":
        t2 = pd.read_csv(out / "table2.csv")
        assert t2["paper_params_flag"].tolist() == [False] * 5 + [True, False]
    if name == "05_long_training":  # its runs apart from 03's (same names, other steps); read at step 2 and 4
        for table, columns in EXPECTED_COLUMNS_ONLY[name].items():
            assert set(columns) <= set(pd.read_csv(out / f"{table}.csv").columns), table
        assert len(list((runs_root / "05_long_training" / "smoke" / "synthetic32").glob("*-s0"))) == 5
        assert (pd.read_csv(out / "table_runs_long.csv")["swd_best_step"] <= 4).all()
        claims = read_claims(out.parent / "claims.csv")
        assert claims.loc[claims["notebook"] == "05", "kind"].value_counts().to_dict() == {"difference": 6,
                                                                                        "descriptive": 5}
    check_reads_cleanly(Path(result["notebook"]), relative_parameters=False)
    executed = nbformat.read(result["notebook"], as_version=4)
    text = "".join(o.get("data", {}).get("text/markdown", "") for c in executed.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "Synthetic data" in text  # the loud note about the dataset


@pytest.mark.slow
def test_mnist_notebook(mnist_root, runs_root, tmp_path):
    out = tmp_path / "04_mnist"
    params = dict(QUICK, dataset="mnist", data_root=str(mnist_root), runs_root=str(runs_root), out_dir=str(out))
    result = reproduce.execute_notebook("04_mnist", params, out, progress=False)
    assert result["status"] == "ok", result["error"]
    check_outputs("04_mnist", out, 3)
    runs = pd.read_csv(out / "runs.csv")
    assert runs["outcome"].eq("completed").all()
    assert (runs_root / "smoke" / "mnist32").is_dir()


@pytest.mark.slow
def test_reproduce_cli_end_to_end(runs_root, tmp_path):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "gan_lib", "reproduce", "--preset", "smoke", "--only", "01", "--dataset", "synthetic",
           "--steps", "4", "--eval-every", "2", "--threads", "1", "--runs-root", str(runs_root), "--results",
           str(results), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "01_gan_comparison" in proc.stdout and "ok" in proc.stdout
    out = results / "smoke" / "01_gan_comparison"
    assert (out / "01_gan_comparison.ipynb").exists() and (out / "01_gan_comparison.html").exists()
    check_outputs("01_gan_comparison", out, 3)
    status = json.loads((results / "smoke" / "reproduce_status.json").read_text())
    entry = status["notebooks"]["01_gan_comparison"]
    assert entry["status"] == "ok" and entry["runs"] == {"completed": 3} and status["dataset"] == "synthetic"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_committed_renders_read_cleanly(name):
    """The study's rendered notebooks (results/cpu, rendered by `reproduce --no-train` from the committed runs)."""
    check_reads_cleanly(REPO / "results" / "cpu" / name / f"{name}.ipynb")
