"""The GPU path: involution, self-attention and full WGAN-GP steps on CUDA (skipped without a CUDA device).

CI has no GPU, so these skip there; ``scripts/gpu_check.sh`` runs them on a lent GPU machine (see its header).
What they pin down: the involution's CUDA path (PyTorch ops; the C++ loops are CPU-only) equals the unfold
reference and has exact second derivatives; a training step of each GAN runs in fp32 and in bf16 autocast
(the gradient penalty's double backward included, which SDPA's fused CUDA kernels could not do); a CLI run
on CUDA writes a completed run folder that records the precision it used; seeds stacked as one model take the
same steps as each seed alone (fp64 and fp32), for the configurations notebook 05 trains stacked on a GPU; the
whole step captured in one CUDA graph (`gan_lib.cuda_graph.GraphedStep`) takes the same steps as eager ones, and a
capture that fails falls back to eager steps from the state before it.

``GAN_LIB_TEST_DEVICE=cpu`` runs the same tests on the CPU (a check of the tests themselves, without a GPU).
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch

CUDA = torch.device(os.environ.get("GAN_LIB_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("k, groups, stride", [(1, 4, 1), (3, 4, 1), (3, 8, 2), (7, 1, 1)])
def test_involution_on_cuda_equals_unfold_and_cpu(k, groups, stride):
    from gan_lib.layers.involution import involution2d, involution2d_unfold
    from test_layers import _inputs

    torch.manual_seed(0)
    x, kernel = _inputs(2, 8, 9, 9, groups, k, stride, 1)
    out = involution2d(x.to(CUDA), kernel.to(CUDA), k, stride=stride)
    ref = involution2d_unfold(x.to(CUDA), kernel.to(CUDA), k, stride=stride)
    assert out.device.type == CUDA.type and torch.allclose(out, ref, atol=1e-10)
    assert torch.allclose(out.cpu(), involution2d(x, kernel, k, stride=stride), atol=1e-10)


def test_involution_on_cuda_second_derivatives():
    from gan_lib.layers.involution import involution2d

    torch.manual_seed(0)
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, device=CUDA, requires_grad=True)
    kernel = torch.randn(1, 2, 9, 5, 5, dtype=torch.float64, device=CUDA, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: involution2d(a, b, 3), (x, kernel))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("model", ["dcgan", "sagan", "igan"])
def test_training_steps_on_cuda(model, precision):
    from gan_lib.config import make_config
    from gan_lib.train import TrainState, autocast, resolve_precision, train_step

    cfg = make_config("smoke", model=model, precision=precision, device=CUDA.type, image_size=32, width=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without AMX warns (GAN_LIB_TEST_DEVICE=cpu)
        assert resolve_precision(precision, CUDA) == precision
    state = TrainState([cfg], 3, CUDA, cfg.batch_size)  # one seed: the plain networks
    before = [p.detach().clone() for p in state.G.parameters()]
    x = (torch.rand(cfg.batch_size, 3, 32, 32, device=CUDA) * 2 - 1).contiguous(memory_format=state.fmt)
    for _ in range(3):
        stats = train_step(state.G_fwd, state.D, state.opt_g, state.opt_d, lambda: x, state.noise(), cfg,
                           autocast(CUDA, precision))
    assert stats.device.type == CUDA.type and stats.shape == (1, 4) and torch.isfinite(stats).all()
    assert stats[0, 2] > 0  # the gradient penalty was computed
    assert any(not torch.equal(a, p) for a, p in zip(before, state.G.parameters()))


# The 05 study's configurations (notebook 05_long_training, trained stacked on a GPU): case 1, two involutions with
# clipping, K=7 with batch norm on the kernel.
STACK_OPTIONS = {"igan": {}, "two-involutions-clip": dict(num_blocks=2, kernel_clip=1.0),
                 "k7-kernel-batch-norm": dict(kernel_size=7, kernel_norm="batch")}


@pytest.mark.parametrize("name", list(STACK_OPTIONS))
@pytest.mark.parametrize("precision, rtol, atol", [pytest.param("fp64", 1e-6, 1e-9, id="fp64"),
                                                    pytest.param("fp32", 1e-3, 1e-4, id="fp32")])
def test_stacked_steps_equal_the_single_seed_steps_on_cuda(name, precision, rtol, atol):
    """Three seeds as ONE stacked model (grouped convolutions, per-copy norms) take the same 5 training steps as
    each seed alone (the plain networks): per step and seed, loss_d, loss_g, gp and emd. fp32 with TF32 off (the
    two sides run different kernels, so TF32's 10-bit products would differ by ~1e-3 per op)."""
    from gan_lib.config import make_config
    from gan_lib.train import TrainState, autocast, train_step

    cfgs = [make_config("smoke", model="igan", precision=precision, device=CUDA.type, image_size=32, width=8,
                        batch_size=8, z_dim=16, seed=seed, **STACK_OPTIONS[name]) for seed in (0, 1, 2)]
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))

    class Images:  # the ImageDataset.batch interface
        @staticmethod
        def batch(idx):
            return images[idx].float() / 127.5 - 1

    def steps(cs, n=5):
        state = TrainState(cs, 3, CUDA, len(images))
        amp = autocast(CUDA, precision)
        return torch.stack([train_step(state.G_fwd, state.D, state.opt_g, state.opt_d,
                                       lambda: state.next_batch(Images), state.noise(), cs[0], amp)
                            for _ in range(n)]).cpu()  # (steps, seeds, 4)

    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        stacked = steps(cfgs)
        singles = torch.stack([steps([cfg])[:, 0] for cfg in cfgs], dim=1)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    assert stacked.shape == singles.shape == (5, 3, 4) and torch.isfinite(stacked).all()
    assert (stacked[:, :, 2] > 0).all()  # the gradient penalty was computed
    assert not torch.allclose(stacked[:, 0], stacked[:, 1])  # the seeds are different runs
    torch.testing.assert_close(stacked, singles, rtol=rtol, atol=atol)


