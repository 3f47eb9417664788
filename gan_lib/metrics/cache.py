"""On-disk cache of reference statistics of real image sets (features, their mean and covariance).

One ``.pt`` file per key under ``<cache_dir>/metrics/`` (``cache_dir``: argument, else ``$GAN_LIB_CACHE``,
else ``~/.cache/gan_lib``). The key (dataset name, root, split, image size, set size, sample count, subset
seed, extractor ``cache_id``, precision, format version) is hashed into the file name and stored in the file;
a file whose stored key differs is ignored. Files are written with `gan_lib.run_dir.atomic_write` (temp file +
``os.replace``, mode 0644 under the usual umask, so a shared cache is readable by others).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..data.cache import default_cache_dir
from ..run_dir import atomic_write

__all__ = ["default_cache_dir", "ReferenceCache", "CACHE_VERSION"]

CACHE_VERSION = 1


class ReferenceCache:
    """``load(key) -> dict | None`` and ``save(key, payload)`` for reference statistics (dicts of tensors)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.dir = base / "metrics"

    @staticmethod
    def _canonical(key: dict[str, Any]) -> str:
        return json.dumps({"version": CACHE_VERSION, **key}, sort_keys=True, default=str)

    def path(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha1(self._canonical(key).encode()).hexdigest()[:16]
        parts = [str(key.get(k, "")) for k in ("dataset", "split", "image_size", "num_samples", "extractor")]
        stem = "-".join(p.replace("/", "_").replace(os.sep, "_") for p in parts if p)
        return self.dir / f"{stem}-{digest}.pt"

    def load(self, key: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # truncated / foreign file: treat as a miss, it will be rewritten
            return None
        if payload.get("key") != self._canonical(key):
            return None
        return payload

    def save(self, key: dict[str, Any], payload: dict[str, Any]) -> Path:
        path = self.path(key)
        atomic_write(path, lambda f: torch.save({**payload, "key": self._canonical(key)}, f))
        return path
