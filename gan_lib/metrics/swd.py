"""Sliced Wasserstein distance over Laplacian-pyramid patches (Karras et al. 2018, Progressive GAN §5 and
appendix D; ``metrics/sliced_wasserstein.py`` of tkarras/progressive_growing_of_gans), in vectorised torch.

Per pyramid level (resolutions S, S/2, ... down to 16; 64x64 -> 64, 32, 16):

1. Laplacian pyramid with the 5x5 binomial kernel [1,4,6,4,1]^T [1,4,6,4,1] / 256 and mirror borders
   (``cv2.pyrDown``/``pyrUp``); the last level is the 16x16 Gaussian (low-pass) level.
2. 128 random 7x7 neighbourhoods per image (fully inside the image) -> descriptors of 7*7*C values.
3. Each descriptor set normalised per channel: minus its mean, divided by its std over the whole set.
4. 4 repeats x 128 random unit directions; project both sets, sort each direction's projections, mean
   |difference| of the sorted values (the 1-D Wasserstein-1 distance); mean over directions and repeats.
5. Reported x1e3 per level (``swd_<res>``) and averaged over levels (``swd``), as PGGAN's ``SWDx1e3_*``.

Randomness comes from ``seed`` only: patch positions depend on (seed, level, image count) and are the same
for both sets (common random numbers: identical sets give exactly 0), directions on (seed, level).
Like PGGAN, both sets must hold the same number of images. The scale of the input does not matter (step 3
normalises), so [-1, 1] floats give PGGAN's values on [0, 255] images.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["binomial_kernel", "pyr_down", "pyr_up", "laplacian_pyramid", "swd_resolutions",
           "patch_descriptors", "normalize_descriptors", "sliced_wasserstein", "swd_descriptors",
           "sliced_wasserstein_per_level", "sliced_wasserstein_distance"]

NHOOD_SIZE, NHOODS_PER_IMAGE, DIR_REPEATS, DIRS_PER_REPEAT = 7, 128, 4, 128


def binomial_kernel(dtype=torch.float32, device=None) -> torch.Tensor:
    """(5, 5) kernel [1,4,6,4,1]^T [1,4,6,4,1] / 256 (cv2's pyramid Gaussian)."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=dtype, device=device)
    return torch.outer(k, k) / 256.0


def _blur1d(x: torch.Tensor, dim: int, scale: float) -> torch.Tensor:
    """[1, 4, 6, 4, 1] / 16 * scale along ``dim`` (2 or 3) with mirror (reflect-without-edge) borders."""
    pad = (0, 0, 2, 2) if dim == 2 else (2, 2, 0, 0)
    p = F.pad(x, pad, mode="reflect")
    n = x.shape[dim]
    t = [p.narrow(dim, i, n) for i in range(5)]
    return ((t[0] + t[4]) + 4.0 * (t[1] + t[3]) + 6.0 * t[2]) * (scale / 16.0)


def _blur(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """(N, C, H, W) -> same: separable 5x5 binomial blur (= conv with ``scale * binomial_kernel()``)."""
    return _blur1d(_blur1d(x, 2, 1.0), 3, scale)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H/2, W/2): blur, keep even pixels (cv2.pyrDown)."""
    return _blur(x)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 2H, 2W): zero-insert, blur with 4x the kernel (cv2.pyrUp)."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, 4.0)


def laplacian_pyramid(x: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """(N, C, S, S) -> [band-pass S, band-pass S/2, ..., low-pass S/2^(num_levels-1)], float32."""
    pyramid = [x.float()]
    for _ in range(1, num_levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])
    return pyramid


def swd_resolutions(image_size: int, min_resolution: int = 16) -> list[int]:
    """Pyramid resolutions as in PGGAN: image_size, image_size/2, ... while >= 16 (64 -> [64, 32, 16])."""
    res, out = image_size, []
    while res >= min_resolution:
        out.append(res)
        res //= 2
    return out


def _patch_positions(n: int, size: int, level: int, seed: int, nhoods: int, nhood_size: int):
    gen = torch.Generator().manual_seed(seed * 1009 + level)
    hi = size - nhood_size + 1
    return (torch.randint(0, hi, (n, nhoods), generator=gen), torch.randint(0, hi, (n, nhoods), generator=gen))


def patch_descriptors(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                      nhood_size: int = NHOOD_SIZE) -> torch.Tensor:
    """level (N, C, H, W), top-left corners ys, xs (N, P) -> descriptors (N*P, C, k, k), k = nhood_size."""
    n, c, _, _ = level.shape
    ar = torch.arange(nhood_size, device=level.device)
    rows = (ys.to(level.device)[:, :, None] + ar)[:, :, :, None]      # (N, P, k, 1)
    cols = (xs.to(level.device)[:, :, None] + ar)[:, :, None, :]      # (N, P, 1, k)
    img = torch.arange(n, device=level.device)[:, None, None, None]
    d = level.permute(0, 2, 3, 1)[img, rows, cols]                     # (N, P, k, k, C)
    return d.permute(0, 1, 4, 2, 3).reshape(-1, c, nhood_size, nhood_size)


def normalize_descriptors(desc: torch.Tensor) -> torch.Tensor:
    """(M, C, k, k) -> (M, C*k*k): per channel minus mean, divided by std (ddof=0) over the whole set."""
    var, mean = torch.var_mean(desc, dim=(0, 2, 3), correction=0, keepdim=True)
    return (desc - mean).div_(var.sqrt()).reshape(desc.shape[0], -1)


def _sort_rows(p: torch.Tensor) -> torch.Tensor:
    # numpy's AVX-512 sort is ~3x faster than torch.sort on the CPU; torch.sort on accelerators
    if p.device.type == "cpu":
        return torch.from_numpy(np.sort(p.numpy(), axis=1))
    return torch.sort(p, dim=1).values


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, dir_repeats: int = DIR_REPEATS,
                       dirs_per_repeat: int = DIRS_PER_REPEAT, seed: int = 0, chunk: int | None = None,
                       max_elements: int = 2 ** 26) -> float:
    """Sliced Wasserstein-1 distance between descriptor sets a, b (M, D) (same M): mean over
    dir_repeats x dirs_per_repeat random unit directions of mean_i |sort(a.v)_i - sort(b.v)_i|.
    Directions are projected ``chunk`` at a time (default: as many as fit in ``max_elements`` floats)."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"descriptor sets must have the same shape (M, D), got {tuple(a.shape)}, {tuple(b.shape)}")
    gen = torch.Generator().manual_seed(seed)
    chunk = chunk or max(1, min(dirs_per_repeat, max_elements // a.shape[0]))
    total, count = 0.0, 0
    for _ in range(dir_repeats):
        dirs = torch.randn(a.shape[1], dirs_per_repeat, generator=gen)
        dirs = (dirs / dirs.norm(dim=0, keepdim=True)).to(a.device)
        for j in range(0, dirs_per_repeat, chunk):
            d = dirs[:, j:j + chunk].T                                   # (chunk, D)
            pa = _sort_rows(d @ a.T)                                     # (chunk, M), each row sorted
            pb = _sort_rows(d @ b.T)
            total += float((pa - pb).abs().sum(dtype=torch.float64))
            count += pa.numel()
    return total / count


def _pyramid_levels(images: torch.Tensor, num_levels: int, batch_size: int,
                    device: torch.device | str) -> list[torch.Tensor]:
    """images (N, C, S, S) uint8 or float -> Laplacian pyramid of the whole set, computed in batches."""
    parts = [laplacian_pyramid(images[i:i + batch_size].to(device).float(), num_levels)
             for i in range(0, images.shape[0], batch_size)]
    return [torch.cat([p[lv] for p in parts]) for lv in range(num_levels)]


def swd_descriptors(images: torch.Tensor, seed: int = 0, batch_size: int = 500,
                    nhoods_per_image: int = NHOODS_PER_IMAGE, nhood_size: int = NHOOD_SIZE,
                    device: torch.device | str = "cpu") -> dict[int, torch.Tensor]:
    """images uint8 [0, 255] or float [-1, 1] (N, C, S, S) -> {resolution: normalised descriptors
    (N*nhoods_per_image, C*k*k) float32}, one entry per pyramid level (``swd_resolutions(S)``)."""
    n, _, h, w = images.shape
    if h != w:
        raise ValueError(f"square images expected, got {h}x{w}")
    resolutions = swd_resolutions(h)
    with torch.inference_mode():
        pyramid = _pyramid_levels(images, len(resolutions), batch_size, device)
        out = {}
        for lv, res in enumerate(resolutions):
            ys, xs = _patch_positions(n, res, lv, seed, nhoods_per_image, nhood_size)
            out[res] = normalize_descriptors(patch_descriptors(pyramid[lv], ys, xs, nhood_size))
            pyramid[lv] = None
        return out


def sliced_wasserstein_per_level(real: torch.Tensor, fake: torch.Tensor, seed: int = 0, batch_size: int = 500,
                                 device: torch.device | str = "cpu", dir_repeats: int = DIR_REPEATS,
                                 dirs_per_repeat: int = DIRS_PER_REPEAT,
                                 nhoods_per_image: int = NHOODS_PER_IMAGE) -> dict[int, float]:
    """SWD x1e3 per pyramid level: real, fake (N, C, S, S) (uint8 or [-1, 1] floats, same N) ->
    {resolution: value}. Descriptors are built one level at a time to bound memory (N = 10k: 0.75 GB per
    set and level, plus the two pyramids, 0.66 GB each)."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)}, {tuple(fake.shape)}")
    n, _, h, w = real.shape
    if h != w:
        raise ValueError(f"square images expected, got {h}x{w}")
    resolutions = swd_resolutions(h)
    out = {}
    with torch.inference_mode():
        pyr_r = _pyramid_levels(real, len(resolutions), batch_size, device)
        pyr_f = _pyramid_levels(fake, len(resolutions), batch_size, device)
        for lv, res in enumerate(resolutions):
            ys, xs = _patch_positions(n, res, lv, seed, nhoods_per_image, NHOOD_SIZE)
            a = normalize_descriptors(patch_descriptors(pyr_r[lv], ys, xs))
            b = normalize_descriptors(patch_descriptors(pyr_f[lv], ys, xs))
            pyr_r[lv] = pyr_f[lv] = None
            out[res] = 1e3 * sliced_wasserstein(a, b, dir_repeats, dirs_per_repeat, seed=seed * 1009 + lv)
            del a, b
    return out


def sliced_wasserstein_distance(real: torch.Tensor, fake: torch.Tensor, per_level: bool = False, **kwargs):
    """SWD x1e3 averaged over pyramid levels (PGGAN's ``SWDx1e3_avg``); with ``per_level=True`` returns
    ``(mean, {resolution: value})``. kwargs: see ``sliced_wasserstein_per_level``."""
    levels = sliced_wasserstein_per_level(real, fake, **kwargs)
    mean = float(np.mean(list(levels.values())))
    return (mean, levels) if per_level else mean