def test_cli_train_on_cuda_writes_a_completed_run(tmp_path):
    from gan_lib.__main__ import main
    from gan_lib.run_dir import RunDir
    from gan_lib.train import resolve_precision

    out = tmp_path / "run"
    assert main(["train", "--model", "igan", "--dataset", "synthetic", "--preset", "smoke", "--out", str(out),
                 "--steps", "6", "--set", f"device={CUDA.type}", "precision=auto", "eval_every=6", "--no-progress"]) == 0
    status = RunDir(out).read_status()
    assert status["state"] == "completed" and status["device"] == CUDA.type
    assert status["precision"] == resolve_precision("auto", CUDA)
    if CUDA.type == "cuda":
        assert status["precision"] == "bf16"  # bf16 is native on the GPUs this project is lent


# The whole step in one CUDA graph (gan_lib.cuda_graph.GraphedStep, issue 11 item 4). Small shapes: what is checked
# is that replays compute what eager steps compute. With GAN_LIB_TEST_DEVICE=cpu, GraphedStep falls back (warns) and
# the same comparisons run on its eager steps.
GRAPH_CASES = {"igan-one-seed": ("igan", (0,)), "sagan-one-seed": ("sagan", (0,)), "igan-two-seeds": ("igan", (0, 1))}


def _graph_and_eager_runs(model, seeds, precision="fp32", steps=6, warmup=2, hook=None):
    """The same ``steps`` training steps of ``seeds`` (stacked when several) taken eagerly and through GraphedStep
    (``warmup`` eager steps, then capture and replays), TF32 off; the lr schedule halves both learning rates every
    2 steps, so replays run at an lr other than the one captured. ``hook``: a forward hook on the graphed side's
    critic. Returns (eager rows, graphed rows, eager TrainState, graphed TrainState, GraphedStep, warnings)."""
    from gan_lib.config import make_config
    from gan_lib.cuda_graph import GraphedStep
    from gan_lib.train import TrainState, autocast, train_step

    cfgs = [make_config("smoke", model=model, precision=precision, device=CUDA.type, image_size=32, width=8,
                        batch_size=8, z_dim=16, seed=seed, lr_decay_every=2, lr_decay=0.5) for seed in seeds]
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))

    class Images:  # the ImageDataset.batch interface
        @staticmethod
        def batch(idx):
            return images[idx].float() / 127.5 - 1

    amp = autocast(CUDA, precision)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        eager, graphed = TrainState(cfgs, 3, CUDA, len(images)), TrainState(cfgs, 3, CUDA, len(images))
        if hook is not None:
            graphed.D.register_forward_hook(hook)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = GraphedStep(graphed.G_fwd, graphed.D, graphed.opt_g, graphed.opt_d, graphed.noise(), cfgs[0], amp,
                               warmup=warmup)
            rows = {"eager": [], "graphed": []}
            for _ in range(steps):
                rows["eager"].append(train_step(eager.G_fwd, eager.D, eager.opt_g, eager.opt_d,
                                                lambda: eager.next_batch(Images), eager.noise(), cfgs[0], amp))
                rows["graphed"].append(step.step(lambda: graphed.next_batch(Images)))
                for state in (eager, graphed):
                    state.sched_g.step()
                    state.sched_d.step()
        out = {k: torch.stack(v).cpu() for k, v in rows.items()}  # (steps, seeds, 4)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return out["eager"], out["graphed"], eager, graphed, step, [str(w.message) for w in caught]


