"""Involution (Li et al. 2021, "Involution: Inverting the Inherence of Convolution"); paper eq. (1), (2), (4).

The operator (eq. 2) for one group ``g`` of ``C/G`` channels::

    Y[b, c, i, j] = sum_{u, v} H[b, g, u*K + v, i, j] * X[b, c, i*s + u*d - p, j*s + v*d - p]

with zero padding ``p = d*(K-1)//2``. The official RedNet code evaluates it with ``unfold``, which builds a
K*K-times larger copy of ``X`` (151 MB per call at the paper's shape for K=3, 822 MB for K=7). Here it is a sum
of K*K shifted multiply-adds, never building that buffer, in one of three backends: ``native`` (default; C++
loops over (sample, group) tiles that stay in cache, ``involution_native.cpp``: 15-24x faster than unfold for
K = 3..7 on a 2-core AVX2 CPU), ``eager`` (in-place PyTorch ops over cache-sized batch chunks; 5-9x) and
``compiled`` (torch.compile; stride 1). See ``benchmarks/involution.py``.

Autograd: the operator is bilinear in (X, H). Its two adjoints are themselves involution-like bilinear maps,

    transpose   T(G, H)[c, q]    = sum_k sum_{p: p*s + o_k = q} G[c, p] H[k, p]     (dL/dX)
    correlate   R(G, X)[g, k, p] = sum_{c in g} G[c, p] X[c, p*s + o_k]            (dL/dH)

and the adjoints of T and R are again F, T and R. Each of the three is an ``autograd.Function`` whose backward
calls the other two, so derivatives of any order exist (WGAN-GP differentiates the critic twice).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .spectral_norm import spectral_norm

__all__ = ["involution2d", "involution2d_unfold", "Involution2d", "paper_param_count", "count_parameters",
           "set_backend", "get_backend", "BACKENDS"]

# Batch chunks are sized so that one chunk of the padded input stays in the CPU's L2/L3 cache.
_CHUNK_BYTES = 1 << 20


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_kernel_size(kernel_size: int) -> None:
    _check_positive(kernel_size=kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd so that the 'same' padding dilation*(K-1)//2 centres the window, "
            f"got {kernel_size}; use 1, 3, 5 or 7"
        )


@dataclass(frozen=True)
class _Geometry:
    """Index geometry shared by the three primitives."""

    kernel_size: int
    stride: int
    dilation: int
    groups: int
    height: int
    width: int

    @property
    def pad(self) -> int:
        return self.dilation * (self.kernel_size - 1) // 2

    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.pad - self.dilation * (self.kernel_size - 1) - 1) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.pad - self.dilation * (self.kernel_size - 1) - 1) // self.stride + 1

    def windows(self) -> Iterator[tuple[int, slice, slice]]:
        """(k, rows, cols): the padded-input positions that kernel tap k reads for every output position."""
        k, s = self.kernel_size, self.stride
        rows_span = (self.out_height - 1) * s + 1
        cols_span = (self.out_width - 1) * s + 1
        for u in range(k):
            for v in range(k):
                r0, c0 = u * self.dilation, v * self.dilation
                yield u * k + v, slice(r0, r0 + rows_span, s), slice(c0, c0 + cols_span, s)

    def chunk(self, x: torch.Tensor) -> int:
        """Samples per batch chunk: the whole batch on accelerators, a cache-sized slice on the CPU."""
        if x.device.type != "cpu":
            return x.shape[0]
        padded = (self.height + 2 * self.pad) * (self.width + 2 * self.pad)
        per_sample = x.shape[1] * padded * x.element_size()
        return max(1, _CHUNK_BYTES // max(per_sample, 1))


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sum the K*K terms in float32 when the inputs are half precision (bf16 autocast)."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


# ----------------------------------------------------------------------------------------------------------------
# Backends, chosen with ``set_backend`` or ``GAN_LIB_INVOLUTION=native|eager|compiled``:
# "native" (default): the C++ loops of involution_native.cpp, built on first use; CPU float32/float64 tensors,
#   any stride and dilation; elsewhere (CUDA tensors, or when it cannot be built) the eager loops run instead.
# "eager": the chunked in-place loops below (any device).
# "compiled": for stride 1, the same three maps written as one sum of K*K shifted products each and fused by
#   torch.compile (inductor) into a single loop nest per primitive, after a compile of a few seconds per shape.
# Side by side: ``benchmarks/involution.py [--compiled]``.
BACKENDS = ("native", "eager", "compiled")
_backend = {"name": os.environ.get("GAN_LIB_INVOLUTION", "native"), "fns": {}}
if _backend["name"] not in BACKENDS:
    raise ValueError(f"GAN_LIB_INVOLUTION={_backend['name']!r}: choose one of {BACKENDS}")


def set_backend(name: str) -> None:
    """Select the involution backend for the whole process: ``"eager"`` or ``"compiled"`` (torch.compile)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown involution backend {name!r}; choose one of {BACKENDS}")
    _backend["name"] = name


