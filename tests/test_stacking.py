"""Seed stacking: S seeds trained as one model ARE the S single-seed runs (fp64 on the CPU), per block and option."""
import math
from pathlib import Path

import pytest
import torch

import gan_lib.train as train_mod
from gan_lib.config import ConfigError, make_config
from gan_lib.data.dataset import ImageDataset
from gan_lib.networks import Critic, Generator
from gan_lib.run_dir import RunDir
from gan_lib.stacking import stack_states, unstack_images, unstack_state
from gan_lib.train import train, train_seeds

SEEDS = (0, 1, 2)

# every block and option the study uses (03's variants, 01's GANs, the critic's sigma norms)
OPTIONS = {
    "dcgan": dict(model="dcgan"),
    "sagan": dict(model="sagan"),
    "igan": dict(model="igan"),
    "igan-two-blocks": dict(model="igan", num_blocks=2),
    "igan-kernel-spectral": dict(model="igan", kernel_norm="spectral"),
    "igan-kernel-batch-clip": dict(model="igan", kernel_norm="batch", kernel_clip=1.0),
    "igan-sigma-layer": dict(model="igan", critic_sigma_norm="layer", kernel_size=5, groups=2),
}


def images(channels: int, n: int = 48) -> ImageDataset:
    gen = torch.Generator().manual_seed(123)
    return ImageDataset(torch.randint(0, 256, (n, channels, 32, 32), dtype=torch.uint8, generator=gen),
                        "synthetic", "train")


def cfg_for(seed=0, **kw):
    base = dict(dataset="synthetic", precision="fp64", deterministic=True, steps=10, batch_size=8, width=8,
                z_dim=16, max_images=None, log_every=5, eval_every=5, sample_every=10, ckpt_every=5,
                eval_num_samples=32, lr_decay_every=4, seed=seed)
    return make_config("smoke", **{**base, **kw})


def rows(path, keys=("loss_d", "loss_g", "gp", "emd")):
    return [[float(r[k]) for k in keys] for r in RunDir(path).read_metrics()]


def assert_same_run(a, b, rtol=1e-6):
    ra, rb = rows(a), rows(b)
    assert len(ra) == len(rb) > 0
    for x, y in zip(ra, rb):
        assert x == pytest.approx(y, rel=rtol, abs=1e-9)
    ea, eb = RunDir(a).read_evals(), RunDir(b).read_evals()
    assert [e["step"] for e in ea] == [e["step"] for e in eb]
    for x, y in zip(ea, eb):
        assert float(x["swd"]) == pytest.approx(float(y["swd"]), rel=rtol)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("block", ["dcgan", "sagan", "igan", "igan2"])
