"""The preprocessed-image cache: one uint8 ``.npy`` array ``(N, C, S, S)`` plus a ``.json`` note per set.

A set is cached under a key made of everything that changes its pixels (dataset, absolute root, image size,
crop, split, ``max_images`` and the preprocessing version). The JSON note also records the source: a hash of
every source file's name, size and modification time (`gan_lib.data.fingerprint.files_fingerprint`), so a
folder whose files were added, removed or overwritten is decoded again rather than served stale; and
``pixels``, the SHA-256 of the array (the data fingerprint of a run). Both files are written with
`gan_lib.run_dir.atomic_write` (mode 0644 under the usual umask); the note is written last, so a set without
its note (an interrupted write) is never used.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..run_dir import atomic_write
from .fingerprint import pixels_digest

# Bump when decoding / cropping / resizing changes, so old caches are not reused.
PREPROCESS_VERSION = 1


def default_cache_dir() -> Path:
    """``$GAN_LIB_CACHE`` or ``~/.cache/gan_lib`` (datasets go in its ``data/`` subfolder)."""
    env = os.environ.get("GAN_LIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gan_lib"


class ArrayCache:
    """The cache entry of one preprocessed set, located by its key fields."""

    def __init__(self, cache_dir: str | Path | None, **key: Any):
        base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        # JSON-native copy (paths become strings) so it compares equal to the note read back.
        self.key = json.loads(json.dumps(dict(key, version=PREPROCESS_VERSION), default=str))
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:12]
        readable = "-".join(str(key[k]) for k in ("name", "split", "image_size") if k in key)
        self.stem = base / "data" / f"{readable}-{digest}"
        self.array_path = self.stem.with_suffix(".npy")
        self.meta_path = self.stem.with_suffix(".json")

    def load(self, source_fingerprint: str | None = None) -> tuple[np.ndarray, dict] | None:
        """-> (uint8 array ``(N, C, S, S)``, note) or ``None`` when absent, unreadable or stale."""
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("key") != self.key:
                return None
            if source_fingerprint is not None and meta.get("source") != source_fingerprint:
                return None
            array = np.load(self.array_path)
        except (OSError, ValueError):
            return None
        if array.dtype != np.uint8 or array.ndim != 4 or len(array) != meta.get("count"):
            return None
        return array, meta

    def save(self, array: np.ndarray, source_fingerprint: str | None = None, **extra: Any) -> dict:
        """Write the array, then the note (with ``pixels``, the array's SHA-256), each atomically; returns
        the note."""
        array = np.ascontiguousarray(array)
        meta = dict(extra, key=self.key, source=source_fingerprint, count=len(array), shape=list(array.shape),
                    pixels=pixels_digest(array))
        atomic_write(self.array_path, lambda f: np.save(f, array))
        atomic_write(self.meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
        return meta
