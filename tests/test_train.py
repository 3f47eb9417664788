"""The training loop on real CelebA (tiny smoke runs): artefacts, WGAN-GP, resume, interrupt, divergence."""
import json
import math

import pytest
import torch

import gan_lib.train as train_mod
from gan_lib.config import ConfigError, TrainConfig, make_config
from gan_lib.run_dir import METRIC_COLUMNS, RunDir
from gan_lib.train import gradient_penalty, train


@pytest.fixture(scope="module")
def celeba32(celeba_root):
    from gan_lib.data import load_dataset

    return load_dataset("celeba", root=celeba_root, image_size=32, max_images=128, progress=False)


def smoke(celeba_root, **kw):
    base = dict(model="igan", data_root=str(celeba_root), max_images=128, steps=6, deterministic=True,
                log_every=1, eval_every=3, sample_every=3, ckpt_every=3)
    return make_config("smoke", **{**base, **kw})


def losses(run_dir):
    """metrics.csv without the timing column (the rest must reproduce exactly)."""
    return [{k: v for k, v in r.items() if k != "sec_per_step"} for r in RunDir(run_dir).read_metrics()]


@pytest.fixture(scope="module")
def straight(celeba_root, celeba32, tmp_path_factory):
    """An uninterrupted 6-step run, the reference for resume tests."""
    path = tmp_path_factory.mktemp("straight")
    status = train(smoke(celeba_root), path, dataset=celeba32)
    return path, status


def test_gradient_penalty_of_a_linear_critic():
    w = torch.randn(3 * 4 * 4)
    critic = lambda x: x.flatten(1) @ w  # noqa: E731  grad = w everywhere
    real, fake = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
    gp = gradient_penalty(critic, real, fake, torch.rand(5, 1, 1, 1), train_mod.autocast(torch.device("cpu"), "fp32"))
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)


def test_short_real_run_writes_every_artefact(straight, celeba_root):
    path, status = straight
    run = RunDir(path)
    assert status["state"] == "completed" and status["step"] == 6 and status["sec_per_step"] > 0
    assert TrainConfig.from_dict(json.loads(run.config_path.read_text())) == smoke(celeba_root)
    rows = run.read_metrics()
    assert list(rows[0]) == list(METRIC_COLUMNS)
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert all(math.isfinite(float(r[k])) for r in rows for k in METRIC_COLUMNS)
    # lr decay 0.95 every lr_decay_every=5 steps (StepLR), both rates
    assert [float(r["lr_g"]) for r in rows] == pytest.approx([1e-4] * 5 + [0.95e-4])
    assert float(rows[-1]["lr_d"]) == pytest.approx(0.95 * 4e-4)
    # critic loss = -emd + lambda * gp (n_critic=1: same batch)
    for r in rows:
        assert float(r["loss_d"]) == pytest.approx(-float(r["emd"]) + 10 * float(r["gp"]), rel=1e-4, abs=1e-5)
    evals = run.read_evals()
    assert [int(e["step"]) for e in evals] == [3, 6] and all(float(e["swd"]) > 0 for e in evals)
    assert sorted(p.name for p in run.samples_dir.iterdir()) == [
        "step_000000.png", "step_000003.png", "step_000006.png"]
    ck = run.load_checkpoint("last")
    assert ck["step"] == 6 and {"generator", "critic", "opt_g", "opt_d", "sched_g", "sched_d", "rng"} <= set(ck)
    best = run.load_checkpoint("best")
    assert status["best"]["metric"] == "swd" and best["step"] == status["best"]["step"]
    assert not list(path.rglob("*.tmp"))  # atomic writes leave no temporaries
    G, cfg, step, name = train_mod.load_generator(path, "best")
    assert name == "best" and G(torch.randn(2, cfg.z_dim)).shape == (2, 3, 32, 32)


def test_resume_reproduces_the_straight_run_exactly(straight, celeba_root, celeba32, tmp_path):
    train(smoke(celeba_root, steps=3), tmp_path, dataset=celeba32)
    assert RunDir(tmp_path).read_status()["state"] == "completed"
    status = train(smoke(celeba_root), tmp_path, dataset=celeba32)  # same folder, more steps: resume
    assert status["state"] == "completed" and status["resumed_at_step"] == 3
    assert losses(tmp_path) == losses(straight[0])
    assert RunDir(tmp_path).read_evals()[-1]["swd"] == RunDir(straight[0]).read_evals()[-1]["swd"]


def test_interrupt_saves_and_resumes(straight, celeba_root, celeba32, tmp_path):
    def stop_at_4(step, row):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(smoke(celeba_root), tmp_path, dataset=celeba32, callback=stop_at_4)
    run = RunDir(tmp_path)
    status = run.read_status()
    assert status["state"] == "interrupted" and status["step"] == 4 and "KeyboardInterrupt" in status["reason"]
    assert run.load_checkpoint("last")["step"] == 4 and len(run.read_metrics()) == 4
    assert train(smoke(celeba_root), tmp_path, dataset=celeba32)["state"] == "completed"
    assert losses(tmp_path) == losses(straight[0])