def test_a_stacked_network_computes_each_copy(block, channels):
    torch.manual_seed(0)
    kw = dict(image_size=32, channels=channels, width=8, block=block.rstrip("2"), num_blocks=2 if block == "igan2" else 1)
    singles = [(Generator(z_dim=8, **kw).double(), Critic(**kw).double()) for _ in range(3)]
    G, D = Generator(z_dim=8, stack=3, **kw).double(), Critic(stack=3, **kw).double()
    G.load_state_dict(stack_states([g.state_dict() for g, _ in singles]))
    D.load_state_dict(stack_states([d.state_dict() for _, d in singles]))
    z = [torch.randn(4, 8, dtype=torch.float64) for _ in range(3)]
    for _ in range(2):  # train mode: batch statistics and spectral-norm power iterations, twice
        x = G(torch.cat(z, 1))
        scores = D(x)
        assert scores.shape == (4, 3)
        for s, (g, d) in enumerate(singles):
            xs = g(z[s])
            torch.testing.assert_close(unstack_images(x, 3)[s], xs, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(scores[:, s], d(xs), rtol=1e-10, atol=1e-12)
    for s, state in enumerate(unstack_state(G.state_dict(), 3)):  # buffers (running stats, u, v) too
        for k, v in singles[s][0].state_dict().items():
            torch.testing.assert_close(state[k], v, rtol=1e-10, atol=1e-12)
    full = unstack_state(D.state_dict(), 3)
    some = unstack_state(D.state_dict(), 3, copies=[2, 0])  # only the copies asked for, in that order
    assert [sorted(d) for d in some] == [sorted(full[2]), sorted(full[0])]
    for got, want in zip(some, (full[2], full[0])):
        assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.fixture(scope="module")
def singles(tmp_path_factory):
    """The reference: each option's three seeds trained alone (fp64, deterministic)."""
    root = tmp_path_factory.mktemp("singles")
    data = {3: images(3), 1: images(1)}
    for name, opts in OPTIONS.items():
        for seed in SEEDS:
            train(cfg_for(seed, **opts), root / name / f"s{seed}", dataset=data[3])
    train(cfg_for(1, model="igan"), root / "mnist-like" / "s1", dataset=data[1])
    return root, data


@pytest.mark.parametrize("name", list(OPTIONS))
def test_stacked_seeds_reproduce_the_single_runs(name, singles, tmp_path):
    root, data = singles
    opts = OPTIONS[name]
    statuses = train_seeds([cfg_for(s, **opts) for s in SEEDS], [tmp_path / f"s{s}" for s in SEEDS], dataset=data[3])
    assert [st["state"] for st in statuses] == ["completed"] * 3
    assert all(st["stacked_seeds"] == list(SEEDS) for st in statuses)
    for s in SEEDS:
        assert RunDir(tmp_path / f"s{s}").load_config()["seed"] == s
        assert_same_run(tmp_path / f"s{s}", root / name / f"s{s}")
        ck, ref = RunDir(tmp_path / f"s{s}").load_checkpoint("last"), RunDir(root / name / f"s{s}").load_checkpoint("last")
        assert ck.keys() == ref.keys()
        for k, v in ref["generator"].items():  # the checkpoint is the single run's, in its layout
            torch.testing.assert_close(ck["generator"][k], v, rtol=1e-6, atol=1e-9)
        assert sorted(p.name for p in (tmp_path / f"s{s}" / "samples").iterdir()) == [
            "step_000000.png", "step_000010.png"]


def test_one_channel_data_stacks(singles, tmp_path):
    root, data = singles
    train_seeds([cfg_for(s) for s in (1, 4)], [tmp_path / "s1", tmp_path / "s4"], dataset=data[1])
    assert_same_run(tmp_path / "s1", root / "mnist-like" / "s1")


def test_stacked_resume_equals_the_uninterrupted_run(singles, tmp_path):
    root, data = singles
    dirs = [tmp_path / f"s{s}" for s in SEEDS]

    def stop_at_7(step, row):
        if step == 7 and row["seed"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # rows are written (and the callback called) every step
        train_seeds([cfg_for(s, log_every=1) for s in SEEDS], dirs, dataset=data[3], callback=stop_at_7)
    for d in dirs:
        st = RunDir(d).read_status()
        assert st["state"] == "interrupted" and st["step"] == 7 and RunDir(d).load_checkpoint("last")["step"] == 7
    train_seeds([cfg_for(s, log_every=1) for s in SEEDS], dirs, dataset=data[3])
    for s, d in zip(SEEDS, dirs):
        assert_same_run(d, root / "igan" / f"s{s}")


def test_a_seed_moves_between_single_and_stacked(singles, tmp_path):
    """Seed 1 trains 5 steps alone, then joins seeds 0 and 2 (also at step 5) in a stack: same run."""
    root, data = singles
    dirs = [tmp_path / f"s{s}" for s in SEEDS]
    for s, d in zip(SEEDS, dirs):
        train(cfg_for(s, steps=5), d, dataset=data[3])
    train_seeds([cfg_for(s) for s in SEEDS], dirs, dataset=data[3])
    for s, d in zip(SEEDS, dirs):
        assert_same_run(d, root / "igan" / f"s{s}")


def test_seeds_at_different_steps_train_as_separate_stacks(singles, tmp_path):
    root, data = singles
    dirs = [tmp_path / f"s{s}" for s in SEEDS]
    train(cfg_for(1, steps=5), dirs[1], dataset=data[3])
    statuses = train_seeds([cfg_for(s) for s in SEEDS], dirs, dataset=data[3])
    assert [st["state"] for st in statuses] == ["completed"] * 3
    assert statuses[1]["resumed_at_step"] == 5 and statuses[0]["resumed_at_step"] is None
    for s, d in zip(SEEDS, dirs):
        assert_same_run(d, root / "igan" / f"s{s}")


def test_a_nan_in_one_seed_diverges_that_seed_only(singles, tmp_path, monkeypatch):
    root, data = singles
    real_gp = train_mod.gradient_penalty
    calls = {"n": 0}

    def nan_for_seed_1_from_call_7(*args, **kw):
        calls["n"] += 1
        gp = real_gp(*args, **kw)
        if calls["n"] >= 7 and gp.numel() == 3:
            gp = gp * torch.tensor([1.0, float("nan"), 1.0], dtype=gp.dtype)
        return gp

    monkeypatch.setattr(train_mod, "gradient_penalty", nan_for_seed_1_from_call_7)
    dirs = [tmp_path / f"s{s}" for s in SEEDS]
    statuses = train_seeds([cfg_for(s) for s in SEEDS], dirs, dataset=data[3])
    assert [st["state"] for st in statuses] == ["completed", "diverged", "completed"]
    bad = statuses[1]
    assert bad["step"] == 7 and "non-finite" in bad["reason"] and bad["checkpoint_step"] == 5
    ck = RunDir(dirs[1]).load_checkpoint("last")  # frozen at its last good checkpoint
    assert ck["step"] == 5 and all(torch.isfinite(v).all() for v in ck["generator"].values() if v.is_floating_point())
    assert len(RunDir(dirs[1]).read_metrics()) == 10  # rows up to the write (every log_every=5) that found it
    for s in (0, 2):  # the others never saw the NaN
        assert_same_run(dirs[s], root / "igan" / f"s{s}")


def test_stacking_rejects_mixed_configs(tmp_path):
    with pytest.raises(ConfigError, match="differ in.*lr_d"):
        train_seeds([cfg_for(0), cfg_for(1, lr_d=1e-3)], [tmp_path / "a", tmp_path / "b"], dataset=images(3))
    with pytest.raises(ConfigError, match="distinct"):
        train_seeds([cfg_for(0), cfg_for(0)], [tmp_path / "a", tmp_path / "b"], dataset=images(3))


def test_fp64_runs_in_double(tmp_path):
    st = train(cfg_for(0, steps=2, eval_every=100, ckpt_every=100), tmp_path, dataset=images(3))
    assert st["state"] == "completed" and st["precision"] == "fp64"
    ck = RunDir(tmp_path).load_checkpoint("last")
    assert all(v.dtype == torch.float64 for v in ck["generator"].values() if v.is_floating_point())
    assert math.isfinite(float(RunDir(tmp_path).read_metrics()[-1]["loss_d"]))


def test_cli_seeds_need_a_seed_placeholder_and_train_each_folder(tmp_path, capsys):
    from gan_lib.__main__ import main

    base = ["train", "--preset", "smoke", "--dataset", "synthetic", "--steps", "2", "--no-progress", "--set",
            "width=8", "batch_size=8", "eval_every=100", "sample_every=100"]
    assert main(base + ["--out", str(tmp_path / "igan"), "--seeds", "0,1"]) == 2
    assert "{seed}" in capsys.readouterr().err and not (tmp_path / "igan").exists()
    assert main(base + ["--out", str(tmp_path / "igan-s{seed}"), "--seeds", "0,x"]) == 2
    assert main(base + ["--out", str(tmp_path / "igan-s{seed}"), "--seeds", "3,5"]) == 0
    for s in (3, 5):
        st = RunDir(tmp_path / f"igan-s{s}").read_status()
        assert st["state"] == "completed" and st["stacked_seeds"] == [3, 5]
        assert RunDir(tmp_path / f"igan-s{s}").load_config()["seed"] == s
    # a config file is the hand-off: the same run again is complete, nothing to train
    cfg_file = tmp_path / "igan-s3" / "config.json"
    assert main(["train", "--config", str(cfg_file), "--out", str(tmp_path / "igan-s3"), "--no-progress"]) == 0
    assert "already completed" in capsys.readouterr().out


def test_the_runner_trains_a_configurations_seeds_as_one_stack(tmp_path):
    from gan_lib import study

    specs = study.gan_comparison((0, 1))[:2]  # dcgan seeds 0 and 1
    assert {s.label for s in specs} == {"dcgan"}
    common = dict(dataset="synthetic", runs_root=tmp_path, progress=False, steps=3, eval_every=3, width=8,
                  batch_size=8)
    outs = study.run_all(specs, "smoke", stack=True, **common)
    assert [o["state"] for o in outs] == ["completed"] * 2 and all(o["stacked"] == 2 for o in outs)
    for o in outs:
        assert RunDir(o["path"]).read_status()["stacked_seeds"] == [0, 1]
    log = (Path(outs[0]["path"]) / "train.log").read_text()
    assert "--config" in log and "--seeds 0,1" in log and "--set" not in log  # one config file, no --set pairs
    again = study.run_all(specs, "smoke", stack=True, **common)
    assert all(o["reused"] for o in again)


def test_stacking_is_the_default_on_a_gpu_only(monkeypatch):
    from gan_lib import study

    assert study.stack_default("cpu") is False
    monkeypatch.setenv("GAN_LIB_STACK", "on")
    assert study.stack_default("cpu") is True
    monkeypatch.setenv("GAN_LIB_STACK", "maybe")
    with pytest.raises(ConfigError, match="GAN_LIB_STACK"):
        study.stack_default("cpu")


def test_the_runner_does_not_reuse_a_run_trained_on_other_data(tmp_path):
    from gan_lib import study

    (spec,) = study.gan_comparison((0,))[:1]
    common = dict(runs_root=tmp_path, progress=False, steps=2, eval_every=2, width=8, batch_size=8)
    (first,) = study.run_all([spec], "smoke", dataset="synthetic", **common)
    assert first["state"] == "completed"
    (again,) = study.run_all([spec], "smoke", dataset="synthetic", **common)
    assert again["reused"]
    data = RunDir(first["path"]).read_data_fingerprint()
    RunDir(first["path"]).save_data_fingerprint({**data, "pixels": "0" * 64})  # as if trained on other images
    (other,) = study.run_all([spec], "smoke", dataset="synthetic", **common)
    assert other["state"] == "failed" and not other["reused"] and "differs" in other["reason"]
