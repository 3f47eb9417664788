"""Shared test fixtures.

The real datasets live outside the project, in ``../shared/data`` beside the checkout (never copied in).
``GAN_LIB_TEST_DATA`` overrides that location. Tests that need the real files skip when they are absent,
unless ``GAN_LIB_REQUIRE_DATA=1`` (set by ``.ci/run``), in which case a missing folder is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("GAN_LIB_TEST_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    msg = f"{what} not found at {path}; set GAN_LIB_TEST_DATA to the folder holding celeba/ and MNIST/"
    if os.environ.get("GAN_LIB_REQUIRE_DATA") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(_shared_data(), "shared test data")


@pytest.fixture(scope="session")
def celeba_root(shared_data) -> Path:
    """Folder holding ``img_align_celeba/`` (19,999 JPEGs) and ``list_eval_partition.txt``."""
    return _require(shared_data / "celeba", "CelebA")


@pytest.fixture(scope="session")
def mnist_root(shared_data) -> Path:
    """Folder holding the MNIST test split IDX files (``raw/``)."""
    return _require(shared_data / "MNIST", "MNIST")


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)
    yield
