"""The preprocessed-image cache: one uint8 ``.npy`` array ``(N, C, S, S)`` plus a ``.json`` note per set.

A set is cached under a key made of everything that changes its pixels (dataset, absolute root, image size,
crop, split, ``max_images`` and the preprocessing version). The JSON note also records a fingerprint of the
source file list, so a folder whose files changed is rebuilt rather than served stale. Both files are written
to a temporary name and moved into place with ``os.replace``; the note is written last, so a set without its
note (an interrupted write) is never used.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# Bump when decoding / cropping / resizing changes, so old caches are not reused.
PREPROCESS_VERSION = 1


def default_cache_dir() -> Path:
    """``$GAN_LIB_CACHE`` or ``~/.cache/gan_lib`` (datasets go in its ``data/`` subfolder)."""
    env = os.environ.get("GAN_LIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gan_lib"


def fingerprint(names: Sequence[str]) -> str:
    """A short hash of a list of file names (the source a cached set was built from)."""
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()[:16]


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

    def save(self, array: np.ndarray, source_fingerprint: str | None = None, **extra: Any) -> None:
        """Write the array, then the note, each atomically (temp file in the same folder + ``os.replace``)."""
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(extra, key=self.key, source=source_fingerprint, count=len(array),
                    shape=list(array.shape))
        self._write(self.array_path, lambda f: np.save(f, np.ascontiguousarray(array)))
        self._write(self.meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))

    @staticmethod
    def _write(path: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
