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

bf16 (autocast): the native backend runs its C++ kernels on the bf16 tensors themselves (float32 sums, one rounding
per output), through `_InvolutionHalf` and `_InvolutionHalfGrads`. Their results are bit for bit those of the
path before (``set_bf16_path("upcast")``, or ``GAN_LIB_INVOLUTION_BF16=upcast`` for a whole process: kept for the
tests and the benchmarks), which upcast x and the kernel to float32, ran the float32 Functions and rounded the
output to bf16, in the forward pass, the backward pass and the gradient penalty's double backward: the same float32
sums, each rounded once, without the float32 copies (see the comment above `_InvolutionHalf`;
tests/test_involution_bf16.py).
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
           "set_backend", "get_backend", "BACKENDS", "set_bf16_path", "get_bf16_path", "BF16_PATHS"]

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


_HALF = (torch.bfloat16, torch.float16)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sum the K*K terms in float32 when the inputs are half precision (bf16 autocast)."""
    return torch.float32 if dtype in _HALF else dtype


# ----------------------------------------------------------------------------------------------------------------
# Backends, chosen with ``set_backend`` or ``GAN_LIB_INVOLUTION=native|eager|compiled``:
# "native" (default): the C++ loops of involution_native.cpp, built on first use; CPU float32/float64/bfloat16
#   tensors, any stride and dilation; elsewhere (CUDA tensors, or when it cannot be built) the eager loops run
#   instead.
# "eager": the chunked in-place loops below (any device).
# "compiled": for stride 1, the same three maps written as one sum of K*K shifted products each and fused by
#   torch.compile (inductor) into a single loop nest per primitive, after a compile of a few seconds per shape.
# Side by side: ``benchmarks/involution.py [--compiled]``.
# bf16 inputs on the native backend (CPU), ``set_bf16_path`` or ``GAN_LIB_INVOLUTION_BF16=native|upcast``:
# "native" (default): the C++ kernels take the bf16 tensors; "upcast": float32 copies in, the float32 kernels, a
#   bf16 copy of the output out (the path before the kernels took bf16; bit-identical, kept for the tests and the
#   benchmarks). float16, the other backends and CUDA always upcast.
BACKENDS = ("native", "eager", "compiled")
BF16_PATHS = ("native", "upcast")
_backend = {"name": os.environ.get("GAN_LIB_INVOLUTION", "native"), "fns": {}}
_bf16 = {"path": os.environ.get("GAN_LIB_INVOLUTION_BF16", "native")}
if _backend["name"] not in BACKENDS:
    raise ValueError(f"GAN_LIB_INVOLUTION={_backend['name']!r}: choose one of {BACKENDS}")
if _bf16["path"] not in BF16_PATHS:
    raise ValueError(f"GAN_LIB_INVOLUTION_BF16={_bf16['path']!r}: choose one of {BF16_PATHS}")


def set_backend(name: str) -> None:
    """Select the involution backend for the whole process: ``"eager"`` or ``"compiled"`` (torch.compile)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown involution backend {name!r}; choose one of {BACKENDS}")
    _backend["name"] = name


def get_backend() -> str:
    return _backend["name"]


def set_bf16_path(name: str) -> None:
    """How the native backend runs bf16 inputs: ``"native"`` (bf16 kernels) or ``"upcast"`` (float32 copies)."""
    if name not in BF16_PATHS:
        raise ValueError(f"unknown bf16 path {name!r}; choose one of {BF16_PATHS}")
    _bf16["path"] = name


def get_bf16_path() -> str:
    return _bf16["path"]


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


_NATIVE_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def _native(t: torch.Tensor):
    """The C++ module when the native backend applies to ``t`` (CPU, float32/float64/bfloat16), else None."""
    if _backend["name"] != "native" or t.device.type != "cpu" or t.dtype not in _NATIVE_DTYPES:
        return None
    from . import involution_native

    return involution_native.load()


def _native_bf16(t: torch.Tensor) -> bool:
    """Whether bf16 ``t`` goes to the native kernels as it is (else: the float32 upcast)."""
    return t.dtype == torch.bfloat16 and _bf16["path"] == "native" and _native(t) is not None


# ----------------------------------------------------------------------------------------------------------------
# The three primitives, on plain tensors (no autograd). Shapes:
#   x: (B, C, H, W)   kernel: (B, G, K*K, Ho, Wo)   grad of output: (B, C, Ho, Wo)


