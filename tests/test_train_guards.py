"""The training loop with the run-folder guards (issue 15), end to end: two real writers, a wiped folder, other
data on resume, a damaged last checkpoint, SIGTERM, ENOSPC."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gan_lib.train as train_mod
from gan_lib.config import make_config
from gan_lib.data.dataset import ImageDataset
from gan_lib.data.fingerprint import DataMismatch
from gan_lib.run_dir import DiskFull, RunDir, RunExists
from gan_lib.train import train

REPO = Path(__file__).resolve().parents[1]


def images(seed=123, n=48):
    gen = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), "synthetic", "train")


def cfg(**kw):
    base = dict(dataset="synthetic", deterministic=True, steps=6, batch_size=8, width=8, z_dim=16, max_images=None,
                log_every=1, eval_every=3, sample_every=3, ckpt_every=3, eval_num_samples=32, device="cpu")
    return make_config("smoke", **{**base, **kw})


def losses(path):
    return [{k: v for k, v in r.items() if k != "sec_per_step"} for r in RunDir(path).read_metrics()]


def test_a_folder_with_a_run_but_no_checkpoint_is_never_overwritten(tmp_path):
    train(cfg(), tmp_path, dataset=images())
    for p in (tmp_path / "checkpoints").iterdir():
        p.unlink()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(RunExists, match="--restart"):
        train(cfg(model="dcgan", lr_g=1e-3, steps=5), tmp_path, dataset=images())
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
    status = train(cfg(model="dcgan", steps=2), tmp_path, dataset=images(), restart=True)
    assert status["state"] == "completed"
    old = [p for p in tmp_path.parent.iterdir() if p.name.startswith(tmp_path.name + ".old-")]
    assert len(old) == 1 and (old[0] / "metrics.csv").read_bytes() == before[tmp_path / "metrics.csv"]


def test_resuming_on_other_data_is_refused_with_the_folder_unchanged(tmp_path):
    train(cfg(steps=3), tmp_path, dataset=images())
    config = (tmp_path / "config.json").read_bytes()
    with pytest.raises(DataMismatch, match="pixels"):
        train(cfg(steps=6), tmp_path, dataset=images(seed=7))
    assert (tmp_path / "config.json").read_bytes() == config and len(RunDir(tmp_path).read_metrics()) == 3
    assert train(cfg(steps=6), tmp_path, dataset=images())["state"] == "completed"  # the right data continues


def test_a_damaged_last_checkpoint_resumes_from_the_previous_one(tmp_path):
    ref = tmp_path / "ref"
    train(cfg(), ref, dataset=images())
    run = tmp_path / "run"
    train(cfg(steps=6, ckpt_every=2), run, dataset=images())  # checkpoints at 2, 4, 6: last.pt 6, prev 4
    last = RunDir(run).checkpoint_path("last")
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated
    with pytest.warns(UserWarning, match="previous checkpoint"):
        status = train(cfg(steps=6, ckpt_every=2), run, dataset=images())
    assert status["state"] == "completed" and status["resumed_at_step"] == 4
    assert losses(run) == losses(ref)


def _train_cli(out, *extra, steps=100_000):  # (a writer that is stopped, never left to finish)
    cmd = [sys.executable, "-m", "gan_lib", "train", "--preset", "smoke", "--dataset", "synthetic", "--out",
           str(out), "--no-progress", "--steps", str(steps), "--set", "width=8", "batch_size=8", "deterministic=true",
           "eval_every=1000", "sample_every=1000", "ckpt_every=1000", "log_every=1", "device=cpu", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for_rows(out, n, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (out / "metrics.csv").exists() and len(RunDir(out).read_metrics()) >= n:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise AssertionError("the run did not start")


def test_two_real_writers_the_second_is_refused_and_sigterm_checkpoints(tmp_path):
    out = tmp_path / "run"
    first = _train_cli(out)
    try:
        _wait_for_rows(out, 3, first)
        second = _train_cli(out)
        text, _ = second.communicate(timeout=120)
        why = f"second writer: exit {second.returncode}, output {text[-1500:]!r}; first alive: {first.poll() is None}"
        assert second.returncode == 75 and f"pid {first.pid}" in text and "Traceback" not in text, why
        first.send_signal(signal.SIGTERM)  # what schedulers, Ray and kill send
        text, _ = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, text
    status = RunDir(out).read_status()
    assert status["state"] == "interrupted" and "KeyboardInterrupt" in status["reason"]
    step = status["checkpoint_step"]
    assert 3 <= step < 100_000 and RunDir(out).load_checkpoint("last")["step"] == step
    assert len(RunDir(out).read_metrics()) == step  # nothing lost, nothing doubled


def test_sigterm_resume_equals_the_uninterrupted_run(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    done = _train_cli(ref, steps=30)
    done.communicate(timeout=300)
    proc = _train_cli(run, steps=30)
    _wait_for_rows(run, 5, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert RunDir(run).read_status()["state"] in ("interrupted", "completed")
    again = _train_cli(run, steps=30)
    text, _ = again.communicate(timeout=300)
    assert again.returncode == 0, text
    assert losses(run) == losses(ref)


def test_a_full_disk_at_a_checkpoint_fails_the_run_with_one_clear_reason(tmp_path, monkeypatch):
    real = RunDir.save_checkpoint

    def full_at_step_6(self, state, name="last"):
        if state["step"] == 6 and name == "last":
            raise DiskFull(self.checkpoint_path(name), self._last_good(name)) from OSError(errno.ENOSPC, "full")
        return real(self, state, name)

    monkeypatch.setattr(RunDir, "save_checkpoint", full_at_step_6)
    with pytest.raises(DiskFull, match="step 3"):
        train(cfg(), tmp_path, dataset=images())
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "no space left" in status["reason"] and "step 3" in status["reason"]
    assert train_mod.RunDir(tmp_path).load_checkpoint("last")["step"] == 3
