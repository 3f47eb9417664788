"""Any folder of images, searched recursively, as RGB squares (conversion and crop: see `images`).

A folder has no official split: ``"train"`` and ``"all"`` both mean every image in it.
"""
from __future__ import annotations

from pathlib import Path

from .dataset import ImageDataset
from .errors import DataError
from .images import IMAGE_EXTENSIONS, list_images, load_image_files

SPLITS = ("train", "all")


def load_folder(root=None, image_size=64, split="train", cache_dir=None, max_images=None, seed=0,
                progress=True, crop=None, workers=None) -> ImageDataset:
    """Every image under ``root`` (sorted by relative path; ``max_images`` keeps the first N) as
    ``(N, 3, image_size, image_size)``."""
    if root is None:
        raise DataError("the 'folder' dataset needs its folder of images (searched recursively): --data-root PATH "
                        "(root=PATH in Python)")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for the 'folder' dataset: a folder has no official split, "
                        f"use split 'train' or 'all' (both mean every image in it; --set split=all)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist" if not root.exists()
                                else f"{root} is a file, not a folder of images")
    names = list_images(root)
    if not names:
        raise DataError(f"no image files found under {root} (searched recursively for "
                        f"{', '.join(IMAGE_EXTENSIONS)}): pass the folder that holds the images (--data-root)")
    return load_image_files("folder", root, names, split, image_size, crop, cache_dir, max_images, progress,
                            workers, root=root.resolve())
