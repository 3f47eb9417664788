"""`load_dataset`: one entry point for every dataset, chosen by name."""
from __future__ import annotations

import inspect
from pathlib import Path

from .celeba import load_celeba
from .dataset import ImageDataset
from .errors import DataError
from .folder import load_folder
from .mnist import load_mnist
from .synthetic import load_synthetic

DATASETS = {
    "celeba": load_celeba,        # CelebA Align&Cropped folder; splits train/val/test/all
    "mnist": load_mnist,          # MNIST IDX files; 1 channel; splits train/test/all
    "folder": load_folder,        # any folder of images, recursive; split train (= all)
    "synthetic": load_synthetic,  # built-in shapes, no files; splits train/test
}


def load_dataset(name: str, root: str | Path | None = None, image_size: int = 64, split: str = "train",
                 cache_dir: str | Path | None = None, max_images: int | None = None, seed: int = 0,
                 progress: bool = True, crop: int | None = None, workers: int | None = None) -> ImageDataset:
    """Load dataset ``name`` as an in-memory `ImageDataset` of ``(N, C, image_size, image_size)`` images.

    Args:
        name: one of `DATASETS`: ``"celeba"``, ``"mnist"``, ``"folder"``, ``"synthetic"``.
        root: the data folder; ``None`` looks in the default places for CelebA and MNIST (see
            `find_celeba_root`), is required for ``"folder"`` and must be ``None`` for ``"synthetic"``.
        image_size: side ``S`` of the square images (e.g. 32 or 64).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``, as far as the dataset has them.
        cache_dir: where preprocessed uint8 arrays are kept (default ``$GAN_LIB_CACHE`` or
            ``~/.cache/gan_lib``); file datasets decode each image once, later loads read the array.
        max_images: keep only the first N images (files sorted by name; for ``"synthetic"`` the number of
            images generated, default 10,000). Unreadable files among those N are skipped, so ``len`` can be
            smaller.
        seed: the generation seed of ``"synthetic"`` (other datasets are not random).
        progress: show a progress bar while decoding.
        crop: file datasets only: ``None`` (default) the largest centred square, or an ``int`` side in
            original pixels of a centred square (CelebA face crops: 108 or 140).
        workers: decoding threads (default ``min(8, cpu_count)``).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if not isinstance(image_size, int) or image_size < 4:
        raise DataError(f"image_size must be an int >= 4, got {image_size!r}")
    if max_images is not None and max_images < 1:
        raise DataError(f"max_images must be a positive int or None, got {max_images!r}")
    loader = DATASETS[name]
    options = {"crop": crop, "workers": workers}
    accepted = inspect.signature(loader).parameters
    for key, value in options.items():
        if value is not None and key not in accepted:
            raise DataError(f"{key}= does not apply to the {name!r} dataset")
    extra = {k: v for k, v in options.items() if k in accepted}
    return loader(root=root, image_size=image_size, split=split, cache_dir=cache_dir, max_images=max_images,
                  seed=seed, progress=progress, **extra)
