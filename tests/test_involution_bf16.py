"""bf16 in the native involution kernels: bit-identical to the upcast path (float32 copies, float32 kernels, one
rounding to bf16), from the primitives to whole iGAN training steps; the extension's build name.

The upcast path is forced with ``set_bf16_path("upcast")`` (``GAN_LIB_INVOLUTION_BF16=upcast``).
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

from gan_lib.layers import involution2d, involution_native, set_bf16_path
from gan_lib.layers import involution as inv


@pytest.fixture(autouse=True)
def native_backend():
    """The native backend (built) with the bf16 kernels, restored afterwards."""
    assert involution_native.load() is not None, "the C++ involution kernels did not build on this machine"
    before = (inv.get_backend(), inv.get_bf16_path())
    inv.set_backend("native")
    yield
    inv.set_backend(before[0])
    set_bf16_path(before[1])


def _out_size(h, k, stride, dilation):
    pad = dilation * (k - 1) // 2
    return (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1


CASES = list(itertools.product([3, 7], [1, 4], [1, 2], [1, 2]))  # K, G, stride, dilation


@pytest.mark.parametrize("k,groups,stride,dilation", CASES + [(1, 4, 1, 1), (5, 8, 2, 1)])
def test_bf16_kernels_equal_float32_kernels_on_upcast_inputs(k, groups, stride, dilation):
    """Each primitive on bf16 = the float32 primitive on float32 copies, rounded by Tensor.to(bf16) (bit for bit;
    NaN payloads aside); ``wide`` = the float32 result itself. Scales: normal values, float32 subnormal sums, and
    sums beyond bf16's (and float32's) range, so the rounding must agree with ATen's everywhere."""
    m = involution_native.load()
    b, c, h, w = 2, 8, 11, 9
    ho, wo = _out_size(h, k, stride, dilation), _out_size(w, k, stride, dilation)
    args = (k, stride, dilation)
    primitives = (
        lambda a, kern, wide=False: m.forward(a, kern, *args, wide),
        lambda a, kern, wide=False: m.transpose(a, kern, *args, h, w, wide),
        lambda a, x, wide=False: m.correlate(a, x, *args, groups, wide),
    )
    for scale in (1.0, 1e-39, 2e37):
        x = (torch.randn(b, c, h, w) * scale).bfloat16()
        kern = torch.randn(b, groups, k * k, ho, wo).bfloat16()
        grad = (torch.randn(b, c, ho, wo) * scale).bfloat16()
        for fn, a, bb in zip(primitives, (x, grad, grad), (kern, kern, x)):
            ref = fn(a.float(), bb.float())
            got, wide = fn(a, bb), fn(a, bb, True)
            assert got.dtype == torch.bfloat16 and wide.dtype == torch.float32
            expected = ref.to(torch.bfloat16)
            nan = expected.isnan()
            assert torch.equal(got.isnan(), nan)
            assert torch.equal(got.view(torch.int16)[~nan], expected.view(torch.int16)[~nan])
            assert torch.equal(wide.isnan(), ref.isnan()) and torch.equal(wide[~ref.isnan()], ref[~ref.isnan()])


def _penalty_graph(path, k, groups, stride, dilation, seed=0):
    """A critic-like graph in bf16: the kernel generated from x (conv, ReLU), the involution, then a non-linear
    layer (so the second derivative reaches the involution's output too); the loss is a score term plus the
    gradient-norm penalty of the same graph. Returns the output, the penalty's input gradient and the loss's
    gradients (double backward) for x and the parameters."""
    set_bf16_path(path)
    gen = torch.Generator().manual_seed(seed)
    b, c, h = 3, 8, 10
    ho = _out_size(h, k, stride, dilation)
    x = torch.randn(b, c, h, h, generator=gen).bfloat16().requires_grad_()
    w0 = (torch.randn(c, c, 1, 1, generator=gen) / 3).bfloat16().requires_grad_()
    w1 = (torch.randn(groups * k * k, c, 1, 1, generator=gen) / 3).bfloat16().requires_grad_()
    w_out = torch.randn(b, c, ho, ho, generator=gen).bfloat16().requires_grad_()
    pooled = F.avg_pool2d(x, stride) if stride > 1 else x
    kernel = F.conv2d(F.relu(F.conv2d(pooled, w0)), w1).view(b, groups, k * k, ho, ho)
    y = involution2d(x, kernel, k, stride, dilation)
    score = (torch.tanh(y) * y * w_out).float().sum()
    (gx,) = torch.autograd.grad(score, x, create_graph=True)
    penalty = (gx.float().flatten(1).norm(dim=1) - 1).pow(2).mean()
    return [y, gx, *torch.autograd.grad(penalty + score, (x, w0, w1, w_out))]


@pytest.mark.parametrize("k,groups,stride,dilation", CASES)
def test_bf16_forward_backward_and_double_backward_equal_the_upcast_path(k, groups, stride, dilation):
    native = _penalty_graph("native", k, groups, stride, dilation)
    upcast = _penalty_graph("upcast", k, groups, stride, dilation)
    for a, b in zip(native, upcast):
        assert a.dtype == b.dtype == torch.bfloat16 and torch.equal(a, b)


