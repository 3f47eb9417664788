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
