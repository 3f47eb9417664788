"""Datasets as in-memory uint8 image sets served as floats in [-1, 1]: CelebA, MNIST, any image folder,
and a built-in synthetic set. See `load_dataset`."""
from .celeba import find_celeba_root
from .dataset import ImageDataset
from .registry import DATASETS, load_dataset

__all__ = ["DATASETS", "ImageDataset", "find_celeba_root", "load_dataset"]