def test_bf16_path_runs_the_kernels_on_bf16_and_upcast_on_float32(monkeypatch):
    """Which dtypes reach the C++ kernels: bf16 on the native path, float32 copies on the upcast path."""
    seen = []
    real = inv._native

    class Spy:
        def __init__(self, module):
            self.module = module

        def __getattr__(self, name):
            def call(*args, **kwargs):
                seen.append((name, args[0].dtype))
                return getattr(self.module, name)(*args, **kwargs)
            return call

    monkeypatch.setattr(inv, "_native", lambda t: None if real(t) is None else Spy(real(t)))
    x = torch.randn(2, 8, 6, 6).bfloat16().requires_grad_()
    kernel = torch.randn(2, 4, 9, 6, 6).bfloat16().requires_grad_()
    for path, dtype in (("native", torch.bfloat16), ("upcast", torch.float32)):
        seen.clear()
        set_bf16_path(path)
        involution2d(x, kernel, 3).float().sum().backward()
        assert {name for name, _ in seen} == {"forward", "transpose", "correlate"}
        assert {d for _, d in seen} == {dtype}


def test_bf16_path_setting():
    assert inv.get_bf16_path() == "native"  # the default
    with pytest.raises(ValueError, match="bf16 path"):
        set_bf16_path("fast")


def test_half_functions_have_exact_derivatives_in_float64():
    """The bf16 graph's Functions (`_InvolutionHalf`: F with float32 placeholders; `_InvolutionHalfGrads`: both
    first derivatives in one node) run on any native dtype; in float64 their first, second and third derivatives
    are checked numerically."""
    geo = inv._Geometry(3, 1, 1, 2, 4, 5)
    x = torch.randn(1, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(1, 2, 9, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 4, 4, 5, dtype=torch.float64)

    def f(a, b):
        return inv._InvolutionHalf.apply(a, b, geo)[0]

    def first(a, b):  # the first derivatives, as a function (create_graph): its gradgradcheck is third order
        return torch.autograd.grad((torch.tanh(f(a, b)) * w).sum(), (a, b), create_graph=True)

    assert torch.autograd.gradcheck(f, (x, kernel))
    assert torch.autograd.gradgradcheck(f, (x, kernel))
    assert torch.autograd.gradgradcheck(first, (x, kernel), fast_mode=True)


TRAIN_CONFIGS = {  # the iGAN configurations of the long runs (notebook 05) at a small shape
    "k3g4r2": {},
    "two-involutions-clip": dict(num_blocks=2, kernel_clip=1.0),
    "k7g4r2": dict(kernel_size=7),
    "kernel-batch-norm": dict(kernel_norm="batch"),
}


def _train_steps(path, overrides, seeds=1, steps=3):
    from gan_lib.config import make_config
    from gan_lib.train import TrainState, autocast, train_step

    set_bf16_path(path)
    cfgs = [make_config("smoke", model="igan", precision="bf16", image_size=32, width=16, batch_size=8, n_critic=2,
                        seed=s, **overrides) for s in range(seeds)]
    state = TrainState(cfgs, 3, torch.device("cpu"), 64)
    gen = torch.Generator().manual_seed(1)
    batches = iter([torch.rand(8, 3 * seeds, 32, 32, generator=gen) * 2 - 1 for _ in range(2 * steps)])
    amp = autocast(torch.device("cpu"), "bf16")
    stats = torch.stack([train_step(state.G, state.D, state.opt_g, state.opt_d, lambda: next(batches),
                                    state.noise(), cfgs[0], amp) for _ in range(steps)])
    return stats, [p.detach().clone() for p in [*state.G.parameters(), *state.D.parameters()]]


@pytest.mark.filterwarnings("ignore:precision=bf16")
@pytest.mark.parametrize("name", list(TRAIN_CONFIGS))
def test_bf16_igan_training_steps_equal_the_upcast_path(name):
    """Three `train_step`s (2 critic steps with the gradient penalty's double backward, 1 generator step each):
    the same losses and the same parameters, bit for bit, with the bf16 kernels and with the upcast path."""
    stats, params = _train_steps("native", TRAIN_CONFIGS[name])
    stats_up, params_up = _train_steps("upcast", TRAIN_CONFIGS[name])
    assert torch.isfinite(stats).all() and torch.equal(stats, stats_up)
    assert all(torch.equal(a, b) for a, b in zip(params, params_up))


@pytest.mark.filterwarnings("ignore:precision=bf16")
def test_bf16_stacked_training_steps_equal_the_upcast_path():
    stats, params = _train_steps("native", {}, seeds=2, steps=2)
    stats_up, params_up = _train_steps("upcast", {}, seeds=2, steps=2)
    assert torch.equal(stats, stats_up) and all(torch.equal(a, b) for a, b in zip(params, params_up))


def test_extension_name_is_keyed_by_the_source_text_and_the_capability():
    source = involution_native.SOURCE.read_text()
    name = involution_native.extension_name(source, "AVX512")
    assert name == involution_native.extension_name(source, "AVX512")  # a pure function of the two
    assert name.startswith("gan_lib_involution_avx512_")
    assert involution_native.extension_name(source + "\n// changed", "AVX512") != name
    assert involution_native.extension_name(source, "AVX2") != name
    loaded = involution_native.load()
    assert loaded.__name__ == involution_native.extension_name(source, involution_native.capability())
