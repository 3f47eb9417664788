"""The GPU path: involution, self-attention and full WGAN-GP steps on CUDA (skipped without a CUDA device).

CI has no GPU, so these skip there; ``scripts/gpu_check.sh`` runs them on a lent GPU machine (see its header).
What they pin down: the involution's CUDA path (PyTorch ops; the C++ loops are CPU-only) equals the unfold
reference and has exact second derivatives; a training step of each GAN runs in fp32 and in bf16 autocast
(the gradient penalty's double backward included, which SDPA's fused CUDA kernels could not do); a CLI run
on CUDA writes a completed run folder that records the precision it used.

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
    from gan_lib.train import autocast, build_training, resolve_precision, train_step

    cfg = make_config("smoke", model=model, precision=precision, device=CUDA.type, image_size=32, width=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without AMX warns (GAN_LIB_TEST_DEVICE=cpu)
        assert resolve_precision(precision, CUDA) == precision
    G, D, opt_g, opt_d, fmt = build_training(cfg, 3, CUDA)
    before = [p.detach().clone() for p in G.parameters()]
    x = (torch.rand(cfg.batch_size, 3, 32, 32, device=CUDA) * 2 - 1).contiguous(memory_format=fmt)
    noise = torch.Generator(CUDA).manual_seed(0)
    for _ in range(3):
        stats = train_step(G, D, opt_g, opt_d, lambda: x, noise, cfg, autocast(CUDA, precision))
    assert stats.device.type == CUDA.type and torch.isfinite(stats).all()
    assert stats[2] > 0  # the gradient penalty was computed
    assert any(not torch.equal(a, p) for a, p in zip(before, G.parameters()))


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
