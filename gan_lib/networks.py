"""The paper's generator and critic (§4.2, Fig. 2); DCGAN, SAGAN and iGAN differ only in the inserted block.

Generator (image_size S, width w; S=64, w=64 in the paper)::

    z (128) -> ConvT 4x4 -> (S/8)w @ 4x4 -> [ConvT 4x4 /2 -> half the channels] ... -> w @ S/2 -> ConvT -> C @ S, tanh

every layer but the last with spectral norm, batch norm and ReLU. Critic::

    x (C @ S) -> Conv 4x4 /2 -> w @ S/2 -> ... -> (S/8)w @ 4x4 -> Conv 4x4 -> score

with spectral norm and LeakyReLU(0.1), no batch norm. The block (self-attention for SAGAN, involution for iGAN)
goes into the generator before its last layer (w channels at S/2) and into the critic after its first layer,
as in the authors' code. ``num_blocks=2`` adds a second block one resolution further in (2w channels at S/4):
the conv-inv-conv-inv-conv variant whose divergence §5.3 reports.

``stack=S`` builds S independent copies of the network in one module (seed stacking, `gan_lib.stacking`): every
convolution is grouped (groups=S), the norms act per copy, and the copies' tensors sit side by side in the channel
dimension: the generator maps z (B, S*z_dim) to images (B, S*C, S_img, S_img) and the critic maps those to
scores (B, S). Copy s of a stacked network computes exactly what a plain network with copy s's weights computes.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Union

import torch
import torch.nn as nn

from .layers import Involution2d, SelfAttention2d
from .layers.spectral_norm import spectral_norm

__all__ = ["BLOCKS", "INVOLUTION_SETTINGS", "BlockFactory", "Generator", "Critic", "make_block"]

BLOCKS = ("dcgan", "sagan", "igan")
INVOLUTION_SETTINGS = ("kernel_size", "groups", "reduction_ratio", "kernel_norm", "kernel_clip", "sigma_norm")

# A block's settings travel as one object: a factory ``f(channels, stack=S) -> nn.Module`` (None: no block).
BlockFactory = Optional[Callable[..., nn.Module]]
_BLOCK_NAMES = {Involution2d: "igan", SelfAttention2d: "sagan"}


def make_block(block: str = "dcgan", **settings) -> BlockFactory:
    """The block a GAN inserts, as a factory ``f(channels, stack=S) -> nn.Module``: None for DCGAN,
    `SelfAttention2d` for SAGAN, `Involution2d` with ``settings`` (any of `INVOLUTION_SETTINGS`, e.g.
    ``kernel_size=7, kernel_norm="batch"``) for iGAN. The involution's settings are accepted and unused for the
    other blocks, so one config builds any of the three; an unknown setting is a ValueError."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; choose one of {BLOCKS}")
    unknown = sorted(set(settings) - set(INVOLUTION_SETTINGS))
    if unknown:
        raise ValueError(f"unknown block settings {unknown}; choose from {INVOLUTION_SETTINGS}")
    if block == "dcgan":
        return None
    if block == "sagan":
        return functools.partial(SelfAttention2d)
    return functools.partial(Involution2d, **settings)


def _block_factory(block: Union[str, BlockFactory]) -> tuple[str, BlockFactory]:
    """A network's ``block`` argument (a name or a factory) -> (its name for repr, the factory)."""
    if block is None or isinstance(block, str):
        name = block or "dcgan"
        return name, make_block(name)
    if not callable(block):
        raise ValueError(f"block must be one of {BLOCKS} or a factory from make_block, got {block!r}")
    func = getattr(block, "func", block)
    return _BLOCK_NAMES.get(func, getattr(func, "__name__", repr(func))), block