def get_backend() -> str:
    return _backend["name"]


def _fused_forward(x: torch.Tensor, kernel: torch.Tensor, k: int, d: int) -> torch.Tensor:
    b, c, h, w = x.shape
    g, p = kernel.shape[1], d * (k - 1) // 2
    xp = F.pad(x, (p, p, p, p)).view(b, g, c // g, h + 2 * p, w + 2 * p)
    out = xp[..., :h, :w] * kernel[:, :, None, 0]
    for i in range(1, k * k):
        u, v = divmod(i, k)
        out = out + xp[..., u * d: u * d + h, v * d: v * d + w] * kernel[:, :, None, i]
    return out.reshape(b, c, h, w)


def _fused_transpose(grad: torch.Tensor, kernel: torch.Tensor, k: int, d: int) -> torch.Tensor:
    b, c, h, w = grad.shape
    g, p = kernel.shape[1], d * (k - 1) // 2
    gg = grad.view(b, g, c // g, h, w)
    out = None
    for i in range(k * k):  # output (y, x) read input (y + u*d - p, x + v*d - p): shift the product back
        u, v = divmod(i, k)
        t = F.pad(gg * kernel[:, :, None, i], (v * d - p, p - v * d, u * d - p, p - u * d))
        out = t if out is None else out + t
    return out.reshape(b, c, h, w)


def _fused_correlate(grad: torch.Tensor, x: torch.Tensor, k: int, d: int, g: int) -> torch.Tensor:
    b, c, h, w = x.shape
    p = d * (k - 1) // 2
    xp = F.pad(x, (p, p, p, p)).view(b, g, c // g, h + 2 * p, w + 2 * p)
    gg = grad.view(b, g, c // g, h, w)
    taps = [(gg * xp[..., (i // k) * d: (i // k) * d + h, (i % k) * d: (i % k) * d + w]).sum(2) for i in range(k * k)]
    return torch.stack(taps, 2)


def _compiled(name: str, fn):
    fns = _backend["fns"]
    if name not in fns:
        fns[name] = torch.compile(fn, dynamic=False)
    return fns[name]


def _use_compiled(geo: "_Geometry") -> bool:
    return _backend["name"] == "compiled" and geo.stride == 1


def _native(t: torch.Tensor):
    """The C++ module when the native backend applies to ``t`` (CPU, float32/float64), else None."""
    if _backend["name"] != "native" or t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
        return None
    from . import involution_native

    return involution_native.load()


# ----------------------------------------------------------------------------------------------------------------
# The three primitives, on plain tensors (no autograd). Shapes:
#   x: (B, C, H, W)   kernel: (B, G, K*K, Ho, Wo)   grad of output: (B, C, Ho, Wo)


def _forward(x: torch.Tensor, kernel: torch.Tensor, geo: _Geometry) -> torch.Tensor:
    """F(x, kernel) -> (B, C, Ho, Wo): eq. (2)."""
    native = _native(x)
    if native is not None:
        return native.forward(x.contiguous(), kernel.contiguous(), geo.kernel_size, geo.stride, geo.dilation)
    if _use_compiled(geo):
        return _compiled("forward", _fused_forward)(x, kernel, geo.kernel_size, geo.dilation)
    b, c = x.shape[:2]
    g, p = geo.groups, geo.pad
    xp = F.pad(x, (p, p, p, p)).view(b, g, c // g, geo.height + 2 * p, geo.width + 2 * p)
    out = torch.zeros(b, g, c // g, geo.out_height, geo.out_width, dtype=_accumulation_dtype(x.dtype), device=x.device)
    n = geo.chunk(x)
    for b0 in range(0, b, n):
        xb, kb, ob = xp[b0 : b0 + n], kernel[b0 : b0 + n].unsqueeze(2), out[b0 : b0 + n]
        for k, rows, cols in geo.windows():
            ob.addcmul_(xb[..., rows, cols], kb[:, :, :, k])
    return out.view(b, c, geo.out_height, geo.out_width).to(x.dtype)


def _transpose(grad: torch.Tensor, kernel: torch.Tensor, geo: _Geometry) -> torch.Tensor:
    """T(grad, kernel) -> (B, C, H, W): the adjoint of F in x."""
    native = _native(grad)
    if native is not None:
        return native.transpose(grad.contiguous(), kernel.contiguous(), geo.kernel_size, geo.stride, geo.dilation,
                                geo.height, geo.width)
    if _use_compiled(geo):
        return _compiled("transpose", _fused_transpose)(grad.contiguous(), kernel, geo.kernel_size, geo.dilation)
    b, c = grad.shape[:2]
    g, p = geo.groups, geo.pad
    gg = grad.reshape(b, g, c // g, geo.out_height, geo.out_width)
    acc = torch.zeros(
        b, g, c // g, geo.height + 2 * p, geo.width + 2 * p, dtype=_accumulation_dtype(grad.dtype), device=grad.device
    )
    n = geo.chunk(acc)
    for b0 in range(0, b, n):
        ab, kb, gb = acc[b0 : b0 + n], kernel[b0 : b0 + n].unsqueeze(2), gg[b0 : b0 + n]
        for k, rows, cols in geo.windows():
            ab[..., rows, cols].addcmul_(gb, kb[:, :, :, k])
    out = acc[..., p : p + geo.height, p : p + geo.width].reshape(b, c, geo.height, geo.width)
    return out.to(grad.dtype)


def _correlate(grad: torch.Tensor, x: torch.Tensor, geo: _Geometry) -> torch.Tensor:
    """R(grad, x) -> (B, G, K*K, Ho, Wo): the adjoint of F in the kernel."""
    native = _native(x)
    if native is not None:
        return native.correlate(grad.contiguous(), x.contiguous(), geo.kernel_size, geo.stride, geo.dilation,
                                geo.groups)
    if _use_compiled(geo):
        return _compiled("correlate", _fused_correlate)(grad.contiguous(), x, geo.kernel_size, geo.dilation,
                                                        geo.groups)
    b, c = x.shape[:2]
    g, p = geo.groups, geo.pad
    xp = F.pad(x, (p, p, p, p)).view(b, g, c // g, geo.height + 2 * p, geo.width + 2 * p)
    gg = grad.reshape(b, g, c // g, geo.out_height, geo.out_width)
    acc_dtype = _accumulation_dtype(x.dtype)
    out = torch.empty(b, g, geo.kernel_size**2, geo.out_height, geo.out_width, dtype=acc_dtype, device=x.device)
    n = geo.chunk(x)
    tmp = torch.empty(min(n, b), g, c // g, geo.out_height, geo.out_width, dtype=acc_dtype, device=x.device)
    for b0 in range(0, b, n):
        xb, gb, ob = xp[b0 : b0 + n], gg[b0 : b0 + n], out[b0 : b0 + n]
        t = tmp[: xb.shape[0]]
        for k, rows, cols in geo.windows():
            torch.mul(gb, xb[..., rows, cols], out=t)
            torch.sum(t, dim=2, out=ob[:, :, k])
    return out.to(x.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Autograd: each Function's backward is expressed through the other two (closed under differentiation).


class _Involution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, geo):
        ctx.save_for_backward(x, kernel)
        ctx.geo = geo
        return _forward(x, kernel, geo)

    @staticmethod
    def backward(ctx, grad):
        x, kernel = ctx.saved_tensors
        geo = ctx.geo
        gx = _InvolutionTranspose.apply(grad, kernel, geo) if ctx.needs_input_grad[0] else None
        gk = _InvolutionCorrelate.apply(grad, x, geo) if ctx.needs_input_grad[1] else None
        return gx, gk, None


class _InvolutionTranspose(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad, kernel, geo):
        ctx.save_for_backward(grad, kernel)
        ctx.geo = geo
        return _transpose(grad, kernel, geo)

    @staticmethod
    def backward(ctx, u):
        grad, kernel = ctx.saved_tensors
        geo = ctx.geo
        g_grad = _Involution.apply(u, kernel, geo) if ctx.needs_input_grad[0] else None
        g_kernel = _InvolutionCorrelate.apply(grad, u, geo) if ctx.needs_input_grad[1] else None
        return g_grad, g_kernel, None


class _InvolutionCorrelate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad, x, geo):
        ctx.save_for_backward(grad, x)
        ctx.geo = geo
        return _correlate(grad, x, geo)

    @staticmethod
    def backward(ctx, v):
        grad, x = ctx.saved_tensors
        geo = ctx.geo
        g_grad = _Involution.apply(x, v, geo) if ctx.needs_input_grad[0] else None
        g_x = _InvolutionTranspose.apply(grad, v, geo) if ctx.needs_input_grad[1] else None
        return g_grad, g_x, None


def involution2d(
    x: torch.Tensor, kernel: torch.Tensor, kernel_size: int, stride: int = 1, dilation: int = 1
) -> torch.Tensor:
    """Apply per-position kernels to ``x`` (eq. 2), without materialising the unfolded input.

    Args:
        x: (B, C, H, W).
        kernel: (B, G, K*K, H_out, W_out); G divides C and each group of C/G channels shares its kernel.
        kernel_size: K (odd); stride, dilation: as in convolution. Zero padding ``dilation*(K-1)//2``.

    Returns:
        (B, C, H_out, W_out) with H_out = (H + 2p - d(K-1) - 1)//stride + 1.
    """
    _check_kernel_size(kernel_size)
    _check_positive(stride=stride, dilation=dilation)
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if kernel.dim() != 5:
        raise ValueError(f"kernel must be (B, G, K*K, H_out, W_out), got shape {tuple(kernel.shape)}")
    b, c, h, w = x.shape
    groups = kernel.shape[1]
    geo = _Geometry(kernel_size, stride, dilation, groups, h, w)
    expected = (b, groups, kernel_size**2, geo.out_height, geo.out_width)
    if tuple(kernel.shape) != expected:
        raise ValueError(f"kernel must have shape {expected} for x of shape {tuple(x.shape)}, got {tuple(kernel.shape)}")
    if c % groups:
        raise ValueError(f"channels ({c}) must be divisible by the kernel's groups ({groups})")
    dtype = torch.promote_types(x.dtype, kernel.dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # The shifted multiply-adds run on NCHW; a channels_last network gets its layout back afterwards.
        out = involution2d(x.contiguous(), kernel.contiguous(), kernel_size, stride, dilation)
        return out.contiguous(memory_format=torch.channels_last)
    if dtype in (torch.bfloat16, torch.float16):
        # Half precision (autocast): upcast once and sum the K*K terms in float32. Mixed-dtype multiply-adds
        # would convert every shifted window instead (measured 3x slower for the whole bf16 training step).
        return _Involution.apply(x.float(), kernel.float(), geo).to(dtype)
    return _Involution.apply(x.to(dtype), kernel.to(dtype), geo)


def involution2d_unfold(
    x: torch.Tensor, kernel: torch.Tensor, kernel_size: int, stride: int = 1, dilation: int = 1
) -> torch.Tensor:
    """Reference: the official RedNet formulation via ``unfold`` (K*K-times larger buffer). For tests/benchmarks."""
    b, c, h, w = x.shape
    groups, ho, wo = kernel.shape[1], kernel.shape[-2], kernel.shape[-1]
    pad = dilation * (kernel_size - 1) // 2
    cols = F.unfold(x, kernel_size, dilation=dilation, padding=pad, stride=stride)
    cols = cols.view(b, groups, c // groups, kernel_size**2, ho, wo)
    return (kernel.unsqueeze(2) * cols).sum(dim=3).view(b, c, ho, wo)


# ----------------------------------------------------------------------------------------------------------------

_KERNEL_NORMS = ("none", "spectral", "batch")
_SIGMA_NORMS = ("batch", "layer", "none")


class Involution2d(nn.Module):
    """Involution layer: kernel generation H = W1 sigma(W0 X) (eq. 1), then eq. (2).

    ``W0``: 1x1 conv C -> C/R (no bias when sigma normalises); ``sigma``: normalisation + ReLU (paper §4.2:
    BatchNorm, momentum 0.3 as in the authors' code); ``W1``: 1x1 conv C/R -> K*K*G. With stride > 1 the input
    of the kernel branch is average-pooled by the stride first (RedNet).

    Stability options (paper §5.3):
        kernel_norm: ``"none"``; ``"spectral"`` (spectral norm on W0 and W1); ``"batch"`` (BatchNorm on the
            generated kernel's K*K*G channels).
        kernel_clip: clamp the generated kernel to [-clip, clip] (None: no clipping).
        sigma_norm: the normalisation inside sigma: ``"batch"`` (paper), ``"layer"`` (GroupNorm with one group:
            per-sample, so a critic's scores stop depending on the rest of the batch, as WGAN-GP's per-sample
            gradient penalty assumes) or ``"none"``.

    stack: S independent copies of the layer in one module (seed stacking, `gan_lib.stacking`): the input holds
        the copies' channels side by side, (B, S*C, H, W); W0 and W1 are grouped 1x1 convolutions (groups=S), the
        norms act per channel (GroupNorm with S groups for ``"layer"``), and eq. (2) runs with S*G kernel groups,
        so copy s only ever sees its own channels.

    Shapes: (B, S*C, H, W) -> (B, S*C, H_out, W_out) (S = ``stack``, 1 by default).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        groups: int = 4,
        reduction_ratio: int = 2,
        stride: int = 1,
        dilation: int = 1,
        kernel_norm: str = "none",
        kernel_clip: Optional[float] = None,
        sigma_norm: str = "batch",
        stack: int = 1,
    ) -> None:
        super().__init__()
        _check_positive(channels=channels, groups=groups, reduction_ratio=reduction_ratio, stride=stride,
                        dilation=dilation, stack=stack)
        _check_kernel_size(kernel_size)
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        if channels % reduction_ratio:
            raise ValueError(f"channels ({channels}) must be divisible by reduction_ratio ({reduction_ratio})")
        if kernel_norm not in _KERNEL_NORMS:
            raise ValueError(f"kernel_norm must be one of {_KERNEL_NORMS}, got {kernel_norm!r}")
        if sigma_norm not in _SIGMA_NORMS:
            raise ValueError(f"sigma_norm must be one of {_SIGMA_NORMS}, got {sigma_norm!r}")
        if kernel_clip is not None and not kernel_clip > 0:
            raise ValueError(f"kernel_clip must be positive or None, got {kernel_clip!r}")
        self.channels, self.kernel_size, self.groups = channels, kernel_size, groups
        self.reduction_ratio, self.stride, self.dilation = reduction_ratio, stride, dilation
        self.kernel_norm, self.kernel_clip, self.sigma_norm = kernel_norm, kernel_clip, sigma_norm
        self.stack = stack

        hidden, span = channels // reduction_ratio, kernel_size**2 * groups
        self.pool = nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity()
        self.reduce = nn.Conv2d(stack * channels, stack * hidden, 1, bias=sigma_norm == "none", groups=stack)  # W0
        self.sigma = nn.Sequential(_sigma_norm(sigma_norm, hidden, stack), nn.ReLU())
        self.span = nn.Conv2d(stack * hidden, stack * span, 1, groups=stack)  # W1
        if kernel_norm == "spectral":
            self.reduce = spectral_norm(self.reduce, stack)
            self.span = spectral_norm(self.span, stack)
        self.kernel_bn = nn.BatchNorm2d(stack * span) if kernel_norm == "batch" else nn.Identity()

    def generate_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. (1): (B, S*C, H, W) -> (B, S*G, K*K, H_out, W_out)."""
        kernel = self.kernel_bn(self.span(self.sigma(self.reduce(self.pool(x)))))
        if self.kernel_clip is not None:
            kernel = kernel.clamp(-self.kernel_clip, self.kernel_clip)
        b, _, h, w = kernel.shape
        return kernel.view(b, self.stack * self.groups, self.kernel_size**2, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.stack * self.channels:
            raise ValueError(f"expected input (B, {self.stack * self.channels}, H, W), got {tuple(x.shape)}")
        return involution2d(x, self.generate_kernel(x), self.kernel_size, self.stride, self.dilation)

    def paper_param_count(self) -> int:
        """Eq. (4) for this layer's hyper-parameters."""
        return paper_param_count(self.channels, self.kernel_size, self.groups, self.reduction_ratio)

    def extra_repr(self) -> str:
        s = f"{self.channels}, kernel_size={self.kernel_size}, groups={self.groups}, reduction_ratio={self.reduction_ratio}"
        if self.stride != 1:
            s += f", stride={self.stride}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.kernel_norm != "none":
            s += f", kernel_norm={self.kernel_norm!r}"
        if self.kernel_clip is not None:
            s += f", kernel_clip={self.kernel_clip}"
        if self.sigma_norm != "batch":
            s += f", sigma_norm={self.sigma_norm!r}"
        if self.stack != 1:
            s += f", stack={self.stack}"
        return s


def _sigma_norm(kind: str, channels: int, stack: int = 1) -> nn.Module:
    """The norm inside sigma for ``stack`` copies of ``channels`` channels (per copy: one GroupNorm group each)."""
    if kind == "batch":
        return nn.BatchNorm2d(stack * channels, momentum=0.3)
    if kind == "layer":
        return nn.GroupNorm(stack, stack * channels)
    return nn.Identity()


def paper_param_count(channels: int, kernel_size: int, groups: int, reduction_ratio: int) -> int:
    """Eq. (4): (C/G + K*K) * C/(R*G) * G, the paper's estimate of an involution layer's parameters.

    For C=64 the seven Table 2 cases give 800, 520, 2080, 200, 2336, 544, 1312 (the paper prints 644 for case 6,
    a misprint). The layer's real count (``count_parameters``) is larger: eq. (4) is stated only up to a factor.
    """
    _check_positive(channels=channels, groups=groups, reduction_ratio=reduction_ratio)
    _check_kernel_size(kernel_size)
    if channels % groups or channels % (reduction_ratio * groups):
        raise ValueError(
            f"eq. (4) needs C divisible by G and by R*G: C={channels}, G={groups}, R={reduction_ratio}"
        )
    return (channels // groups + kernel_size**2) * (channels // (reduction_ratio * groups)) * groups


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """The number of (trainable) parameters of a module: the true count that eq. (4) estimates."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
