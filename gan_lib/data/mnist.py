"""MNIST from its IDX files, as 1-channel squares: 28x28 zero-padded to 32x32 (the background stays black,
-1), then resized to ``image_size`` if that differs (bilinear; antialiased when shrinking).

``root`` holds ``train-images-idx3-ubyte`` and/or ``t10k-images-idx3-ubyte`` (each optionally ``.gz``),
directly or under ``raw/`` or ``MNIST/raw/`` (torchvision's layouts). Splits ``train``, ``test`` and ``all``
(whichever of the two are present, train first); a copy holding only the test files works for ``test`` and
``all``. Labels are not read.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageDataset
from .errors import DataError
from .paths import describe_search, find_root

FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
IDX_UBYTE_MAGIC = {1: 2049, 3: 2051}  # 0x0801 labels, 0x0803 images (unsigned bytes, 1 or 3 dimensions)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or raw) -> uint8 array of its shape. Raises `DataError` (a
    ``ValueError``) naming the file when it is corrupt, truncated or not IDX."""
    path = Path(path)
    try:
        data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError
        raise DataError(f"cannot read {path} ({e}); re-download it") from e
    if len(data) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(data)} bytes); re-download it")
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or IDX_UBYTE_MAGIC.get(ndim) != magic:
        raise DataError(f"{path} is not an IDX ubyte file (magic number {magic:#010x}, expected 0x00000803 "
                        f"for images or 0x00000801 for labels); re-download it")
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(f"{path} is truncated or corrupt: {len(data)} bytes, its header {shape} needs "
                        f"{expected}; re-download it")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def mnist_files(root: str | Path) -> tuple[Path, dict[str, Path]]:
    """-> (folder holding the IDX image files, ``{split: path}`` of those present)."""
    root = Path(root).expanduser()
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        found = {split: p for split, stem in FILES.items() if (p := _idx_file(folder, stem)) is not None}
        if found:
            return folder, found
    what = "does not exist" if not root.exists() else "holds no MNIST image files"
    raise FileNotFoundError(f"MNIST root {root} {what}: expected {FILES['train']}[.gz] and/or "
                            f"{FILES['test']}[.gz] in it, in raw/ or in MNIST/raw/ (torchvision's "
                            f"MNIST(root, download=True) writes that layout).")


def pad_and_resize(digits: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 ``(N, 28, 28)`` -> uint8 ``(N, 1, image_size, image_size)``: pad to 32, then resize."""
    x = F.pad(torch.from_numpy(np.ascontiguousarray(digits)).unsqueeze(1), (2, 2, 2, 2))
    if image_size != x.shape[-1]:
        y = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=image_size < x.shape[-1])
        x = y.round_().clamp_(0, 255).to(torch.uint8)
    return x


def load_mnist(root=None, image_size=64, split="train", cache_dir=None, max_images=None, seed=0,
               progress=True) -> ImageDataset:
    """MNIST ``split`` as ``(N, 1, image_size, image_size)``; ``max_images`` keeps the first N."""
    if split not in ("train", "test", "all"):
        raise DataError(f"unknown MNIST split {split!r}; choose one of 'train', 'test', 'all'")
    if root is None:
        root = find_root("GAN_LIB_MNIST", "MNIST", lambda p: _safe_files(p) is not None)
        if root is None:
            raise FileNotFoundError(f"MNIST not found; {describe_search('GAN_LIB_MNIST', 'MNIST')}")
    folder, present = mnist_files(root)
    wanted = list(present) if split == "all" else [split]
    missing = [s for s in wanted if s not in present]
    if missing:
        only, first = ", ".join(f"'{s}'" for s in present), next(iter(present))
        raise FileNotFoundError(f"MNIST split {split!r} is not present in {folder}: only {only} "
                                f"({', '.join(p.name for p in present.values())}). Use split '{first}' "
                                f"or 'all' (--set split={first}), or add {FILES[missing[0]]}[.gz] to that folder.")
    digits = []
    for s in ("train", "test"):
        if s in wanted:
            images = read_idx(present[s])
            if images.ndim != 3 or images.shape[1:] != (28, 28):
                raise DataError(f"{present[s]} holds images of shape {images.shape[1:]}, expected (28, 28)")
            digits.append(images)
    digits = np.concatenate(digits)[:max_images]
    return ImageDataset(pad_and_resize(digits, image_size), "mnist", split, folder)


def _safe_files(p: Path):
    try:
        return mnist_files(p)
    except FileNotFoundError:
        return None
