"""What identifies a training set, so a run is never continued (or reused) on other data.

* `files_fingerprint(folder, names)`: a hash of every file's name, size and modification time. It keys the
  preprocessed-image cache (`gan_lib.data.cache`): a file overwritten in place (new size or mtime) makes the
  cached set stale, so it is decoded again.
* `data_fingerprint(dataset)`: a small dict about a loaded `ImageDataset` (dataset name, split, image size,
  channels, number of images, crop, number of files, the files hash, and ``pixels``: a SHA-256 of the decoded
  uint8 images). A run stores it (run_dir ``data.json``, and in its checkpoints).
* `check_same_data(saved, new)`: `DataMismatch` when two fingerprints describe different data. The decoded
  pixels decide: a copy of the same images elsewhere (another ``--data-root``, new mtimes) is the same data;
  overwritten, added or removed images, another crop, size or split are not.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import DataError

# Keys whose values must agree for two fingerprints to be the same data (when both have them).
IDENTITY_KEYS = ("dataset", "split", "image_size", "channels", "crop", "num_images", "pixels")


class DataMismatch(DataError):
    """The data differs from the data a run was trained on."""


def files_fingerprint(folder: str | Path, names: Sequence[str]) -> str:
    """A short hash of ``folder/name`` for each name: its name, size and modification time (ns); a missing
    file counts as such. Changes when any file is added, removed, renamed or rewritten."""
    h = hashlib.sha256()
    folder = Path(folder)
    for n in names:
        try:
            st = os.stat(folder / n)
            entry = f"{n}\0{st.st_size}\0{st.st_mtime_ns}\n"
        except OSError:
            entry = f"{n}\0missing\n"
        h.update(entry.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def pixels_digest(images: torch.Tensor | np.ndarray) -> str:
    """SHA-256 (hex) of a uint8 image array ``(N, C, S, S)``: its shape and bytes."""
    a = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    h.update(a.data)
    return h.hexdigest()


def data_fingerprint(dataset) -> dict:
    """The fingerprint of a loaded `ImageDataset` (see the module docstring). The pixel hash comes from the
    cache note when the set was cached, else it is computed once and kept on the dataset."""
    fp = dict(getattr(dataset, "fingerprint", None) or {})
    if "pixels" not in fp:
        fp["pixels"] = pixels_digest(dataset.images)
        if getattr(dataset, "fingerprint", None) is not None:
            dataset.fingerprint["pixels"] = fp["pixels"]
    return {"dataset": dataset.name, "split": dataset.split, "image_size": int(dataset.image_size),
            "channels": int(dataset.channels), "num_images": len(dataset), **fp}


def check_same_data(saved: dict | None, new: dict) -> None:
    """`DataMismatch` when ``new`` describes other data than ``saved`` (a run's data.json); nothing when
    they agree or when there is no saved fingerprint (a run from before fingerprints)."""
    if not saved:
        return
    diffs = []
    for key in IDENTITY_KEYS:
        if key in saved and key in new and saved[key] != new[key]:
            a, b = saved[key], new[key]
            if key == "pixels":
                key, a, b = "pixels (sha256 of the decoded images)", str(a)[:12], str(b)[:12]
            diffs.append(f"{key}: run has {a!r}, now {b!r}")
    if diffs:
        raise DataMismatch(f"the data differs from the run's training data ({'; '.join(diffs)}). A run continues "
                           f"only on the data it started with: point --data-root at that data, or start a new run "
                           f"(another --out folder, or --restart)")