def _out_dtype(dtype: torch.dtype, wide: bool) -> torch.dtype:
    """A primitive's output dtype: its inputs', or with ``wide`` the accumulation dtype (bf16 in, the float32 sums
    out unrounded; float32 and float64: no effect)."""
    return _accumulation_dtype(dtype) if wide else dtype


def _forward(x: torch.Tensor, kernel: torch.Tensor, geo: _Geometry, wide: bool = False) -> torch.Tensor:
    """F(x, kernel) -> (B, C, Ho, Wo): eq. (2)."""
    native = _native(x)
    if native is not None:
        return native.forward(x.contiguous(), kernel.contiguous(), geo.kernel_size, geo.stride, geo.dilation, wide)
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
    return out.view(b, c, geo.out_height, geo.out_width).to(_out_dtype(x.dtype, wide))


def _transpose(grad: torch.Tensor, kernel: torch.Tensor, geo: _Geometry, wide: bool = False) -> torch.Tensor:
    """T(grad, kernel) -> (B, C, H, W): the adjoint of F in x."""
    native = _native(grad)
    if native is not None:
        return native.transpose(grad.contiguous(), kernel.contiguous(), geo.kernel_size, geo.stride, geo.dilation,
                                geo.height, geo.width, wide)
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
    return out.to(_out_dtype(grad.dtype, wide))


def _correlate(grad: torch.Tensor, x: torch.Tensor, geo: _Geometry, wide: bool = False) -> torch.Tensor:
    """R(grad, x) -> (B, G, K*K, Ho, Wo): the adjoint of F in the kernel."""
    native = _native(x)
    if native is not None:
        return native.correlate(grad.contiguous(), x.contiguous(), geo.kernel_size, geo.stride, geo.dilation,
                                geo.groups, wide)
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
    return out.to(_out_dtype(x.dtype, wide))


# ----------------------------------------------------------------------------------------------------------------
# Autograd: each Function's backward is expressed through the other two (closed under differentiation).


class _Involution(torch.autograd.Function):
    primitive = staticmethod(_forward)

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
    primitive = staticmethod(_transpose)

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
    primitive = staticmethod(_correlate)

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


# bf16 on the native kernels, bit-identical to the upcast path. Forward and first derivatives are single products:
# the bf16 kernels widen their inputs exactly, sum in float32 in the float32 kernels' order and round once, as
# Tensor.to(bf16) rounded the float32 kernels' output. The double backward (gradient penalty) needs two more
# things. The upcast path's graph holds float32 copies xf, kf of x and the kernel and (under create_graph) gf of
# the output gradient g; its second backward sends two float32 terms to each and autograd adds them in float32
# before the one rounding to bf16 (for u, v the gradients of the first derivatives T(gf, kf) and R(gf, xf), and g2
# the second pass's gradient of y: xf gets T(g2, kf) + T(gf, v), kf gets R(g2, xf) + R(gf, u), gf gets
# F(u, kf) + F(xf, v)). Nodes that each round and then add in bf16 would differ in the last bit, so:
# - `_InvolutionHalfGrads` computes both first derivatives in ONE node (F's backward builds it under
#   create_graph); its backward adds F(u, k) + F(x, v) in float32 and rounds once;
# - `_InvolutionHalf` (F) has two more outputs, float32 placeholders shaped like x and the kernel (one zero
#   repeated by zero strides; never read). `_InvolutionHalfGrads` is built on them, not on x and the kernel, for
#   its terms T(g, v) and R(g, u): it returns them unrounded, in float32, as the placeholders' gradients, and F's
#   node (which runs once the gradients of all its outputs are in) adds them to its own T(g2, k), R(g2, x) in
#   float32 and rounds once.


class _InvolutionHalf(torch.autograd.Function):
    """F(x, kernel) for bf16 x (B, C, H, W) and kernel (B, G, K*K, Ho, Wo) -> (y (B, C, Ho, Wo), hx, hk)."""

    @staticmethod
    def forward(ctx, x, kernel, geo):
        hx, hk = _placeholder(x), _placeholder(kernel)
        ctx.save_for_backward(x, kernel, hx, hk)
        ctx.geo = geo
        ctx.set_materialize_grads(False)
        return _forward(x, kernel, geo), hx, hk

    @staticmethod
    def backward(ctx, grad, grad_hx, grad_hk):
        x, kernel, hx, hk = ctx.saved_tensors
        geo = ctx.geo
        need_x, need_k = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled() and grad is not None and need_x and need_k:  # create_graph: one node for both
            gx, gk = _InvolutionHalfGrads.apply(grad, x, kernel, hx, hk, geo)
            return gx, gk, None
        gx = _rounded_sum([(_InvolutionTranspose, grad, kernel)], geo, x.dtype, grad_hx) if need_x else None
        gk = _rounded_sum([(_InvolutionCorrelate, grad, x)], geo, x.dtype, grad_hk) if need_k else None
        return gx, gk, None