def _assert_same_training(eager_rows, graphed_rows, eager, graphed, rtol, atol):
    assert graphed_rows.shape == eager_rows.shape and torch.isfinite(graphed_rows).all()
    assert (graphed_rows[:, :, 2] > 0).all()  # the gradient penalty was computed in every step
    assert not torch.allclose(graphed_rows[-1], graphed_rows[-2])  # each replay is a new step (new z, eps, batch)
    torch.testing.assert_close(graphed_rows, eager_rows, rtol=rtol, atol=atol)
    for a, b in zip([*eager.G.state_dict().values(), *eager.D.state_dict().values()],
                    [*graphed.G.state_dict().values(), *graphed.D.state_dict().values()], strict=True):
        torch.testing.assert_close(b.float().cpu(), a.float().cpu(), rtol=rtol, atol=atol)
    # the graph drew exactly what the eager steps drew from each seed's z/eps generator
    assert all(torch.equal(a.gen_noise.get_state(), b.gen_noise.get_state()) for a, b in zip(eager.seeds, graphed.seeds))


@pytest.mark.parametrize("case", list(GRAPH_CASES))
def test_cuda_graph_steps_equal_eager_steps(case):
    """6 steps: 2 eager warm-up steps, the capture, 4 replays; per step and seed loss_d, loss_g, gp and emd, then every
    parameter and buffer, as close as the stacked-vs-single fp32 test (the capturable Adam computes its bias
    corrections in float32 on the device where the eager one uses Python floats)."""
    model, seeds = GRAPH_CASES[case]
    eager_rows, graphed_rows, eager, graphed, step, caught = _graph_and_eager_runs(model, seeds)
    if CUDA.type == "cuda":
        assert step.graphed and step.fallback_reason is None and not [m for m in caught if "CUDA graph" in m]
        lr = graphed.opt_g.param_groups[0]["lr"]
        assert torch.is_tensor(lr) and lr.device.type == "cuda" and graphed.opt_g.param_groups[0]["capturable"]
    _assert_same_training(eager_rows, graphed_rows, eager, graphed, rtol=1e-3, atol=1e-4)
    assert step.steps == 6
    step.close()  # the optimizers get their own settings back
    group = graphed.opt_g.param_groups[0]
    assert isinstance(group["lr"], float) and not group["capturable"]
    assert group["lr"] == pytest.approx(eager.opt_g.param_groups[0]["lr"], rel=1e-6)  # lr_g / 8 after 6 steps


def test_cuda_graph_bf16_step_is_captured():
    _, graphed_rows, _, _, step, _ = _graph_and_eager_runs("igan", (0,), precision="bf16", steps=4, warmup=1)
    if CUDA.type == "cuda":
        assert step.graphed
    assert torch.isfinite(graphed_rows).all() and (graphed_rows[:, :, 2] > 0).all()


def test_cuda_graph_capture_failure_falls_back_to_eager_steps():
    """A host sync inside the captured step (``.item()`` in a critic forward hook, only while capturing) makes the
    capture fail: one warning saying why, the state restored from before the capture, the optimizers back to their
    own settings, and the steps (warm-up, the step that tried the capture, the eager ones after) equal the eager
    run's. Last in this file: a failed capture is the one thing here that could leave the device in a bad state."""
    def sync_while_capturing(module, inputs, output):
        if CUDA.type == "cuda" and torch.cuda.is_current_stream_capturing():
            output.sum().item()

    eager_rows, graphed_rows, eager, graphed, step, caught = _graph_and_eager_runs("igan", (0,), steps=5, warmup=2,
                                                                                   hook=sync_while_capturing)
    notes = [m for m in caught if "CUDA graph not used" in m]
    assert len(notes) == 1 and "\n" not in notes[0] and not step.graphed
    if CUDA.type == "cuda":
        assert step.fallback_reason.startswith("capture failed: ") and notes[0].startswith("CUDA graph not used "
                                                                                              "(capture failed: ")
    group = graphed.opt_g.param_groups[0]
    assert isinstance(group["lr"], float) and not group["capturable"]
    assert all(s["step"].device.type == "cpu" for s in graphed.opt_d.state.values())
    _assert_same_training(eager_rows, graphed_rows, eager, graphed, rtol=1e-3, atol=1e-4)
