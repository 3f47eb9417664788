"""CelebA ("Align&Cropped Images", 178x218 JPEGs): an image folder with the official split filter.

Accepted layouts of ``root`` (the first that holds JPEGs wins):

* ``root/img_align_celeba/*.jpg``                       (the unzipped ``img_align_celeba.zip``)
* ``root/celeba/img_align_celeba/*.jpg``                (torchvision's ``CelebA(root)`` layout)
* ``root/img_align_celeba/img_align_celeba/*.jpg``      (Kaggle's ``celeba-dataset`` zip)
* ``root/Img/img_align_celeba/*.jpg``                   (the Google Drive folder)
* ``root/*.jpg``                                        (``root`` is the image folder itself)

The split file ``list_eval_partition.txt`` (``name code`` lines, 0 train / 1 val / 2 test; Kaggle's
``list_eval_partition.csv`` too) is looked for beside the image folder, in ``root``, ``root/celeba`` and
``root/Eval``. With it, splits ``train``/``val``/``test``/``all``; without it only ``all``. A split holds the
files of that split that are present, so a partial copy of CelebA works.

Default crop: the largest centred square (178x178), then resized to ``image_size``. This is what
torchvision's ``Resize(64) + CenterCrop(64)`` in the PyTorch DCGAN CelebA tutorial gives, the usual route of
PyTorch GAN code such as the paper's, which says only that it used "CelebA cropped data" (the
Align&Cropped release) resized to 64x64. ``crop=108`` or ``crop=140`` give the tighter face crops of some
other GAN papers.
"""
from __future__ import annotations

import os
from pathlib import Path

from .dataset import ImageDataset
from .errors import DataError
from .images import list_images, load_image_files
from .paths import describe_search, find_root

SPLITS = {"train": 0, "val": 1, "test": 2}
PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")
HOW_TO_GET = ("Get CelebA's 'Align&Cropped Images' (img_align_celeba.zip, 202,599 JPEGs) and "
              "list_eval_partition.txt from the CelebA project page or a mirror (e.g. Kaggle's "
              "'celeba-dataset'), and unzip them so that ./data/celeba/img_align_celeba/*.jpg and "
              "./data/celeba/list_eval_partition.txt exist.")


def _has_jpegs(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(e.name.lower().endswith((".jpg", ".jpeg")) for e in it)
    except OSError:
        return False


def image_folder(root: Path) -> Path | None:
    """The folder of CelebA JPEGs inside ``root`` (see the module docstring), or ``None``."""
    root = Path(root)
    for d in (root / "img_align_celeba", root / "celeba" / "img_align_celeba",
              root / "img_align_celeba" / "img_align_celeba", root / "Img" / "img_align_celeba", root):
        if d.is_dir() and _has_jpegs(d):
            return d
    return None


def find_celeba_root() -> Path | None:
    """Where CelebA is, when no root is given; ``None`` if nowhere. Looked for, in order:

    1. ``$GAN_LIB_CELEBA`` (if set, only there);
    2. ``./data/celeba`` and ``../shared/data/celeba`` relative to the current directory;
    3. ``data/celeba`` and ``../shared/data/celeba`` relative to the gan_lib checkout.

    A place counts when it holds the images in one of the accepted layouts (module docstring).
    """
    return find_root("GAN_LIB_CELEBA", "celeba", lambda p: image_folder(p) is not None)


def partition_file(root: Path, images: Path) -> Path | None:
    """``list_eval_partition.txt`` (or Kaggle's ``.csv``) for this copy, or ``None``."""
    for d in dict.fromkeys((images.parent, images, root, root / "celeba", root / "Eval", images.parent / "Eval")):
        for name in PARTITION_FILES:
            if (d / name).is_file():
                return d / name
    return None


def read_partition(path: Path) -> dict[str, int]:
    """``{file name: 0 train | 1 val | 2 test}``; header and malformed lines are ignored. `DataError` naming
    the file when it cannot be read or holds no such line."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"cannot read the CelebA partition file {path} ({e.strerror}); fix or replace it "
                        f"(list_eval_partition.txt from the CelebA release)") from None
    split_of = {}
    for line in text.splitlines():
        parts = line.replace(",", " ").split()
        if len(parts) == 2 and parts[1] in ("0", "1", "2"):
            split_of[parts[0]] = int(parts[1])
    if not split_of:
        raise DataError(f"the CelebA partition file {path} holds no 'name split' lines (expected lines like "
                        f"'000001.jpg 0'); replace it with list_eval_partition.txt from the CelebA release, or "
                        f"remove it and use split='all'")
    return split_of


def celeba_files(root: str | Path, split: str = "train") -> tuple[Path, list[str]]:
    """-> (image folder, sorted names of its JPEGs in ``split``). Raises with what to do when absent."""
    if split not in (*SPLITS, "all"):
        raise DataError(f"unknown CelebA split {split!r}; choose one of 'train', 'val', 'test', 'all'")
    root = Path(root).expanduser()
    images = image_folder(root)
    if images is None:
        what = "does not exist" if not root.exists() else "holds no img_align_celeba/*.jpg"
        raise FileNotFoundError(f"CelebA root {root} {what}. {HOW_TO_GET} Then pass root=... or set "
                                f"GAN_LIB_CELEBA (torchvision's root/celeba/img_align_celeba layout works too).")
    names = [n for n in list_images(images, recursive=False) if n.lower().endswith((".jpg", ".jpeg"))]
    if split == "all":
        return images, names
    part = partition_file(root, images)
    if part is None:
        raise DataError(f"CelebA split {split!r} needs list_eval_partition.txt beside {images} (not found); "
                        f"without it only split='all' is available. {HOW_TO_GET}")
    split_of = read_partition(part)
    return images, [n for n in names if split_of.get(n) == SPLITS[split]]


def load_celeba(root=None, image_size=64, split="train", cache_dir=None, max_images=None, seed=0,
                progress=True, crop=None, workers=None) -> ImageDataset:
    """CelebA ``split`` as ``(N, 3, image_size, image_size)``; ``max_images`` keeps the first N by name."""
    if root is None:
        root = find_celeba_root()
        if root is None:
            raise FileNotFoundError(f"CelebA not found; {describe_search('GAN_LIB_CELEBA', 'celeba')} "
                                    f"{HOW_TO_GET}")
    root = Path(root).expanduser()
    images, names = celeba_files(root, split)
    if not names:
        raise DataError(f"CelebA split {split!r} is empty: none of the {split} files listed in the partition "
                        f"file are in {images}")
    return load_image_files("celeba", images, names, split, image_size, crop, cache_dir, max_images,
                            progress, workers, root=root.resolve())
