"""Sample-quality metrics: FID (pytorch-fid Inception), KID, SWD; feature extractors; reference cache.

Entry point: ``evaluate(generate, real, metrics=("swd", "kid", "fid"), ...) -> dict[str, float]``.
Modules: ``frechet`` (Fréchet distance), ``inception`` (FID Inception, offline weights), ``features``
(extractor interface, random-conv features, batched extraction), ``kid``, ``swd``, ``cache``, ``evaluate``.
"""
from .cache import ReferenceCache, default_cache_dir
from .evaluate import METRICS, MetricInfo, available_metrics, evaluate, generate_images
from .features import FeatureExtractor, RandConvFeatures, extract_features
from .frechet import feature_statistics, fid_from_features, frechet_distance
from .inception import (FID_WEIGHTS_FILE, WEIGHTS_ENV, InceptionFeatures, MissingWeightsError,
                        build_fid_inception, default_weights_path, find_inception_weights,
                        resolve_inception_weights)
from .kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel
from .swd import sliced_wasserstein_distance, sliced_wasserstein_per_level

__all__ = [
    "evaluate", "generate_images", "METRICS", "MetricInfo", "available_metrics",
    "frechet_distance", "feature_statistics", "fid_from_features",
    "kernel_inception_distance", "mmd2_unbiased", "polynomial_kernel",
    "sliced_wasserstein_distance", "sliced_wasserstein_per_level",
    "FeatureExtractor", "RandConvFeatures", "InceptionFeatures", "extract_features",
    "MissingWeightsError", "FID_WEIGHTS_FILE", "WEIGHTS_ENV", "default_weights_path",
    "find_inception_weights", "resolve_inception_weights", "build_fid_inception",
    "ReferenceCache", "default_cache_dir",
]
