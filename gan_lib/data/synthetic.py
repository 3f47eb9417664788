"""A built-in procedural dataset: 1-4 coloured shapes on smooth varied backgrounds; no files, no download.

Each image: a linear or radial gradient between two random colours with a faint low-frequency ripple, then
1 to 4 shapes (circle, rectangle, equilateral triangle, ellipse) of random size, position, rotation and
saturated colour with a soft linear shading, painted in order (later ones on top). Edges are antialiased
analytically (coverage from a signed distance), so 32 and 64 px renderings show the same scenes.

Deterministic: image ``i`` depends only on ``(seed, split, i)`` (parameters are drawn in blocks of
``BLOCK`` images from ``numpy.random.SeedSequence([seed, split, block])``), so ``max_images=N`` gives the
first N images of the larger set, and ``"train"`` and ``"test"`` are different images.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .cache import ArrayCache
from .dataset import ImageDataset
from .errors import DataError

DEFAULT_SIZE = 10_000
BLOCK = 1000
MAX_SHAPES = 4
SPLITS = {"train": 0, "test": 1}
SHAPES = ("circle", "rectangle", "triangle", "ellipse")


def _hsv_to_rgb(h, s, v):
    """numpy arrays in [0, 1] -> (..., 3) RGB in [0, 1]."""
    k = (np.stack([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _parameters(rng: np.random.Generator, n: int) -> dict[str, torch.Tensor]:
    """Scene parameters of ``n`` images."""
    u = rng.random
    k = MAX_SHAPES
    p = {
        "bg1": _hsv_to_rgb(u(n), u(n) * 0.7, 0.25 + 0.75 * u(n)),
        "bg2": _hsv_to_rgb(u(n), u(n) * 0.7, 0.25 + 0.75 * u(n)),
        "bg_radial": u(n) < 0.35,
        "bg_angle": u(n) * 2 * math.pi,
        "bg_center": 0.2 + 0.6 * u((n, 2)),
        "ripple_amp": 0.08 * u(n),
        "ripple_freq": 1.0 + 3.0 * u(n),
        "ripple_angle": u(n) * 2 * math.pi,
        "ripple_phase": u(n) * 2 * math.pi,
        "present": np.arange(k)[None, :] < rng.integers(1, k + 1, n)[:, None],
        "kind": rng.integers(0, len(SHAPES), (n, k)),
        "center": 0.15 + 0.7 * u((n, k, 2)),
        "radius": 0.08 + 0.2 * u((n, k)),
        "aspect": 0.45 + 0.55 * u((n, k)),
        "angle": u((n, k)) * 2 * math.pi,
        "color": _hsv_to_rgb(u((n, k)), 0.5 + 0.5 * u((n, k)), 0.45 + 0.55 * u((n, k))),
        "shade": 0.4 * u((n, k)),
        "light": u((n, k)) * 2 * math.pi,
    }
    return {key: torch.as_tensor(v, dtype=torch.float32) for key, v in p.items()}


def _distance(kind: int, u, v, r, asp, normals) -> torch.Tensor:
    """Signed distance (negative inside) of points ``(u, v)`` to shape ``SHAPES[kind]`` of radius ``r``."""
    if kind == 0:  # circle
        return (u * u + v * v).sqrt_() - r
    if kind == 1:  # rectangle
        return torch.maximum(u.abs() - 0.85 * r, v.abs() - 0.85 * r * (0.4 + 0.6 * asp))
    if kind == 2:  # equilateral triangle
        return torch.stack([u * nx + v * ny for nx, ny in normals]).amax(0) - 0.5 * r
    return ((u / r) ** 2 + (v / (r * asp)) ** 2).sqrt_().sub_(1).mul_(r * asp)  # ellipse


def _render(p: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Scene parameters of B images -> uint8 ``(B, 3, size, size)``."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = c.view(1, size, 1), c.view(1, 1, size)  # (1, S, 1), (1, 1, S); image coordinates in [0, 1]

    def col(t):  # (B,) -> (B, 1, 1)
        return t.view(-1, 1, 1)

    # background: linear or radial gradient t in [0, 1], plus a faint ripple
    a = p["bg_angle"]
    linear = ((x - 0.5) * col(a.cos()) + (y - 0.5) * col(a.sin())) / math.sqrt(2) + 0.5
    radial = ((x - col(p["bg_center"][:, 0])) ** 2 + (y - col(p["bg_center"][:, 1])) ** 2).sqrt() / 0.9
    t = torch.where(col(p["bg_radial"]) > 0, radial, linear).clamp(0, 1).unsqueeze(1)  # (B, 1, S, S)
    b = p["ripple_angle"]
    ripple = col(p["ripple_amp"]) * torch.sin(
        2 * math.pi * col(p["ripple_freq"]) * (x * col(b.cos()) + y * col(b.sin())) + col(p["ripple_phase"]))
    img = p["bg1"][:, :, None, None] * (1 - t) + p["bg2"][:, :, None, None] * t + ripple.unsqueeze(1)

    # triangle: outward edge normals at -90, 30 and 150 degrees; inradius r / 2
    normals = [(math.cos(math.radians(d)), math.sin(math.radians(d))) for d in (-90, 30, 150)]
    for k in range(MAX_SHAPES):
        r, asp, ang = col(p["radius"][:, k]), col(p["aspect"][:, k]), p["angle"][:, k]
        dx, dy = x - col(p["center"][:, k, 0]), y - col(p["center"][:, k, 1])
        u = dx * col(ang.cos()) + dy * col(ang.sin())  # (B, S, S) shape coordinates
        v = dy * col(ang.cos()) - dx * col(ang.sin())
        # signed distance to the outline in image widths (approximate off the edge); absent shapes: +inf
        d = torch.full_like(u, math.inf)
        for kind in range(len(SHAPES)):
            i = ((p["kind"][:, k] == kind) & (p["present"][:, k] > 0)).nonzero().squeeze(1)
            if len(i):
                d[i] = _distance(kind, u[i], v[i], r[i], asp[i], normals)
        cover = (0.5 - d * size).clamp_(0, 1).unsqueeze(1)  # (B, 1, S, S) antialiased coverage
        lt = p["light"][:, k]
        shading = (u * col(lt.cos()) + v * col(lt.sin())).div_(r).mul_(col(p["shade"][:, k])).add_(1)
        color = p["color"][:, k, :, None, None] * shading.unsqueeze(1)
        img.lerp_(color, cover)
    return img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def synthetic_images(n: int = DEFAULT_SIZE, image_size: int = 64, seed: int = 0, split: str = "train",
                     chunk: int = 250) -> torch.Tensor:
    """The first ``n`` images of the ``(seed, split)`` stream -> uint8 ``(n, 3, image_size, image_size)``."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for 'synthetic'; choose one of {', '.join(SPLITS)}, 'all'")
    out = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    for start in range(0, n, BLOCK):
        block = start // BLOCK
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], block]))
        params = _parameters(rng, BLOCK)
        for s in range(0, min(BLOCK, n - start), chunk):
            e = min(s + chunk, n - start)
            out[start + s:start + e] = _render({k: v[s:e] for k, v in params.items()}, image_size)
    return out