def test_nan_loss_is_divergence_not_a_crash(celeba_root, celeba32, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_gp = train_mod.gradient_penalty

    def nan_from_step_5(*args, **kw):
        calls["n"] += 1
        gp = real_gp(*args, **kw)
        return gp * float("nan") if calls["n"] >= 5 else gp

    monkeypatch.setattr(train_mod, "gradient_penalty", nan_from_step_5)
    status = train(smoke(celeba_root, steps=8), tmp_path, dataset=celeba32)
    run = RunDir(tmp_path)
    assert status["state"] == "diverged" and status["step"] == 5 and "non-finite" in status["reason"]
    assert status["checkpoint_step"] == 3
    ck = run.load_checkpoint("last")  # the last good checkpoint, kept
    assert ck["step"] == 3 and all(torch.isfinite(v).all() for v in ck["generator"].values() if v.is_floating_point())
    rows = run.read_metrics()
    assert len(rows) == 5 and math.isnan(float(rows[-1]["loss_d"]))  # the logs, up to the bad step


def test_exploding_gradient_penalty_is_divergence(celeba_root, celeba32, tmp_path):
    status = train(smoke(celeba_root, gp_explode_threshold=1e-9, gp_explode_window=2), tmp_path, dataset=celeba32)
    assert status["state"] == "diverged" and status["step"] == 2 and "gradient penalty" in status["reason"]


def test_resume_with_another_config_is_a_clear_error(straight, celeba_root, celeba32):
    with pytest.raises(ConfigError, match="cannot resume.*lr_d"):
        train(smoke(celeba_root, lr_d=1e-3), straight[0], dataset=celeba32)
    # steps and intervals may change: a finished run asked for its own length has nothing to do
    assert train(smoke(celeba_root, eval_every=5), straight[0], dataset=celeba32)["step"] == 6


@pytest.mark.parametrize("model", ["dcgan", "sagan", "igan"])
def test_bf16_autocast_trains_every_model(model, celeba_root, celeba32, tmp_path):
    """bf16 autocast on the CPU, including the double backward of the gradient penalty."""
    status = train(smoke(celeba_root, model=model, precision="bf16", steps=2, channels_last=True), tmp_path,
                   dataset=celeba32)
    assert status["state"] == "completed"
    assert all(math.isfinite(float(r["gp"])) for r in RunDir(tmp_path).read_metrics())


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_hardware(native, celeba_root, celeba32, tmp_path, monkeypatch):
    """precision=auto is bf16 only where bf16 runs natively; the run records what it used."""
    monkeypatch.setattr(train_mod, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert train_mod.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert train_mod.resolve_precision("fp32", cpu) == "fp32"
    status = train(smoke(celeba_root, precision="auto", steps=1), tmp_path, dataset=celeba32)
    assert status["precision"] == ("bf16" if native else "fp32")
    assert TrainConfig.load(tmp_path / "config.json").precision == "auto"  # the config keeps what was asked


def test_explicit_bf16_without_native_support_warns(monkeypatch):
    monkeypatch.setattr(train_mod, "native_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="slower than fp32"):
        assert train_mod.resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_native_bf16_matches_the_cpu_flags():
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else None
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    has = any(f in flags.split() for f in ("amx_bf16", "amx_tile", "avx512_bf16"))
    assert train_mod.native_bf16(torch.device("cpu")) == has


def test_interrupt_during_set_up_marks_the_run_interrupted(celeba_root, celeba32, tmp_path, monkeypatch):
    def stopped(*args, **kw):  # Ctrl-C (or a deadline's SIGINT) while the models are being built
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "build_models", stopped)
    with pytest.raises(KeyboardInterrupt):
        train(smoke(celeba_root), tmp_path, dataset=celeba32)
    status = RunDir(tmp_path).read_status()
    assert status["state"] == "interrupted" and status["step"] == 0 and "set-up" in status["reason"]
    monkeypatch.undo()
    assert train(smoke(celeba_root), tmp_path, dataset=celeba32)["state"] == "completed"


def test_sigint_after_the_last_step_completes_the_run(straight, celeba_root, celeba32, tmp_path):
    import os
    import signal

    steps = smoke(celeba_root).steps

    def sigint_at_the_last_step(step, row):  # deferred: the run finishes the step's evaluation and checkpoint
        if step == steps:
            os.kill(os.getpid(), signal.SIGINT)

    status = train(smoke(celeba_root), tmp_path, dataset=celeba32, callback=sigint_at_the_last_step)
    assert status["state"] == "completed" and status["step"] == steps
    assert RunDir(tmp_path).load_checkpoint("last")["step"] == steps
    assert losses(tmp_path) == losses(straight[0])


def test_sigint_before_the_last_step_interrupts_after_that_step(celeba_root, celeba32, tmp_path):
    import os
    import signal

    def sigint_at_3(step, row):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(smoke(celeba_root), tmp_path, dataset=celeba32, callback=sigint_at_3)
    status = RunDir(tmp_path).read_status()
    assert status["state"] == "interrupted" and status["checkpoint_step"] == status["step"] >= 3


def test_a_bf16_step_leaves_autocast_off():
    """train_step's autocast contexts are entered once each: after a step autocast is off again (an object
    entered twice would restore the wrong state and leave every later op, e.g. the evaluation, in bf16)."""
    from gan_lib.train import TrainState, autocast, train_step

    cfg = make_config("smoke", model="igan", precision="bf16", device="cpu")
    state = TrainState([cfg], 3, torch.device("cpu"), cfg.batch_size)
    x = torch.rand(cfg.batch_size, 3, 32, 32) * 2 - 1
    with pytest.warns(UserWarning) if not train_mod.native_bf16(torch.device("cpu")) else _nothing():
        amp = autocast(torch.device("cpu"), "bf16")
    train_step(state.G, state.D, state.opt_g, state.opt_d, lambda: x, state.noise(), cfg, amp)
    assert not torch.is_autocast_enabled("cpu")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