def _check_common(image_size: int, channels: int, width: int, num_blocks: int, stack: int = 1) -> int:
    """Validate the shared arguments; return the number of stride-2 stages (log2(S) - 2)."""
    if not isinstance(image_size, int) or image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two >= 16 (the paper uses 64), got {image_size!r}")
    for name, value in (("channels", channels), ("width", width), ("stack", stack)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    stages = image_size.bit_length() - 3  # 64 -> 4 stride-2 stages between 4x4 and 64x64
    if not isinstance(num_blocks, int) or not 0 <= num_blocks <= stages - 1:
        raise ValueError(f"num_blocks must be between 0 and {stages - 1} for image_size {image_size}, got {num_blocks!r}")
    return stages


class Generator(nn.Module):
    """z (N, stack*z_dim) -> images (N, stack*channels, image_size, image_size) in [-1, 1].

    ``block``: ``"dcgan" | "sagan" | "igan"`` (the block with its default settings) or a factory from `make_block`
    (e.g. ``make_block("igan", kernel_size=7, groups=4, reduction_ratio=2)``)."""

    def __init__(
        self,
        z_dim: int = 128,
        image_size: int = 64,
        channels: int = 3,
        width: int = 64,
        block: Union[str, BlockFactory] = "dcgan",
        num_blocks: int = 1,
        stack: int = 1,
    ) -> None:
        super().__init__()
        stages = _check_common(image_size, channels, width, num_blocks, stack)
        self.block, factory = _block_factory(block)
        self.z_dim, self.image_size, self.channels, self.width = z_dim, image_size, channels, width
        self.num_blocks, self.stack = num_blocks if factory is not None else 0, stack

        s, ch = stack, width * 2 ** (stages - 1)  # 8w at 4x4 for 64 px
        layers: list[nn.Module] = [_up(z_dim, ch, stride=1, padding=0, stack=s)]
        for stage in range(stages - 1):
            layers.append(_up(ch, ch // 2, stack=s))
            ch //= 2
            if stages - 2 - stage < self.num_blocks:  # the last num_blocks resolutions before the output layer
                layers.append(factory(ch, stack=s))
        layers += [nn.ConvTranspose2d(s * ch, s * channels, 4, 2, 1, groups=s), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.stack * self.z_dim:
            raise ValueError(f"z must be (N, {self.stack * self.z_dim}), got {tuple(z.shape)}")
        return self.net(z[:, :, None, None])

    def extra_repr(self) -> str:
        return (
            f"block={self.block!r}, num_blocks={self.num_blocks}, z_dim={self.z_dim}, "
            f"image_size={self.image_size}, channels={self.channels}, width={self.width}"
            + (f", stack={self.stack}" if self.stack != 1 else "")
        )


class Critic(nn.Module):
    """WGAN critic: images (N, channels, image_size, image_size) -> scores (N,); stacked: (N, stack*channels, ...)
    -> (N, stack).

    ``block`` as for `Generator`. The involution's ``sigma_norm`` (a `make_block` setting) selects the
    normalisation inside its kernel branch: ``"batch"`` (the paper's choice, the default) makes one sample's score
    depend on the rest of its batch, which WGAN-GP's per-sample gradient penalty does not assume; ``"layer"``
    (per-sample) or ``"none"`` remove that dependence.
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        width: int = 64,
        block: Union[str, BlockFactory] = "dcgan",
        num_blocks: int = 1,
        stack: int = 1,
    ) -> None:
        super().__init__()
        stages = _check_common(image_size, channels, width, num_blocks, stack)
        self.block, factory = _block_factory(block)
        self.image_size, self.channels, self.width = image_size, channels, width
        self.num_blocks = num_blocks if factory is not None else 0
        self.stack = s = stack

        layers: list[nn.Module] = []
        ch_in, ch = channels, width
        for stage in range(stages):
            layers.append(_down(ch_in, ch, stack=s))
            if stage < self.num_blocks:  # after the first num_blocks layers
                layers.append(factory(ch, stack=s))
            ch_in, ch = ch, ch * 2
        layers.append(nn.Conv2d(s * ch_in, s, 4, groups=s))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.stack * self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"images must be (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        out = self.net(x)
        return out.flatten() if self.stack == 1 else out.flatten(1)

    def extra_repr(self) -> str:
        return (
            f"block={self.block!r}, num_blocks={self.num_blocks}, image_size={self.image_size}, "
            f"channels={self.channels}, width={self.width}"
            + (f", stack={self.stack}" if self.stack != 1 else "")
        )


def _up(ch_in: int, ch_out: int, stride: int = 2, padding: int = 1, stack: int = 1) -> nn.Sequential:
    """Spectral-normalised 4x4 transposed conv, batch norm, ReLU (``stack`` copies: groups=stack)."""
    conv = nn.ConvTranspose2d(stack * ch_in, stack * ch_out, 4, stride, padding, groups=stack)
    return nn.Sequential(spectral_norm(conv, stack), nn.BatchNorm2d(stack * ch_out), nn.ReLU())


def _down(ch_in: int, ch_out: int, stack: int = 1) -> nn.Sequential:
    """Spectral-normalised 4x4 stride-2 conv, LeakyReLU(0.1) (``stack`` copies: groups=stack)."""
    conv = nn.Conv2d(stack * ch_in, stack * ch_out, 4, 2, 1, groups=stack)
    return nn.Sequential(spectral_norm(conv, stack), nn.LeakyReLU(0.1))