def load_synthetic(root=None, image_size=64, split="train", cache_dir=None, max_images=None, seed=0,
                   progress=True) -> ImageDataset:
    """``max_images`` (default 10,000) shapes images as ``(N, 3, image_size, image_size)``; ``"all"`` is
    ``"train"``. Cached like the file datasets (generation takes seconds)."""
    if root is not None:
        raise DataError("the 'synthetic' dataset is built in and takes no root")
    stream = "train" if split == "all" else split
    if stream not in SPLITS:
        raise DataError(f"unknown split {split!r} for 'synthetic'; choose one of 'train', 'test', 'all'")
    n = DEFAULT_SIZE if max_images is None else int(max_images)
    cache = ArrayCache(cache_dir, name="synthetic", seed=seed, image_size=image_size, split=stream, n=n)
    hit = cache.load()
    if hit is not None:
        return ImageDataset(hit[0], "synthetic", split, fingerprint=_fingerprint(hit[1], seed))
    images = synthetic_images(n, image_size, seed, stream)
    meta = cache.save(images.numpy())
    return ImageDataset(images, "synthetic", split, fingerprint=_fingerprint(meta, seed))


def _fingerprint(note: dict, seed: int) -> dict:
    return {"seed": seed, **({"pixels": note["pixels"]} if note.get("pixels") else {})}
