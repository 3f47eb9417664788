"""A user's mistake on the scripts (scripts/, benchmarks/) is one line on stderr and exit code 2, never a traceback;
``scripts/run_study.sh --help`` answers without running setup, and the script reads relative paths against the
caller's folder. Every case fails at validation, before anything trains."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_THERE = "/nonexistent/gan_lib_test_folder"


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=kw.pop("cwd", REPO), capture_output=True, text=True, timeout=120, **kw)


def assert_user_error(p: subprocess.CompletedProcess, *words: str, usage: bool = False):
    """Exit code 2, one ``error: ...`` line (or argparse's usage error) naming ``words``, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:") or ": error: " in line]
    assert len(errors) == 1, p.stderr
    assert errors[0].startswith("error:") or usage, p.stderr
    assert all(w in errors[0] for w in words), p.stderr


@pytest.mark.parametrize("args, words, usage", [
    (["99"], ["'99'", "01_gan_comparison", "05_long_training"], False),
    (["01,02"], ["'01,02'", "02_involution_hyperparameters"], False),
    (["01", "--preset", "foo"], ["--preset", "'foo'", "smoke"], True),
    (["01", "--seeds", "a"], ["--seeds", "'a'"], False),
    (["01", "--dataset", "foo"], ["'foo'", "synthetic"], False),
    (["01", "--dataset", "synthetic", "--steps", "-1"], ["steps"], False),
    (["01", "--dataset", "folder", "--data-root", NOT_THERE], [NOT_THERE], False),
    (["01", "--dataset", "synthetic", "--split", "foo"], ["'foo'"], False),
])
def test_train_experiment_bad_values_are_one_line_errors(tmp_path, args, words, usage):
    p = run([sys.executable, "scripts/train_experiment.py", *args, "--runs-root", str(tmp_path)])
    assert_user_error(p, *words, usage=usage)
    assert not any(tmp_path.iterdir())  # nothing trained


@pytest.mark.parametrize("script, args, words, usage", [
    ("precision.py", ["--preset", "foo"], ["--preset", "'foo'"], True),
    ("metrics.py", ["--data-root", NOT_THERE], [NOT_THERE], False),
    ("metrics.py", ["--precisions", "fp64"], ["--precisions", "'fp64'"], True),
    ("stress_run_folders.py", ["--interrupts", "foo"], ["--interrupts", "'foo'"], True),
])
def test_benchmark_bad_values_are_one_line_errors(tmp_path, script, args, words, usage):
    extra = ["--out", str(tmp_path / "out")] if script == "precision.py" else []
    extra += ["--root", str(tmp_path / "stress")] if script == "stress_run_folders.py" else []
    assert_user_error(run([sys.executable, f"benchmarks/{script}", *args, *extra]), *words, usage=usage)


@pytest.fixture
def study_copy(tmp_path) -> Path:
    """scripts/run_study.sh in a copy of the repository layout whose setup.sh only leaves a mark and fails."""
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "run_study.sh", tmp_path / "repo" / "scripts")
    (tmp_path / "repo" / "scripts" / "setup.sh").write_text("touch \"$(dirname \"$0\")/../SETUP_RAN\"; exit 1\n")
    return tmp_path / "repo"


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--preset", "smoke", "--help"]])
def test_run_study_help_prints_usage_without_setup(study_copy, args):
    p = run(["bash", str(study_copy / "scripts" / "run_study.sh"), *args])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: bash scripts/run_study.sh")
    assert "python -m gan_lib reproduce --help" in p.stdout
    assert not (study_copy / "SETUP_RAN").exists()


def test_run_study_reads_relative_paths_against_the_callers_folder(study_copy, tmp_path):
    here = tmp_path / "elsewhere"
    here.mkdir()
    p = run(["bash", str(study_copy / "scripts" / "run_study.sh"), "--runs-root", "runs", "--results=out/res",
             "--data-root", "/abs/celeba", "--mnist-root=~/MNIST", "--jobs", "2", "--only", "01"],
            cwd=here, env={**os.environ, "RUN_STUDY_DRY_RUN": "1"})
    assert p.returncode == 0, p.stderr
    assert shlex.split(p.stdout) == [".venv/bin/python", "-m", "gan_lib", "reproduce", "--runs-root", f"{here}/runs",
                                f"--results={here}/out/res", "--data-root", "/abs/celeba", "--mnist-root=~/MNIST",
                                "--jobs", "2", "--only", "01"]
    assert not (study_copy / "SETUP_RAN").exists()


def test_train_experiment_fails_when_a_run_fails_and_reads_paths_from_the_callers_folder(tmp_path):
    """Every run failing (their run folders cannot be made) is exit 1, not 0; a --runs-root that is a file is a
    one-line error; a relative --runs-root lands in the caller's folder."""
    script = str(REPO / "scripts" / "train_experiment.py")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    base = ["01", "--preset", "smoke", "--dataset", "synthetic", "--steps", "2", "--eval-every", "2"]
    out = subprocess.run([sys.executable, script, *base, "--runs-root", str(a_file)], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2 and "is a file, not a folder" in out.stderr and "Traceback" not in out.stderr
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "smoke").write_text("a file where the preset's folder goes")
    out = subprocess.run([sys.executable, script, *base, "--runs-root", str(blocked), "--configs", "dcgan"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 1, out.stdout + out.stderr
    assert '"state": "failed"' in out.stdout and "0 of 1 runs finished" in out.stdout
    out = subprocess.run([sys.executable, script, *base, "--runs-root", "rr", "--configs", "dcgan"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "rr" / "smoke" / "synthetic32" / "dcgan-s0" / "status.json").exists()
    out = subprocess.run([sys.executable, script, *base, "--threads", "0"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 2 and "--threads must be >= 1" in out.stderr
