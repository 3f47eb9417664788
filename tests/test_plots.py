"""gan_lib.plots on hand-made run folders: every figure builds, is returned and saved as a PNG, including
runs that diverged or have no samples."""
import pytest
from fake_runs import make_run
from matplotlib.figure import Figure

from gan_lib import plots, report


@pytest.fixture
def runs(tmp_path):
    return [make_run(tmp_path / "runs", "a", 0, [5.0, 1.0]), make_run(tmp_path / "runs", "a", 1, [2.0, 4.0]),
            make_run(tmp_path / "runs", "b", 0, [8.0], state="diverged", step=15, reason="gp exploded",
                     samples=(0, 10))]


def _png(path):
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_figures(runs, tmp_path):
    out = tmp_path / "figs"
    evals = report.load_evals(runs)
    figs = {
        "fig3.png": lambda p: plots.sample_grids(report.first_seed(runs), path=p),
        "fig4.png": lambda p: plots.emd_milestones(runs[0], milestones=2, path=p),
        "fig5.png": lambda p: plots.metric_curves(evals, ["swd", "swd_16"], band="ci", path=p),
        "fig5b.png": lambda p: plots.metric_curves(evals, "swd", path=p),
        "fig6.png": lambda p: plots.stability_curves(runs, path=p),
        "fig7.png": lambda p: plots.samples_over_steps(runs[2], path=p),
    }
    for name, make in figs.items():
        fig = make(out / name)
        assert isinstance(fig, Figure), name
        _png(out / name)


def test_milestones_and_missing_samples(runs, tmp_path):
    assert plots.pick_milestones([0, 10, 20, 30, 40], 3) == [0, 20, 40]
    assert plots.pick_milestones([0, 10], 5) == [0, 10]
    assert list(plots.sample_files(runs[2])) == [0, 10]
    bare = make_run(tmp_path / "runs", "c", 0, [1.0], samples=())
    plots.samples_over_steps(bare, path=tmp_path / "none.png")  # a note instead of an error
    _png(tmp_path / "none.png")
    plots.sample_grids([runs[0], bare], path=tmp_path / "grids.png")
    _png(tmp_path / "grids.png")
    with pytest.raises(ValueError, match="band"):
        plots.metric_curves(report.load_evals(runs), "swd", band="iqr")
    with pytest.raises(KeyError, match="fid"):
        plots.metric_curves(report.load_evals(runs), "fid")


def test_figures_of_a_run_not_finished_yet_say_so(tmp_path):
    """Rendering a study in progress (train=False): Figs. 4 and 7 of a missing run are a note, not an error."""
    for fn, name in ((plots.emd_milestones, "fig4.png"), (plots.samples_over_steps, "fig7.png")):
        fig = fn(None, path=tmp_path / name)
        assert isinstance(fig, Figure) and (tmp_path / name).stat().st_size > 0
        assert "not finished" in " ".join(t.get_text() for t in fig.texts)
