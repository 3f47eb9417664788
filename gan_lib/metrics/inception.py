"""pytorch-fid's FID Inception-v3 (2048-d pool3 features), built offline from a local weights file.

pytorch-fid's ``fid_inception_v3()`` always calls ``load_state_dict_from_url``; here the same network
(torchvision Inception3 with pytorch-fid's ``FIDInceptionA/C/E_1/E_2`` blocks, 1008 classes, no aux logits) is
built without weights and loaded from ``pt_inception-2015-12-05-6726825d.pth``, found at (first match):

1. the explicit ``weights`` path argument;
2. ``$GAN_LIB_INCEPTION_WEIGHTS``;
3. the torch hub cache, ``torch.hub.get_dir()/checkpoints/`` (= ``$TORCH_HOME/hub/checkpoints``), where
   pytorch-fid itself downloads it.

It is downloaded (into 3.) only with ``allow_download=True``; otherwise a missing file raises
``MissingWeightsError``. The forward pass reproduces pytorch-fid's ``InceptionV3([3])``: bilinear resize to
299x299 (align_corners=False), then blocks 0-3; input here is already in [-1, 1] (pytorch-fid rescales
[0, 1] -> [-1, 1] after resizing, which is the same affine map since bilinear weights sum to 1).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from pytorch_fid.inception import (FID_WEIGHTS_URL, FIDInceptionA, FIDInceptionC, FIDInceptionE_1,
                                   FIDInceptionE_2)

from .features import FeatureExtractor

__all__ = ["MissingWeightsError", "FID_WEIGHTS_FILE", "FID_WEIGHTS_URL", "WEIGHTS_ENV",
           "default_weights_path", "find_inception_weights", "resolve_inception_weights",
           "build_fid_inception", "InceptionFeatures"]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_ENV = "GAN_LIB_INCEPTION_WEIGHTS"


class MissingWeightsError(FileNotFoundError):
    """The FID Inception weights file is not available (and downloading was not allowed or failed)."""


def default_weights_path() -> Path:
    """``torch.hub.get_dir()/checkpoints/pt_inception-2015-12-05-6726825d.pth`` (honours ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def _missing_message(where: Path, how: str) -> str:
    return (f"FID Inception weights {FID_WEIGHTS_FILE} not found at {where} ({how}). "
            f"Put the file at {default_weights_path()} (the torch hub cache, $TORCH_HOME/hub/checkpoints), "
            f"or set {WEIGHTS_ENV}=/path/to/{FID_WEIGHTS_FILE} (or pass weights=...). The file is pytorch-fid's "
            f"{FID_WEIGHTS_URL}: `python -m gan_lib weights fetch` downloads and checks it where there is internet "
            f"(allow_download=True in Python).")


def find_inception_weights(weights: str | os.PathLike | None = None) -> Path | None:
    """The weights file that would be used (explicit path > env var > torch hub cache), or None if absent."""
    try:
        return resolve_inception_weights(weights)
    except MissingWeightsError:
        return None


def resolve_inception_weights(weights: str | os.PathLike | None = None, allow_download: bool = False) -> Path:
    """Path of the FID Inception weights; raises ``MissingWeightsError`` naming the file, the expected
    location and ``$GAN_LIB_INCEPTION_WEIGHTS`` when absent. An explicit path or the env var, when given,
    must exist (no silent fallback to another file)."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(_missing_message(path, "explicit weights path"))
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise MissingWeightsError(_missing_message(path, f"${WEIGHTS_ENV}"))
        return path
    path = default_weights_path()
    if path.is_file():
        return path
    if allow_download:
        try:
            torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, progress=True, map_location="cpu")
        except Exception as exc:  # no network, proxy, ...
            raise MissingWeightsError(_missing_message(path, f"download failed: {exc}")) from exc
        if path.is_file():
            return path
    raise MissingWeightsError(_missing_message(path, "torch hub cache"))


def build_fid_inception() -> nn.Module:
    """pytorch-fid's FID Inception-v3 architecture (``fid_inception_v3`` without the weight download)."""
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net


class InceptionFeatures(FeatureExtractor):
    """FID feature extractor: images (N, 1|3, H, W) in [-1, 1] -> (N, 2048) pool3 features.

    ``weights``: path (see module doc for the search order), or ``state_dict=`` a loaded state dict (tests,
    benchmarks with random weights). ``allow_download`` lets a missing file be fetched into the hub cache.
    """

    name = "inception"
    dim = 2048

    def __init__(self, weights: str | os.PathLike | None = None, allow_download: bool = False,
                 state_dict: dict | None = None):
        super().__init__()
        net = build_fid_inception()
        if state_dict is None:
            self.weights_path = resolve_inception_weights(weights, allow_download)
            state_dict = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        else:
            self.weights_path = None
        net.load_state_dict(state_dict)
        self.blocks = nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d,
            net.Mixed_6e,
            net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)),
        )
        self.requires_grad_(False)
        self.eval()

    @property
    def cache_id(self) -> str:
        if self.weights_path is not None:
            return f"inception-pool3-{self.weights_path.name}"
        w = self.blocks[0].conv.weight.detach().float().cpu().numpy().tobytes()
        return f"inception-pool3-state_dict-{hashlib.sha1(w).hexdigest()[:12]}"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.blocks(x)
