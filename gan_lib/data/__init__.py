"""Datasets as in-memory uint8 image sets served as floats in [-1, 1]: CelebA, MNIST, any image folder,
and a built-in synthetic set. See `load_dataset`."""
from .celeba import find_celeba_root
from .dataset import ImageDataset
from .errors import DataError
from .fingerprint import DataMismatch, check_same_data, data_fingerprint
from .registry import DATASETS, load_dataset

__all__ = ["DATASETS", "DataError", "DataMismatch", "ImageDataset", "check_same_data", "data_fingerprint",
           "find_celeba_root", "load_dataset"]