class _InvolutionHalfGrads(torch.autograd.Function):
    """(grad, x, kernel, hx, hk) -> (T(grad, kernel), R(grad, x)): F's first derivative as one node (bf16).

    grad: (B, C, Ho, Wo); x: (B, C, H, W); kernel: (B, G, K*K, Ho, Wo); hx, hk: `_InvolutionHalf`'s placeholders.
    Its backward, for u (B, C, H, W) and v (B, G, K*K, Ho, Wo): grad gets F(u, kernel) + F(x, v) summed in
    float32 and rounded once; T(grad, v) and R(grad, u) go, in float32, to the placeholders (see above). Under
    create_graph (a third derivative) they go to x and the kernel as rounded bf16 instead: the same derivatives,
    without the float32 path's bit-exactness.
    """

    @staticmethod
    def forward(ctx, grad, x, kernel, hx, hk, geo):
        ctx.save_for_backward(grad, x, kernel)
        ctx.geo = geo
        ctx.set_materialize_grads(False)
        return _transpose(grad, kernel, geo), _correlate(grad, x, geo)

    @staticmethod
    def backward(ctx, u, v):
        grad, x, kernel = ctx.saved_tensors
        geo = ctx.geo
        products = [(_Involution, u, kernel), (_Involution, x, v)]
        g_grad = _rounded_sum(products, geo, grad.dtype) if ctx.needs_input_grad[0] else None
        if torch.is_grad_enabled():
            g_x = _InvolutionTranspose.apply(grad, v, geo) if v is not None else None
            g_kernel = _InvolutionCorrelate.apply(grad, u, geo) if u is not None else None
            return g_grad, g_x, g_kernel, None, None, None
        g_hx = _transpose(grad, v, geo, wide=True) if v is not None else None
        g_hk = _correlate(grad, u, geo, wide=True) if u is not None else None
        return g_grad, None, None, g_hx, g_hk, None


def _placeholder(t: torch.Tensor) -> torch.Tensor:
    """A float32 tensor shaped like ``t`` that holds one value (zero strides): an autograd edge for float32 terms."""
    return torch.zeros((), dtype=_accumulation_dtype(t.dtype), device=t.device).expand(t.shape)


def _rounded_sum(products: list, geo: _Geometry, dtype: torch.dtype,
                 extra: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """Sum ``Fn(a, b)`` over the (Fn, a, b) products whose factors are both given (Fn: one of the three Functions)
    and ``extra`` (float32, or None) in float32, and round the sum once to ``dtype``; None when nothing is given.

    One product alone is ``Fn.apply(a, b)`` (its kernel rounds once). Otherwise, without create_graph, the
    products are the native kernels' unrounded float32 output (``wide``); under create_graph, float32 copies through
    the float32 Functions (differentiable; the same value).
    """
    products = [(fn, a, b) for fn, a, b in products if a is not None and b is not None]
    if extra is None and len(products) <= 1:
        return products[0][0].apply(*products[0][1:], geo) if products else None
    acc = _accumulation_dtype(dtype)
    if torch.is_grad_enabled():
        parts = [fn.apply(a.to(acc), b.to(acc), geo) for fn, a, b in products]
    else:
        parts = [fn.primitive(a, b, geo, wide=True) for fn, a, b in products]
    parts += [extra] if extra is not None else []
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total.to(dtype)


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

    bf16 (autocast) on the CPU's native backend runs the bf16 kernels; elsewhere half precision is upcast to
    float32 and the output rounded back (module docstring: the two agree bit for bit).
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
    if dtype in _HALF:
        if _native_bf16(x):
            return _InvolutionHalf.apply(x, kernel, geo)[0]
        # Half precision (autocast) elsewhere: upcast once and sum the K*K terms in float32. Mixed-dtype
        # multiply-adds would convert every shifted window instead (measured 3x slower for the whole bf16 step).
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
