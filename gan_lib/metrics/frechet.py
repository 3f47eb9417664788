"""Fréchet distance between Gaussians fitted to features (FID; Heusel et al. 2017, paper §3.4).

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

``frechet_distance`` equals pytorch-fid's ``calculate_frechet_distance`` on the same statistics (tested to
1e-6 relative, including rank-deficient covariances). The default ``method="eigh"`` uses the identity
Tr((S1 S2)^{1/2}) = Tr((S1^{1/2} S2 S1^{1/2})^{1/2}) = sum_i sqrt(lambda_i), lambda_i the eigenvalues of the
symmetric PSD matrix S1^{1/2} S2 S1^{1/2}: two symmetric eigen-decompositions, ~1.6 s for 2048-d on 2 CPU
cores against ~35 s for ``scipy.linalg.sqrtm`` (``method="sqrtm"``, pytorch-fid's exact algorithm).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg

__all__ = ["frechet_distance", "feature_statistics", "fid_from_features"]


def _as_f64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """features (N, D) -> (mu (D,), sigma (D, D)) in float64; sigma = np.cov(features, rowvar=False) (ddof=1)."""
    f = torch.as_tensor(features).detach().cpu().double()
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {tuple(f.shape)}")
    mu = f.mean(0)
    c = f - mu
    sigma = c.T @ c / (f.shape[0] - 1)
    return mu.numpy(), sigma.numpy()


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) for symmetric PSD S1, S2 via eigh (negative round-off eigenvalues clipped to 0)."""
    w, v = linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    lam = linalg.eigvalsh((m + m.T) * 0.5)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def _trace_sqrt_product_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """pytorch-fid's algorithm: scipy sqrtm of S1 S2, eps on the diagonals if the product is singular."""
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"fid calculation produces singular product; adding {eps} to diagonal of cov estimates")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "eigh") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu: (D,), sigma: (D, D), numpy or torch; computed in float64. ``method``: ``"eigh"`` (default, exact and
    fast) or ``"sqrtm"`` (pytorch-fid's code path; ``eps`` is only used there, as in pytorch-fid).
    """
    mu1, mu2 = np.atleast_1d(_as_f64(mu1)), np.atleast_1d(_as_f64(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_f64(sigma1)), np.atleast_2d(_as_f64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    if method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    elif method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(sigma1, sigma2, eps)
    else:
        raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_features(features1, features2, **kwargs) -> float:
    """FID between two feature sets (N1, D), (N2, D): ``frechet_distance`` of their ``feature_statistics``."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2), **kwargs)
