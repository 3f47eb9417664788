"""Pluggable feature extractors for FID/KID, and batched feature extraction.

A ``FeatureExtractor`` maps images ``(N, C, H, W)`` in [-1, 1] (C = 1 or 3; grayscale is repeated to RGB) to
features ``(N, dim)``. ``name`` names the feature space in result keys (``fid`` for ``"inception"``,
``fid_<name>`` otherwise); ``cache_id`` identifies the exact network (weights) for the reference cache.

``RandConvFeatures`` ("randconv") is a fixed-seed random-weight conv net: a feature space that needs no
download, so FID/KID can always be reported offline. Random embeddings are a known, weaker substitute for
ImageNet features (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models", §4;
they react to low-level statistics - colour, blur, noise, texture - not to semantics). Values are NOT
comparable with Inception FID/KID numbers from papers; compare them only with each other.

Precision (``extract_features(precision=...)``): bf16 autocast was measured against fp32 on CelebA 64x64
(``benchmarks/metrics.py``): see ``PRECISION_NOTE``. The default is ``"fp32"``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = ["FeatureExtractor", "RandConvFeatures", "extract_features", "to_rgb", "uint8_to_float",
           "float_to_uint8", "autocast", "PRECISIONS", "PRECISION_NOTE"]

PRECISIONS = ("fp32", "bf16", "fp16")

PRECISION_NOTE = """\
Measured with benchmarks/metrics.py (CelebA 64x64, 2 CPU cores, AMX-bf16 CPU); see docs/architecture.md."""


def uint8_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (x / 127.5 - 1, the gan_lib.data convention)."""
    return images.float().div_(127.5).sub_(1.0)


def float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded and clamped (what saving a PNG does)."""
    return images.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, 1 or 3, H, W) -> (N, 3, H, W); grayscale repeated to three channels."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W), got {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def autocast(device: torch.device | str, precision: str):
    """Context manager: autocast to bf16/fp16 for ``precision`` in ``PRECISIONS``; no-op for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class FeatureExtractor(nn.Module):
    """Base class: ``forward(images (N, C, H, W) in [-1, 1]) -> (N, dim)``. Subclasses implement ``features``
    on RGB input and set ``name`` and ``dim``. Extractors are frozen (eval mode, no grad)."""

    name: str = "features"
    dim: int = 0

    @property
    def cache_id(self) -> str:
        """Identifies the network and its weights in reference-statistics cache keys."""
        return self.name

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(to_rgb(images)).flatten(1)

    def train(self, mode: bool = True):  # always eval: BatchNorm etc. must use running statistics
        return super().train(False)


class RandConvFeatures(FeatureExtractor):
    """Random-weight conv net, deterministic from ``seed`` (weights drawn on the CPU with a seeded generator).

    Four stages of conv3x3 (He-normal weights, no bias) + ReLU, 2x2 average pooling between stages; the
    feature vector concatenates the spatial mean of every stage's activations (multi-scale: colour statistics
    from stage 1, textures/edges from stages 2-4). widths (32, 64, 128, 256) -> dim 480; about 0.06 GMAC per
    64x64 image (Inception: ~5.7 GMAC at 299x299).
    """

    name = "randconv"

    def __init__(self, seed: int = 0, widths: Iterable[int] = (32, 64, 128, 256)):
        super().__init__()
        self.seed, self.widths = int(seed), tuple(int(w) for w in widths)
        self.dim = sum(self.widths)
        gen = torch.Generator().manual_seed(self.seed)
        convs, c_in = [], 3
        for w in self.widths:
            conv = nn.Conv2d(c_in, w, 3, padding=1, bias=False)
            fan_in = c_in * 9
            conv.weight.data = torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in)
            conv.weight.requires_grad_(False)
            convs.append(conv)
            c_in = w
        self.convs = nn.ModuleList(convs)
        self.eval()

    @property
    def cache_id(self) -> str:
        return f"randconv-v1-seed{self.seed}-w{'x'.join(map(str, self.widths))}"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for i, conv in enumerate(self.convs):
            if i:
                x = F.avg_pool2d(x, 2)
            x = F.relu(conv(x))
            out.append(x.mean(dim=(2, 3)))
        return torch.cat(out, dim=1)


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def extract_features(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int = 250,
                     device: torch.device | str = "cpu", precision: str = "fp32", progress: bool = True,
                     desc: str | None = None) -> torch.Tensor:
    """Features of an image set, batched, under ``torch.inference_mode``.

    images: uint8 (N, C, H, W) in [0, 255] or float (N, C, H, W) in [-1, 1] (kept on the CPU; each batch is
    moved to ``device``). Returns float32 (N, extractor.dim) on the CPU.
    """
    device = torch.device(device)
    extractor = extractor.to(device).eval()
    out = []
    bar = tqdm(total=len(images), disable=not progress, leave=False, unit="img",
               desc=desc or f"{extractor.name} features")
    with torch.inference_mode(), autocast(device, precision):
        for sl in _batches(len(images), batch_size):
            x = images[sl].to(device)
            x = uint8_to_float(x) if x.dtype == torch.uint8 else x.float()
            out.append(extractor(x).float().cpu())
            bar.update(x.shape[0])
    bar.close()
    if not out:
        return torch.zeros(0, extractor.dim)
    return torch.cat(out)
