"""gan_lib.study: run specs, shared run folders, reuse of finished runs, render-only mode."""
import json
import re
import socket
import subprocess
import sys

import pytest

from gan_lib import study
from gan_lib.run_dir import RunDir, RunDirError


def test_specs_share_runs_between_experiments():
    names = {exp: {s.name for s in fn((0, 1, 2))} for exp, fn in study.SPECS.items()}
    case1 = {f"{study.igan_label(3, 4, 2)}-s{i}" for i in range(3)}
    assert case1 <= names["01_gan_comparison"] and case1 <= names["02_involution_hyperparameters"]
    assert case1 <= names["03_stability"]
    assert len(names["02_involution_hyperparameters"]) == 7 * 3
    assert len(names["03_stability"]) == len(study.STABILITY) * 3
    cfg = next(s for s in study.stability((0,)) if "two-involutions-clip" in s.label).config("cpu")
    assert (cfg.num_blocks, cfg.kernel_clip, cfg.model) == (2, 1.0, "igan")


def test_table2_cases_match_the_paper():
    assert [(c["K"], c["G"], c["R"]) for c in study.TABLE2] == [
        (3, 4, 2), (7, 4, 8), (7, 4, 2), (3, 4, 8), (3, 1, 2), (1, 4, 2), (5, 4, 2)]
    assert [c["paper_params"] for c in study.TABLE2] == [800, 520, 2080, 200, 2336, 644, 1312]


def test_run_all_reuses_finished_runs_and_train_false_only_collects(tmp_path):
    dcgan, sagan = study.gan_comparison((0,))[:2]
    common = dict(dataset="synthetic", runs_root=tmp_path, progress=False, steps=3, eval_every=3, max_images=64)
    (first,) = study.run_all([dcgan], "smoke", **common)
    assert first["state"] == "completed" and not first["reused"]
    status = json.loads((tmp_path / "smoke" / "synthetic32" / "dcgan-s0" / "status.json").read_text())
    assert status["step"] == 3
    again, missing = study.run_all([dcgan, sagan], "smoke", train=False, **common)
    assert again["reused"] and again["state"] == "completed"
    assert missing["state"] == "not_trained" and not (tmp_path / "smoke" / "synthetic32" / "sagan-s0").exists()
    # a changed config is not silently reused
    (changed,) = study.run_all([dcgan], "smoke", train=False, **{**common, "max_images": 32})
    assert changed["state"] == "not_trained"
    # a run left "running" by a process that died reads as stale, and a damaged status.json is a one-line error
    run = RunDir(tmp_path / "smoke" / "synthetic32" / "sagan-s0").create()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run.status_path.write_text(json.dumps(dict(state="running", step=1, steps=3, pid=int(dead.stdout),
                                               host=socket.gethostname())))  # as its writer left it
    (_, stale) = study.run_all([dcgan, sagan], "smoke", train=False, **common)
    assert stale["state"] == "not_trained" and "not finished (stale)" in stale["reason"]
    run.status_path.write_text("{not json")
    (damaged,) = study.run_all([sagan], "smoke", train=False, **common)  # that run fails, the others go on
    assert damaged["state"] == "failed" and re.search("status.json is not valid JSON.*--restart", damaged["reason"])
    with pytest.raises(RunDirError):
        run.read_status()


def test_run_all_starts_no_run_after_sigint_and_reports_each_end(tmp_path, monkeypatch):
    import os
    import signal
    import time

    started, reported = [], []

    def fake_run_one(spec, preset, path, **kw):  # the third run is where Ctrl-C (a deadline's SIGINT) arrives
        started.append(spec.name)
        if len(started) == 3:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # still running when the main thread gets KeyboardInterrupt
        return dict(name=spec.name, state="completed", reused=False)

    monkeypatch.setattr(study, "run_one", fake_run_one)
    specs = study.involution_cases((0,))
    with pytest.raises(KeyboardInterrupt):
        study.run_all(specs, "smoke", dataset="synthetic", runs_root=tmp_path, jobs=1, progress=False,
                      on_done=reported.append)
    assert started == [s.name for s in specs[:3]]  # the queued runs were not started
    assert [o["name"] for o in reported] == started  # the running one ended and was reported


def test_run_all_reads_a_relative_data_root_against_the_repository_from_any_folder(tmp_path, monkeypatch):
    """The notebooks (and `reproduce`, which hands them repo-relative paths) give data_root relative to the
    repository; the runs must find it whatever folder the study was started from."""
    seen = []

    def fake_run_one(spec, preset, path, **kw):
        seen.append(kw["data_root"])
        return dict(name=spec.name, state="completed", reused=False)

    monkeypatch.setattr(study, "run_one", fake_run_one)
    monkeypatch.chdir(tmp_path)
    specs = study.involution_cases((0,))[:1]
    study.run_all(specs, "smoke", dataset="folder", data_root="tests", runs_root=tmp_path / "r", train=False,
                  progress=False)
    assert seen == [str(study.REPO / "tests")]
    study.run_all(specs, "smoke", dataset="folder", data_root=str(tmp_path), runs_root=tmp_path / "r", train=False,
                  progress=False)
    assert seen[-1] == str(tmp_path)
