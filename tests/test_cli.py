"""`python -m gan_lib train|eval`: a real smoke run, a resume, and clear errors (exit code 2, no traceback)."""
import json
import subprocess
import sys

import pytest

from gan_lib.__main__ import main
from gan_lib.run_dir import RunDir

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_train_then_eval(celeba_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "dcgan", "--dataset", "celeba", "--data-root", str(celeba_root), "--preset", "smoke",
            "--out", str(out), "--steps", "3", "--set", "max_images=64", "eval_every=3", "--set", "log_every=1",
            "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "status  completed at step 3/3" in text and "best    swd" in text and str(out) in text
    assert RunDir(out).read_status()["state"] == "completed"

    assert main(args[:-6] + ["--steps", "4", "--set", "max_images=64", "eval_every=3", "--no-progress"]) == 0
    assert "resuming (step 3)" in capsys.readouterr().out
    assert len(RunDir(out).read_metrics()) == 4

    assert main(["eval", str(out), "--metrics", "swd", "--num-samples", "32", "--checkpoint", "last"]) == 0
    text = capsys.readouterr().out
    result = json.loads((out / "eval_last.json").read_text())
    assert result["step"] == 4 and result["num_samples"] == 32 and result["metrics"]["swd"] > 0
    assert "swd" in text


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "vae", "--out", "x"], "invalid choice: 'vae'"),
    (["train", "--preset", "huge", "--out", "x"], "invalid choice: 'huge'"),
    (["train", "--out", "x", "--set", "bogus=1"], "unknown config key 'bogus'"),
    (["train", "--out", "x", "--set", "steps=many"], "steps expects an integer"),
    (["train", "--out", "x", "--dataset", "imagenet"], "dataset='imagenet' is not valid"),
    (["eval", "no/such/run"], "not a run folder"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "--out", ""], "--out is empty: name the run folder"),
    (["train", "--out", "x", "--seed", "5", "--set", "seed=7"], "--seed 5 and --set seed=7 disagree"),
    (["train", "--out", "x{seed}", "--seeds", "1,2", "--seed", "3"], "--seeds lists the seeds to train"),
    (["train", "--out", "x", "--seed", "99999999999999999999"], "seed must be an integer in [-2**63"),
    (["reproduce", "--address", "127.0.0.1:1"], "--address: for --executor ray only"),
    (["reproduce", "--preset", "smoke", "--dataset", "folder"], "--dataset folder needs --data-root PATH"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--steps", "-1"], "steps must be >= 0"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--eval-every", "0"], "eval_every must be >= 1"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--threads", "-2"], "--threads must be >= 1"),
    (["reproduce", "--preset", "smoke", "--data-root", "/no/such/folder"], "is not a folder"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--data-root", "."], "drop --data-root"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--seeds", "0,0"], "--seeds must list distinct"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--seeds", " ,"], "--seeds must list distinct"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--seeds", "99999999999999999999999"],
     "seed must be an integer in"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--only", ""], "--only is empty"),
    (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--only", "_"], "--only '_' matches 5 notebooks"),
    (["train", "--out", "x", "--set", "best_metric=swd_999"], "best_metric='swd_999' is not one of"),
    (["train", "--out", "x", "--set", "best_metric=s"], "best_metric='s' is not one of"),
    (["train", "--out", "x", "--set", "metrics=swd", "kid"], "a list is one comma-separated value"),
])
def test_bad_arguments_exit_2_with_a_message(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_resume_with_a_different_config_exits_2(celeba_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["train", "--preset", "smoke", "--data-root", str(celeba_root), "--out", out, "--steps", "1",
            "--set", "max_images=64", "--no-progress"]
    assert main(base) == 0
    assert main(base + ["--model", "sagan"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_module_entry_point_reports_errors_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "gan_lib", "train", "--out", "x", "--set", "gp_lamda=5"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown config key 'gp_lamda'" in proc.stderr and "Traceback" not in proc.stderr


def test_config_files_and_run_folders_that_are_wrong_exit_2_in_one_line(tmp_path, capsys):
    """A --config of the wrong shape or types, --config beside --preset, a damaged config.json in the run folder,
    --results or --runs-root naming a file, an --mnist-root that is not there: one line each, nothing created."""
    bad_type, as_list = tmp_path / "bad.json", tmp_path / "list.json"
    bad_type.write_text('{"width": "abc"}')
    as_list.write_text("[1, 2]")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{bad")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    out = str(tmp_path / "run")
    cases = [
        (["train", "--out", out, "--config", str(bad_type)], "width must be an integer, got 'abc'"),
        (["train", "--out", out, "--config", str(as_list)], "a config must be a JSON object"),
        (["train", "--out", out, "--config", str(bad_type), "--preset", "smoke"], "give --config or --preset"),
        (["train", "--out", str(damaged), "--preset", "smoke", "--dataset", "synthetic"],
         "config.json is not valid JSON"),
        (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--results", str(a_file)],
         "--results " + str(a_file) + " is a file"),
        (["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--runs-root", str(a_file)],
         "--runs-root " + str(a_file) + " is a file"),
        (["reproduce", "--preset", "smoke", "--only", "04", "--mnist-root", str(tmp_path / "none"),
          "--results", str(tmp_path / "res")], "--mnist-root: MNIST root"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "res").exists()


def test_reproduce_without_training_and_without_runs_says_where_it_looked(tmp_path, capsys):
    args = ["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--only", "01", "--no-train", "--no-progress",
            "--runs-root", str(tmp_path / "none"), "--results", str(tmp_path / "res")]
    assert main(args) == 1
    status = json.loads((tmp_path / "res" / "smoke" / "reproduce_status.json").read_text())
    error = status["notebooks"]["01_gan_comparison"]["error"]
    assert error.startswith("ConfigError: no finished run of 01_gan_comparison in " + str(tmp_path / "none"))
    assert "drop --no-train" in error and "traceback" not in status["notebooks"]["01_gan_comparison"]


def test_eval_asked_for_fid_without_the_weights_is_an_error(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no hub cache holding the weights
    monkeypatch.setenv("GAN_LIB_INCEPTION_WEIGHTS", str(tmp_path / "none.pth"))
    assert main(["eval", str(run), "--metrics", "fid", "swd"]) == 2
    err = capsys.readouterr().err
    assert "--metrics fid needs pytorch-fid's Inception weights" in err and "weights fetch" in err
    assert "fid_randconv" in err and not (run / "eval_best.json").exists()


@pytest.mark.skipif(not __import__("os").path.isdir("/sys/kernel"), reason="needs sysfs (where nobody can mkdir)")
def test_a_run_folder_that_cannot_be_created_is_one_line(capsys):
    assert main(["train", "--out", "/sys/kernel/gan_lib_run", "--preset", "smoke", "--dataset", "synthetic",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use /sys/kernel/gan_lib_run") and "Traceback" not in err


def test_eval_says_what_to_do_without_a_usable_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--dataset", "synthetic", "--steps", "2", "--out", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    best = out / "checkpoints" / "best.pt"
    assert best.exists() and (out / "checkpoints" / "last.pt").exists()
    best.write_bytes(b"damaged")
    for f in (out / "checkpoints").glob("best.prev.pt"):
        f.unlink()
    assert main(["eval", str(out), "--metrics", "swd"]) == 2
    err = capsys.readouterr().err
    assert "No usable best checkpoint is left: evaluate the other one with --checkpoint last" in err
    assert "--restart" not in err and "Traceback" not in err
    for f in (out / "checkpoints").iterdir():
        f.unlink()
    assert main(["eval", str(out), "--metrics", "swd"]) == 2
    err = capsys.readouterr().err
    assert "has no checkpoint to evaluate (best.pt nor last.pt missing" in err and "train the run" in err


def test_reproduce_only_takes_any_part_of_a_notebook_name():
    from gan_lib.reproduce import select_notebooks

    assert select_notebooks("mnist,stability") == ["03_stability", "04_mnist"]
    assert select_notebooks("02,05_long") == ["02_involution_hyperparameters", "05_long_training"]
    assert len(select_notebooks(None)) == 5


def test_run_folders_that_are_not_runs_are_refused_and_tilde_is_home(tmp_path, monkeypatch, capsys):
    """--out pointing at a dangling symlink, or at a folder of other things (it would scatter a run among them):
    one line each; '~' in --out is the home folder even when the shell left it (--out=~/x)."""
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    base = ["train", "--preset", "smoke", "--dataset", "synthetic", "--steps", "2", "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "dangling")]) == 2
    assert "is a symlink to" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "busy")]) == 2
    err = capsys.readouterr().err
    assert "holds other files (notes.txt) and no run: pass a new or empty folder" in err
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == [".lock", "notes.txt"] or \
        sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(base + ["--out=~/run"]) == 0
    assert (tmp_path / "home" / "run" / "status.json").exists()


def test_eval_caps_the_samples_at_the_real_set_and_records_what_it_used(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--dataset", "synthetic", "--steps", "2", "--out", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--metrics", "swd", "--num-samples", "100000"]) == 0
    text = capsys.readouterr().out
    result = json.loads((out / "eval_best.json").read_text())
    assert result["num_samples"] == 256 and result["num_samples_asked"] == 100000  # smoke: max_images=256
    assert "note: --num-samples 100000 is more than the 256 real images; used 256" in text


def test_the_cli_shows_a_python_warning_as_one_line(tmp_path):
    import os

    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"),  # no Inception weights: FID is left out, warned
           "GAN_LIB_INCEPTION_WEIGHTS": str(tmp_path / "none.pth")}
    proc = subprocess.run([sys.executable, "-m", "gan_lib", "train", "--preset", "smoke", "--dataset", "synthetic",
                           "--steps", "2", "--out", str(tmp_path / "r"), "--set", "metrics=swd,fid", "--no-progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    lines = [ln for ln in err.splitlines() if "fid" in ln.lower()]
    assert lines and all(ln.startswith("warning: ") for ln in lines), err
    assert "UserWarning" not in err and ".py:" not in err


def test_a_run_at_the_papers_shape_on_a_cpu_gets_a_note():
    from gan_lib.__main__ import heavy_note
    from gan_lib.config import make_config

    assert "on a CPU take 15 hours to days" in heavy_note(make_config("paper", device="cpu"))
    assert heavy_note(make_config("cpu", device="cpu")) is None
    assert heavy_note(make_config("paper", device="cpu", steps=500)) is None
