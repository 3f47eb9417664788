"""Spectral normalisation (Miyato et al. 2018) for one network or for S seed-stacked copies of it.

``spectral_norm(module, stack=1)`` is PyTorch's ``torch.nn.utils.parametrizations.spectral_norm`` for a plain
layer. For a seed-stacked layer (a grouped convolution holding S independent copies, ``groups = S``: see
`gan_lib.stacking`) one sigma over the whole grouped weight would couple the copies, so `StackedSpectralNorm`
normalises each copy by its own sigma, with PyTorch's algorithm (one power iteration per training forward,
``W / (u . W v)``), batched over the copies::

    W_s (copy s, as a matrix h x w),  v_s <- normalize(W_s^T u_s),  u_s <- normalize(W_s v_s),
    sigma_s = u_s . (W_s v_s),        W_s / sigma_s

Its buffers ``_u`` (S*h) and ``_v`` (S*w) are the S copies' vectors concatenated, so the stacked state dict is
the copies' state dicts concatenated along dim 0 (`gan_lib.stacking.stack_states`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

__all__ = ["StackedSpectralNorm", "spectral_norm"]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class StackedSpectralNorm(nn.Module):
    """Parametrization: a weight holding ``stack`` copies along dim 0 -> each copy divided by its own sigma.

    ``dim``: the output dimension of ONE copy's weight (0 for Conv, 1 for ConvTranspose, as PyTorch chooses).
    Stacked weight shapes: Conv (S*out, in, k, k) -> copy s is rows [s*out, (s+1)*out); ConvTranspose
    (S*in, out, k, k) -> copy s is rows [s*in, (s+1)*in).
    """

    def __init__(self, weight: torch.Tensor, stack: int, dim: int = 0, eps: float = 1e-12,
                 n_power_iterations: int = 1) -> None:
        super().__init__()
        if weight.ndim < 2 or weight.shape[0] % stack:
            raise ValueError(f"weight of shape {tuple(weight.shape)} cannot hold {stack} copies along dim 0")
        self.stack, self.dim, self.eps, self.n_power_iterations = stack, dim, eps, n_power_iterations
        mats = self._matrices(weight)
        _, h, w = mats.shape
        u = F.normalize(mats.new_empty(stack, h).normal_(0, 1), dim=1, eps=eps)
        v = F.normalize(mats.new_empty(stack, w).normal_(0, 1), dim=1, eps=eps)
        self.register_buffer("_u", u.flatten())
        self.register_buffer("_v", v.flatten())
        self._power_method(mats, 15)

    def _matrices(self, weight: torch.Tensor) -> torch.Tensor:
        """(S, h, w): each copy's weight as PyTorch's spectral norm flattens it (``dim`` first)."""
        copies = weight.reshape(self.stack, weight.shape[0] // self.stack, *weight.shape[1:])
        if self.dim != 0:
            d = self.dim + 1
            copies = copies.permute(0, d, *(i for i in range(1, copies.dim()) if i != d))
        return copies.flatten(2)

    @torch.no_grad()
    def _power_method(self, mats: torch.Tensor, n: int) -> None:
        u = self._u.view(self.stack, -1)
        v = self._v.view(self.stack, -1)
        for _ in range(n):  # in place, as PyTorch's (see torch.nn.utils.parametrizations._SpectralNorm)
            u.copy_(F.normalize(torch.bmm(mats, v.unsqueeze(2)).squeeze(2), dim=1, eps=self.eps))
            v.copy_(F.normalize(torch.bmm(mats.transpose(1, 2), u.unsqueeze(2)).squeeze(2), dim=1, eps=self.eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mats = self._matrices(weight)
        if self.training:
            self._power_method(mats, self.n_power_iterations)
        u = self._u.clone(memory_format=torch.contiguous_format).view(self.stack, -1)
        v = self._v.clone(memory_format=torch.contiguous_format).view(self.stack, -1)
        sigma = (u * torch.bmm(mats, v.unsqueeze(2)).squeeze(2)).sum(1)  # (S,)
        shape = (self.stack,) + (1,) * (weight.dim() - 1)
        return (weight.view(self.stack, -1, *weight.shape[1:]) / sigma.view(self.stack, 1, *shape[1:])).view_as(weight)

    def extra_repr(self) -> str:
        return f"stack={self.stack}, dim={self.dim}"


def spectral_norm(module: nn.Module, stack: int = 1) -> nn.Module:
    """Spectral norm on ``module.weight``: PyTorch's for one copy, `StackedSpectralNorm` for ``stack`` copies.
    The state dict keys are the same either way (``parametrizations.weight.original``, ``..._u``, ``..._v``)."""
    if stack == 1:
        return nn.utils.parametrizations.spectral_norm(module)
    dim = 1 if isinstance(module, _TRANSPOSED) else 0
    parametrize.register_parametrization(module, "weight", StackedSpectralNorm(module.weight, stack, dim))
    return module
