"""gan_lib.reproduce without training: notebook selection, dataset choice (the synthetic fallback warning),
MNIST skipping, threads per job, and that one failing notebook is recorded while the others go on."""
import json
from types import SimpleNamespace

import pytest

import gan_lib.reproduce as rp
from gan_lib.__main__ import main
from gan_lib.config import ConfigError


def test_select_notebooks():
    assert rp.select_notebooks(None) == list(rp.EXPERIMENTS)
    assert rp.select_notebooks("03,1") == ["01_gan_comparison", "03_stability"]
    assert rp.select_notebooks(["02_involution_hyperparameters"]) == ["02_involution_hyperparameters"]
    with pytest.raises(ConfigError, match="matches 0 notebooks"):
        rp.select_notebooks("07")


def test_threads_for():
    assert rp.threads_for(1, cores=2) is None
    assert rp.threads_for(2, cores=2) == 1
    assert rp.threads_for(3, cores=16) == 5
    assert rp.threads_for(4, cores=2) == 1


def test_dataset_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_LIB_CELEBA", str(tmp_path / "no-celeba"))  # then only there is looked at
    dataset, root, warning = rp.choose_dataset()
    assert (dataset, root) == ("synthetic", None)
    assert "CelebA NOT FOUND" in warning and "img_align_celeba" in warning and "list_eval_partition.txt" in warning
    assert warning.splitlines()[0] == "#" * 78 and all(len(line) == 78 for line in warning.splitlines())
    with pytest.raises(ConfigError, match="CelebA was not found"):
        rp.choose_dataset("celeba")
    assert rp.choose_dataset("synthetic") == ("synthetic", None, None)
    dataset, root, warning = rp.choose_dataset(data_root=str(tmp_path))
    assert (dataset, root, warning) == ("celeba", str(tmp_path.resolve()), None)


def test_dataset_choice_finds_celeba(celeba_root, monkeypatch):
    monkeypatch.setenv("GAN_LIB_CELEBA", str(celeba_root))
    assert rp.choose_dataset() == ("celeba", str(celeba_root.resolve()), None)


def test_find_mnist_root(mnist_root, tmp_path, monkeypatch):
    assert rp.find_mnist_root(str(mnist_root))[0] == str(mnist_root.resolve())
    root, message = rp.find_mnist_root(str(tmp_path))
    assert root is None and "holds no MNIST image files" in message
    monkeypatch.setenv("GAN_LIB_MNIST", str(tmp_path / "nothing"))
    root, message = rp.find_mnist_root()
    assert root is None and "MNIST not found" in message and "GAN_LIB_MNIST" in message
    assert "pass --mnist-root PATH" in message and "\n" not in message  # the CLI's option, one line


def test_a_failing_notebook_is_recorded_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    """01 fails in a cell, 02 raises while training, 03 is fine, 04 is skipped (no MNIST); exit code 1."""
    monkeypatch.setenv("GAN_LIB_MNIST", str(tmp_path / "no-mnist"))
    executed = []

    def fake_experiment(name, preset, **kwargs):
        def run(**_):
            if name == "02_involution_hyperparameters":
                raise RuntimeError("disk full")
            return [dict(name="x-s0", state="completed", reason=None)]
        return SimpleNamespace(specs=[1], run=run)

    def fake_execute(name, params, out_dir, progress=True):
        executed.append((name, params))
        if name == "01_gan_comparison":
            return dict(status="failed", notebook=None, html=None, error="cell 5: KeyError: 'x'")
        return dict(status="ok", notebook=str(out_dir / f"{name}.ipynb"), html=None, error=None)

    monkeypatch.setattr(rp, "experiment", fake_experiment)
    monkeypatch.setattr(rp, "execute_notebook", fake_execute)
    code = main(["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--jobs", "2", "--runs-root",
                 str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--no-progress"])
    assert code == 1
    status = json.loads((tmp_path / "results" / "smoke" / "reproduce_status.json").read_text())
    nbs = status["notebooks"]
    assert nbs["01_gan_comparison"]["status"] == "failed" and "KeyError" in nbs["01_gan_comparison"]["error"]
    assert nbs["02_involution_hyperparameters"]["status"] == "failed"
    assert "disk full" in nbs["02_involution_hyperparameters"]["error"]
    assert nbs["03_stability"]["status"] == "ok"
    assert nbs["04_mnist"]["status"] == "skipped" and "MNIST not found" in nbs["04_mnist"]["message"]
    assert [n for n, _ in executed] == ["01_gan_comparison", "03_stability", "05_long_training"]
    params = executed[0][1]
    assert params["threads"] == rp.threads_for(2) and params["jobs"] == 2 and params["preset"] == "smoke"
    assert params["runs_root"] == str((tmp_path / "runs").resolve()) and params["dataset"] == "synthetic"
    out = capsys.readouterr().out
    assert "reproduce summary" in out and "skipped" in out and "disk full" in out

    # a second run with only the skipped notebook: still exit code 0 (skipped is not a failure)
    assert main(["reproduce", "--preset", "smoke", "--only", "04", "--dataset", "synthetic", "--runs-root",
                 str(tmp_path / "runs"), "--results",
                 str(tmp_path / "results"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "results" / "smoke" / "reproduce_status.json").read_text())["notebooks"][
        "01_gan_comparison"]["status"] == "failed"  # earlier entries are kept


def test_reproduce_cli_errors(capsys):
    assert main(["reproduce", "--preset", "huge"]) == 2
    assert main(["reproduce", "--preset", "smoke", "--only", "9"]) == 2
    assert "matches 0 notebooks" in capsys.readouterr().err
    assert main(["reproduce", "--preset", "smoke", "--seeds", "a,b"]) == 2


def test_a_notebook_with_its_own_runs_root_uses_it(tmp_path):
    runs = tmp_path / "runs"
    (runs / "cpu").mkdir(parents=True)
    assert rp.notebook_runs_root(runs, "02_involution_hyperparameters", "cpu") == runs
    (runs / "02_involution_hyperparameters" / "cpu").mkdir(parents=True)
    assert rp.notebook_runs_root(runs, "02_involution_hyperparameters", "cpu") == runs / "02_involution_hyperparameters"
    assert rp.notebook_runs_root(runs, "02_involution_hyperparameters", "smoke") == runs  # not for this preset
    assert rp.notebook_runs_root(runs, "01_gan_comparison", "cpu") == runs
