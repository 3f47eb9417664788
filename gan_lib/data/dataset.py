"""`ImageDataset`: a whole image set held in memory as uint8, served as floats in [-1, 1]."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., C, S, S)`` in [0, 255] -> float32 in [-1, 1] (``x / 127.5 - 1``)."""
    return images.float().div_(127.5).sub_(1.0)


class ImageDataset(Dataset):
    """An image set kept in memory as ``uint8`` and converted to float per item or batch.

    Attributes:
        images: uint8 tensor ``(N, C, S, S)``, the whole set.
        name: dataset name (``"celeba"``, ``"mnist"``, ``"folder"``, ``"synthetic"``).
        channels, image_size: ``C`` and ``S``.
        split: the split this set holds (``"train"``, ``"val"``, ``"test"`` or ``"all"``).
        root: the folder the images were read from (``None`` for built-in data).
        skipped: how many files could not be read (corrupt or truncated) and were left out.
        skipped_files: their names (relative to ``root``).
        fingerprint: what the loader knows about the source (crop, file count, files hash, pixel hash); see
            `gan_lib.data.data_fingerprint`, which completes it.
    """

    def __init__(self, images: torch.Tensor | np.ndarray, name: str, split: str,
                 root: str | Path | None = None, skipped_files: Sequence[str] = (),
                 fingerprint: dict | None = None):
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise ValueError(f"images must be uint8 (N, C, S, S), got {tuple(images.shape)} {images.dtype}")
        self.images = images
        self.name = name
        self.split = split
        self.root = Path(root) if root is not None else None
        self.skipped_files = tuple(skipped_files)
        self.fingerprint = dict(fingerprint or {})

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        """-> float ``(C, S, S)`` in [-1, 1]."""
        return to_float(self.images[i])

    def batch(self, indices) -> torch.Tensor:
        """indices (LongTensor, list or array of B ints) -> float ``(B, C, S, S)`` in [-1, 1]."""
        if not isinstance(indices, torch.Tensor):
            indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return to_float(self.images[indices])

    def __repr__(self) -> str:
        root = f", root='{self.root}'" if self.root is not None else ""
        return (f"ImageDataset(name='{self.name}', split='{self.split}', n={len(self)}, "
                f"shape=({self.channels}, {self.image_size}, {self.image_size}){root}, "
                f"skipped={self.skipped})")
