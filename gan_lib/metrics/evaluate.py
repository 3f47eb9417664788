"""Metric registry and the single evaluation entry point used by the training loop and the notebooks.

    evaluate(generate, real, metrics=("swd", "kid", "fid"), num_samples=2048, ...) -> dict[str, float]

Result keys (values are plain floats):

=====================  ==========================================================================
``swd``, ``swd_<res>`` SWD x1e3 averaged over pyramid levels / per level (``swd_64``, ``swd_32``, ``swd_16``)
``fid``                FID on pytorch-fid's Inception pool3 features (needs the weights file)
``kid``, ``kid_std``   KID (mean, std over subsets) on the same features
``fid_<space>``        FID on another feature space: ``fid_randconv``, or ``fid_<extractor.name>``
``kid_<space>``, ``kid_<space>_std``  KID likewise (``kid_randconv``: the offline fallback for ``kid``)
=====================  ==========================================================================

When the Inception weights are missing, ``fid``/``kid`` are left out with one warning and ``kid_randconv`` is
computed instead of ``kid`` (ask for ``fid_randconv`` explicitly if wanted: it is cheap once the randconv
features exist). With ``extractor=`` given, ``fid``/``kid`` use it and are keyed by its name.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

from .cache import ReferenceCache
from .features import FeatureExtractor, RandConvFeatures, extract_features, float_to_uint8, PRECISIONS
from .frechet import feature_statistics, frechet_distance
from .inception import InceptionFeatures, MissingWeightsError, find_inception_weights
from .kid import kernel_inception_distance
from .swd import sliced_wasserstein_per_level

__all__ = ["MetricInfo", "METRICS", "available_metrics", "evaluate", "generate_images"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    kind: str                  # "fid" | "kid" | "swd"
    feature_space: str | None  # "inception", "randconv", or None (pixels)
    description: str


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("swd", "swd", None, "Sliced Wasserstein distance x1e3 on Laplacian-pyramid 7x7 patches "
               "(Karras et al. 2018); no weights needed"),
    MetricInfo("fid", "fid", "inception", "Frechet Inception Distance (Heusel et al. 2017), pytorch-fid pool3"),
    MetricInfo("kid", "kid", "inception", "Kernel Inception Distance (Binkowski et al. 2018), cubic kernel"),
    MetricInfo("fid_randconv", "fid", "randconv", "Frechet distance on random-conv-net features (offline)"),
    MetricInfo("kid_randconv", "kid", "randconv", "KID on random-conv-net features (offline)"),
)}


def available_metrics(inception_weights=None) -> dict[str, bool]:
    """{metric name: whether it can run now} (Inception metrics need the weights file)."""
    have = find_inception_weights(inception_weights) is not None
    return {name: m.feature_space != "inception" or have for name, m in METRICS.items()}


def _parse(name: str, extractor: FeatureExtractor | None) -> tuple[str, str | None]:
    """metric name -> (kind, feature space)."""
    if name == "swd":
        return "swd", None
    if name in ("fid", "kid"):
        return name, extractor.name if extractor is not None else "inception"
    kind, _, space = name.partition("_")
    if kind in ("fid", "kid") and space:
        return kind, space
    raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)} (or fid_<name>/kid_<name> for "
                     f"extractor=<FeatureExtractor named name>)")


def _key_suffix(space: str) -> str:
    return "" if space == "inception" else f"_{space}"


def generate_images(generate: Callable[[int], torch.Tensor], n: int, batch_size: int = 250, seed: int = 0,
                    progress: bool = True) -> torch.Tensor:
    """Call ``generate(b)`` (-> (b, C, H, W) in [-1, 1]) until n images exist -> uint8 (n, C, H, W) on the CPU.

    Runs under ``torch.no_grad`` with the global RNGs seeded to ``seed`` inside ``torch.random.fork_rng`` (the
    caller's random streams, e.g. a training loop's, are left untouched). Images are quantised to uint8 like
    saved PNGs, so real (uint8) and generated images go through the same metric pipeline.
    """
    from tqdm.auto import tqdm
    out = []
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        with tqdm(total=n, disable=not progress, leave=False, unit="img", desc="generate") as bar:
            while sum(len(o) for o in out) < n:
                b = min(batch_size, n - sum(len(o) for o in out))
                x = generate(b)
                if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != b:
                    raise ValueError(f"generate({b}) must return a tensor (b, C, H, W), got "
                                     f"{getattr(x, 'shape', type(x))}")
                out.append(float_to_uint8(x.cpu()))
                bar.update(b)
    return torch.cat(out)


def _real_images(real, n: int, seed: int) -> tuple[torch.Tensor, dict | None]:
    """-> (uint8 (n, C, S, S) subset of the real set, cache key of the set or None)."""
    images = real.images if hasattr(real, "images") else real
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise TypeError("real must be an ImageDataset (with .images uint8 (N, C, S, S)) or an image tensor")
    if images.dtype != torch.uint8:
        images = float_to_uint8(images)
    total = images.shape[0]
    if n < total:
        idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
        images = images[idx]
    key = None
    if hasattr(real, "name") and hasattr(real, "split"):
        key = dict(dataset=real.name, root=str(getattr(real, "root", None)), split=real.split,
                   image_size=images.shape[-1], channels=images.shape[1], set_size=total, num_samples=n,
                   subset_seed=seed)
    return images, key


def _real_features(ext: FeatureExtractor, images: torch.Tensor, key: dict | None, cache: ReferenceCache | None,
                   **kw) -> tuple[torch.Tensor, tuple[np.ndarray, np.ndarray]]:
    full_key = None if key is None or cache is None else {**key, "extractor": ext.cache_id,
                                                          "precision": kw["precision"]}
    if full_key is not None and (hit := cache.load(full_key)) is not None:
        return hit["features"], (hit["mu"].numpy(), hit["sigma"].numpy())
    feats = extract_features(ext, images, desc=f"{ext.name} features (real)", **kw)
    mu, sigma = feature_statistics(feats)
    if full_key is not None:
        cache.save(full_key, {"features": feats, "mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)})
    return feats, (mu, sigma)


def evaluate(generate: Callable[[int], torch.Tensor], real, metrics: Iterable[str] | str = ("swd", "kid", "fid"),
             num_samples: int = 2048, batch_size: int = 250, device: torch.device | str = "cpu",
             cache_dir=None, extractor: FeatureExtractor | None = None, seed: int = 0, progress: bool = True,
             precision: str = "fp32", *, inception_weights=None, kid_subsets: int = 100,
             kid_subset_size: int = 1000, use_cache: bool = True) -> dict[str, float]:
    """Compare ``num_samples`` generated images with as many real ones; see the module doc for the keys.

    generate: ``generate(n) -> (n, C, H, W)`` in [-1, 1] (put the generator in eval mode yourself);
    real: an ``ImageDataset`` (reference statistics cached under ``cache_dir``) or an image tensor (no cache).
    ``num_samples`` is capped at the size of the real set (with a warning); the real subset is drawn with
    ``seed``. ``precision`` ("fp32" | "bf16" | "fp16") is the autocast dtype of feature extraction; fp32 is
    the default (see ``features.PRECISION_NOTE``).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    names = list(dict.fromkeys(m.lower() for m in names))
    if not names:
        return {}
    spaces: dict[str, list[str]] = {}
    do_swd = False
    for name in names:
        kind, space = _parse(name, extractor)
        if kind == "swd":
            do_swd = True
        elif kind not in spaces.setdefault(space, []):
            spaces[space].append(kind)

    extractors: dict[str, FeatureExtractor] = {}
    for space in list(spaces):
        if extractor is not None and space == extractor.name:
            extractors[space] = extractor
        elif space == "randconv":
            extractors[space] = RandConvFeatures()
        elif space == "inception":
            try:
                extractors[space] = InceptionFeatures(inception_weights)
            except MissingWeightsError as exc:
                kinds = spaces.pop(space)
                fallback = "; computing kid_randconv instead of kid" if "kid" in kinds else ""
                warnings.warn(f"Inception metrics {'/'.join(kinds)} skipped{fallback}: {exc}", stacklevel=2)
                if "kid" in kinds:
                    spaces.setdefault("randconv", [])
                    if "kid" not in spaces["randconv"]:
                        spaces["randconv"].append("kid")
                    extractors.setdefault("randconv", RandConvFeatures())
        else:
            raise ValueError(f"no feature extractor named {space!r}: pass extractor=<FeatureExtractor with "
                             f"name {space!r}> or use one of 'inception', 'randconv'")
    if not spaces and not do_swd:
        return {}

    total = len(real.images) if hasattr(real, "images") else len(real)
    n = min(num_samples, total)
    if n < num_samples:
        warnings.warn(f"num_samples={num_samples} > size of the real set; using {n} samples", stacklevel=2)
    real_u8, key = _real_images(real, n, seed)
    fake_u8 = generate_images(generate, n, batch_size, seed, progress)
    if fake_u8.shape[1:] != real_u8.shape[1:]:
        raise ValueError(f"generated images {tuple(fake_u8.shape[1:])} do not match real {tuple(real_u8.shape[1:])}")

    cache = ReferenceCache(cache_dir) if use_cache else None
    kw = dict(batch_size=batch_size, device=device, precision=precision, progress=progress)
    results: dict[str, float] = {}
    for space, kinds in spaces.items():
        ext = extractors[space]
        real_f, (mu_r, sigma_r) = _real_features(ext, real_u8, key, cache, **kw)
        fake_f = extract_features(ext, fake_u8, desc=f"{ext.name} features (generated)", **kw)
        sfx = _key_suffix(space)
        if "fid" in kinds:
            results[f"fid{sfx}"] = frechet_distance(mu_r, sigma_r, *feature_statistics(fake_f))
        if "kid" in kinds:
            mean, std = kernel_inception_distance(real_f, fake_f, kid_subsets, kid_subset_size, seed=seed)
            results[f"kid{sfx}"], results[f"kid{sfx}_std"] = mean, std
    if do_swd:
        levels = sliced_wasserstein_per_level(real_u8, fake_u8, seed=seed, device=device)
        results["swd"] = float(np.mean(list(levels.values())))
        results.update({f"swd_{res}": float(v) for res, v in levels.items()})
    return results
