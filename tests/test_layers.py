"""Involution operator / layer (eq. 1, 2, 4) and SAGAN self-attention."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from gan_lib.layers import (
    Involution2d,
    SelfAttention2d,
    count_parameters,
    involution2d,
    involution2d_unfold,
    paper_param_count,
)


def _inputs(b, c, h, w, groups, k, stride, dilation, dtype=torch.float64, grad=False):
    x = torch.randn(b, c, h, w, dtype=dtype, requires_grad=grad)
    pad = dilation * (k - 1) // 2
    ho = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    kernel = torch.randn(b, groups, k * k, ho, wo, dtype=dtype, requires_grad=grad)
    return x, kernel


CASES = list(itertools.product([1, 3, 5, 7], [1, 4, 8], [1, 2], [1, 2]))  # K, G (8 = C), stride, dilation


@pytest.fixture(params=["native", "eager"])
def backend(request):
    """Run the test with each CPU backend of the involution (native C++ loops, eager PyTorch ops)."""
    from gan_lib.layers import get_backend, set_backend

    if request.param == "native":
        from gan_lib.layers import involution_native

        assert involution_native.load() is not None, "the C++ involution kernels did not build on this machine"
    before = get_backend()
    set_backend(request.param)
    yield request.param
    set_backend(before)


@pytest.mark.parametrize("k,groups,stride,dilation", CASES)
def test_involution_matches_unfold_reference(k, groups, stride, dilation, backend):
    x, kernel = _inputs(2, 8, 11, 9, groups, k, stride, dilation)
    ours = involution2d(x, kernel, k, stride, dilation)
    ref = involution2d_unfold(x, kernel, k, stride, dilation)
    assert ours.shape == ref.shape == (2, 8, kernel.shape[-2], kernel.shape[-1])
    assert (ours - ref).abs().max().item() < 1e-10


@pytest.mark.parametrize(
    "k,groups,stride,dilation,size", [(3, 4, 1, 1, 6), (5, 1, 2, 1, 7), (7, 8, 1, 2, 4), (1, 4, 2, 1, 5), (3, 2, 2, 2, 5)]
)
def test_involution_gradcheck_and_double_backward(k, groups, stride, dilation, size, backend):
    x, kernel = _inputs(1, 8, size, size - 1, groups, k, stride, dilation, grad=True)
    fn = lambda a, b: involution2d(a, b, k, stride, dilation)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, kernel))
    # WGAN-GP differentiates the critic twice: second derivatives must be right too. The full second-order
    # Jacobian of the largest case would take gigabytes, so it is checked along random directions (fast mode)
    # and in full on the small cases.
    assert torch.autograd.gradgradcheck(fn, (x, kernel), fast_mode=kernel.numel() > 500)


def test_involution_gradients_match_reference_gradients(backend):
    x, kernel = _inputs(3, 8, 10, 10, 4, 5, 1, 1, grad=True)
    g = torch.randn(3, 8, 10, 10, dtype=torch.float64)
    ours = torch.autograd.grad(involution2d(x, kernel, 5), (x, kernel), g)
    ref = torch.autograd.grad(involution2d_unfold(x, kernel, 5), (x, kernel), g)
    for a, b in zip(ours, ref):
        assert (a - b).abs().max().item() < 1e-10


def test_involution_float32_and_bf16_close_to_reference(backend):
    x, kernel = _inputs(4, 16, 12, 12, 4, 3, 1, 1, dtype=torch.float32)
    ref = involution2d_unfold(x, kernel, 3)
    assert torch.allclose(involution2d(x, kernel, 3), ref, atol=1e-5)
    out = involution2d(x.bfloat16(), kernel.bfloat16(), 3)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max().item() < 0.1 * ref.abs().max().item()


def test_involution_does_not_allocate_unfolded_copy(monkeypatch):
    """Eager backend: no K*K-sized buffer: unfold is never called and no tensor of K*K times x's size is created."""
    monkeypatch.setattr("gan_lib.layers.involution._backend", {"name": "eager", "fns": {}})
    monkeypatch.setattr(F, "unfold", lambda *a, **k: pytest.fail("unfold called"))
    x, kernel = _inputs(2, 8, 16, 16, 4, 7, 1, 1, dtype=torch.float32, grad=True)
    limit = x.numel() * 49
    created = []
    orig_zeros, orig_empty = torch.zeros, torch.empty

    def spy(orig):
        def make(*size, **kw):
            t = orig(*size, **kw)
            created.append(t.numel())
            return t
        return make

    monkeypatch.setattr(torch, "zeros", spy(orig_zeros))
    monkeypatch.setattr(torch, "empty", spy(orig_empty))
    involution2d(x, kernel, 7).sum().backward()
    # the largest buffers are the kernel (gradient) itself, G/C of the unfolded size
    assert created and max(created) <= kernel.numel() < limit


def test_native_involution_peak_memory_is_far_below_the_unfold_buffer():
    """Native backend: forward+backward at K=7 grows the process's peak RSS by much less than the 196 MB
    unfolded copy of x the reference builds (measured in a fresh process, as benchmarks/involution.py does)."""
    import subprocess
    import sys

    code = """
import torch
from gan_lib.layers import involution2d, involution_native, get_backend
assert get_backend() == "native" and involution_native.load() is not None
from gan_lib.cost import peak_rss_mb
x = torch.randn(16, 64, 32, 32, requires_grad=True)
k = torch.randn(16, 4, 49, 32, 32, requires_grad=True)
involution2d(torch.randn(1, 4, 8, 8), torch.randn(1, 1, 49, 8, 8), 7)  # load the extension first
base = peak_rss_mb()
involution2d(x, k, 7).sum().backward()
print(peak_rss_mb() - base, x.numel() * 49 * 4 / 2**20)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grew, unfold = map(float, out.stdout.strip().splitlines()[-1].split())
    assert unfold > 190 and grew < unfold / 4, (grew, unfold)


def test_native_backend_falls_back_to_eager_when_it_cannot_be_built(monkeypatch):
    from gan_lib.layers import involution_native

    monkeypatch.setattr(involution_native, "load", lambda verbose=False: None)
    monkeypatch.setattr("gan_lib.layers.involution._backend", {"name": "native", "fns": {}})
    x, kernel = _inputs(2, 8, 9, 9, 4, 3, 1, 1)
    assert (involution2d(x, kernel, 3) - involution2d_unfold(x, kernel, 3)).abs().max().item() < 1e-10


def test_native_build_failure_is_a_warning_not_an_error(monkeypatch):
    import torch.utils.cpp_extension as ext

    from gan_lib.layers import involution_native

    monkeypatch.setattr(involution_native, "_state", {})
    monkeypatch.setattr(ext, "load", lambda **kw: (_ for _ in ()).throw(RuntimeError("no compiler")))
    with pytest.warns(UserWarning, match="could not be built.*no compiler"):
        assert involution_native.load() is None
    assert involution_native.load() is None  # remembered: no second attempt, no second warning


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_size=4), "odd"),
        (dict(kernel_size=0), "positive"),
        (dict(groups=3), "divisible by groups"),
        (dict(reduction_ratio=5), "divisible by reduction_ratio"),
        (dict(stride=0), "positive"),
        (dict(kernel_norm="weird"), "kernel_norm"),
        (dict(sigma_norm="instance"), "sigma_norm"),
        (dict(kernel_clip=-1.0), "kernel_clip"),
    ],
)
def test_involution_layer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Involution2d(16, **kwargs)


def test_involution2d_function_rejects_bad_shapes():
    x = torch.randn(2, 8, 6, 6)
    with pytest.raises(ValueError, match="odd"):
        involution2d(x, torch.randn(2, 4, 16, 6, 6), 4)
    with pytest.raises(ValueError, match="shape"):
        involution2d(x, torch.randn(2, 4, 9, 5, 5), 3)
    with pytest.raises(ValueError, match="divisible"):
        involution2d(x, torch.randn(2, 3, 9, 6, 6), 3)


@pytest.mark.parametrize("stride", [1, 2])
def test_involution_layer_forward_is_eq1_then_eq2(stride):
    layer = Involution2d(16, kernel_size=5, groups=4, reduction_ratio=4, stride=stride).double().eval()
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (2, 16, 8 // stride, 8 // stride)
    pooled = F.avg_pool2d(x, stride) if stride > 1 else x
    h = layer.span(layer.sigma(layer.reduce(pooled))).view(2, 4, 25, 8 // stride, 8 // stride)
    assert torch.allclose(y, involution2d_unfold(x, h, 5, stride))


def test_involution_layer_stability_options():
    x = torch.randn(4, 16, 8, 8)
    clipped = Involution2d(16, kernel_clip=0.01)
    assert clipped.generate_kernel(x).abs().max().item() <= 0.01 + 1e-7
    spectral = Involution2d(16, kernel_norm="spectral")
    assert hasattr(spectral.reduce, "parametrizations") and hasattr(spectral.span, "parametrizations")
    batch = Involution2d(16, kernel_norm="batch").train()
    kernel = batch.generate_kernel(x)  # batch-normalised over (B, H, W) per kernel channel
    per_channel = kernel.permute(1, 2, 0, 3, 4).reshape(4 * 9, -1)
    assert per_channel.mean(1).abs().max().item() < 1e-4
    layer = Involution2d(16, sigma_norm="layer")
    assert isinstance(layer.sigma[0], torch.nn.GroupNorm)
    # per-sample sigma: one sample's output does not depend on the others in its batch
    layer.train()
    assert torch.allclose(layer(x)[:1], layer(x[:1]), atol=1e-6)
    assert "kernel_clip=0.01" in repr(clipped) and "kernel_norm='spectral'" in repr(spectral)


TABLE2 = [  # case, K, G, R, eq. (4), the paper's printed count
    (1, 3, 4, 2, 800, 800),
    (2, 7, 4, 8, 520, 520),
    (3, 7, 4, 2, 2080, 2080),
    (4, 3, 4, 8, 200, 200),
    (5, 3, 1, 2, 2336, 2336),
    (6, 1, 4, 2, 544, 644),
    (7, 5, 4, 2, 1312, 1312),
]


@pytest.mark.parametrize("case,k,g,r,formula,printed", TABLE2)
def test_paper_param_count_table2(case, k, g, r, formula, printed):
    assert paper_param_count(64, k, g, r) == formula
    assert (formula != printed) == (case == 6)  # only case 6 is misprinted in the paper
    layer = Involution2d(64, kernel_size=k, groups=g, reduction_ratio=r)
    # true count: W0 (C*C/R) + BN (2*C/R) + W1 (C/R*K*K*G + K*K*G)
    hidden, out = 64 // r, k * k * g
    assert count_parameters(layer) == 64 * hidden + 2 * hidden + hidden * out + out
    assert layer.paper_param_count() == formula


def test_paper_param_count_errors():
    with pytest.raises(ValueError, match="odd"):
        paper_param_count(64, 2, 4, 2)
    with pytest.raises(ValueError, match="divisible"):
        paper_param_count(64, 3, 3, 2)


def test_self_attention_sdpa_equals_explicit_formula():
    torch.manual_seed(1)
    fast = SelfAttention2d(32, use_sdpa=True).double()
    slow = SelfAttention2d(32).double()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(3, 32, 8, 8, dtype=torch.float64)
    assert torch.allclose(fast.attend(x), slow.attend(x), atol=1e-12)
    # explicit SAGAN formula: beta = softmax(q^T k) over positions, o = v beta^T
    q, k, v = fast.query(x).flatten(2), fast.key(x).flatten(2), fast.value(x).flatten(2)
    beta = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)
    o = torch.bmm(v, beta.transpose(1, 2)).view_as(x)
    assert torch.allclose(fast.attend(x), o, atol=1e-12)


def test_self_attention_default_is_twice_differentiable_without_sdpa(monkeypatch):
    """The gradient penalty needs a double backward, which SDPA's fused CUDA kernels lack: the default layer must
    not call SDPA, and its second derivatives must be right (gradgradcheck, float64)."""
    import torch.nn.functional as F

    def no_sdpa(*args, **kwargs):
        raise AssertionError("the default SelfAttention2d must not call scaled_dot_product_attention")

    monkeypatch.setattr(F, "scaled_dot_product_attention", no_sdpa)
    torch.manual_seed(0)
    layer = SelfAttention2d(8, qk_ratio=4).double()
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(layer, (x,))
    # the WGAN-GP pattern: grad wrt the input with create_graph, then backward into the weights
    (g,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    g.pow(2).sum().backward()
    assert layer.query.weight.grad is not None and layer.query.weight.grad.abs().sum() > 0
    with pytest.raises(AssertionError, match="must not call"):
        SelfAttention2d(8, qk_ratio=4, use_sdpa=True).double()(x)


def test_self_attention_residual_gamma_starts_at_zero():
    layer = SelfAttention2d(16)
    assert layer.gamma.item() == 0.0 and layer.query.out_channels == 2 and layer.value.out_channels == 16
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(layer(x), x)
    with torch.no_grad():
        layer.gamma.fill_(0.5)
    assert torch.allclose(layer(x), x + 0.5 * layer.attend(x))
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert layer.gamma.grad is not None
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention2d(12)


def test_involution_accepts_channels_last_and_keeps_the_layout():
    x, kernel = _inputs(2, 8, 9, 9, 4, 3, 1, 1, dtype=torch.float32)
    out = involution2d(x.contiguous(memory_format=torch.channels_last), kernel, 3)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, involution2d_unfold(x, kernel, 3), atol=1e-5)


@pytest.fixture
def compiled_backend():
    from gan_lib.layers import get_backend, set_backend

    before = get_backend()
    set_backend("compiled")
    yield
    set_backend(before)


@pytest.mark.parametrize("k,groups,dilation", [(3, 2, 2)])
def test_compiled_backend_matches_reference_with_derivatives(compiled_backend, k, groups, dilation):
    """torch.compile'd primitives (stride 1) equal the unfold formulation, first and second derivatives too."""
    x, kernel = _inputs(2, 8, 7, 6, groups, k, 1, dilation, grad=True)
    ours = involution2d(x, kernel, k, 1, dilation)
    assert (ours - involution2d_unfold(x, kernel, k, 1, dilation)).abs().max().item() < 1e-10
    fn = lambda a, b: involution2d(a, b, k, 1, dilation)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, kernel))
    assert torch.autograd.gradgradcheck(fn, (x, kernel), fast_mode=True)


def test_compiled_backend_falls_back_to_eager_for_stride_2(compiled_backend):
    x, kernel = _inputs(2, 8, 9, 9, 4, 3, 2, 1)
    assert (involution2d(x, kernel, 3, 2) - involution2d_unfold(x, kernel, 3, 2)).abs().max().item() < 1e-10


def test_unknown_backend_is_an_error():
    from gan_lib.layers import set_backend

    with pytest.raises(ValueError, match="eager"):
        set_backend("triton")
