"""Metrics with known answers: FID distance vs pytorch-fid, KID vs the direct formula, SWD vs PGGAN's numpy
code, ~0 for identical sets, small for two halves of real CelebA, growing with blur / noise; Inception weight
loading offline; evaluate() registry, fallback and cache. Never needs the real Inception weights."""
from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from gan_lib.metrics import (FID_WEIGHTS_FILE, WEIGHTS_ENV, FeatureExtractor, InceptionFeatures,
                             MissingWeightsError, RandConvFeatures, available_metrics, build_fid_inception,
                             evaluate, extract_features, feature_statistics, fid_from_features,
                             frechet_distance, generate_images, kernel_inception_distance, mmd2_unbiased,
                             resolve_inception_weights, sliced_wasserstein_distance)
from gan_lib.metrics.features import float_to_uint8, uint8_to_float
from gan_lib.metrics.swd import (_patch_positions, laplacian_pyramid, normalize_descriptors,
                                 patch_descriptors, sliced_wasserstein, swd_descriptors)

try:
    from gan_lib.data.dataset import ImageDataset
except ImportError:  # stand-in with the same attributes until gan_lib.data lands
    class ImageDataset:  # type: ignore[no-redef]
        def __init__(self, images, name, split, root=None):
            self.images, self.name, self.split, self.root = images, name, split, root
            self.image_size, self.channels = images.shape[-1], images.shape[1]

        def __len__(self):
            return len(self.images)

        def batch(self, idx):
            return uint8_to_float(self.images[idx])


# ---------------------------------------------------------------------------------------------- helpers

def _celeba_uint8(root: Path, n: int) -> torch.Tensor:
    """First n CelebA images, centre-cropped to 178x178, resized to 64x64 -> uint8 (n, 3, 64, 64)."""
    from PIL import Image
    files = sorted((root / "img_align_celeba").glob("*.jpg"))[:n]
    out = []
    for f in files:
        im = Image.open(f).convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        out.append(np.asarray(im.crop((left, top, left + s, top + s)).resize((64, 64), Image.BICUBIC)))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = int(4 * sigma) // 2 * 2 + 1
    return float_to_uint8(TF.gaussian_blur(uint8_to_float(x), [k, k], [sigma, sigma]))


def _noise(x: torch.Tensor, std: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return float_to_uint8(uint8_to_float(x) + std * torch.randn(x.shape, generator=g))


class TinyFeatures(FeatureExtractor):
    """Stand-in extractor: fixed-seed 2-layer conv net, counts the images it has seen."""
    name = "tiny"
    dim = 16

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3, generator=g) * 0.3, requires_grad=False)
        self.w2 = nn.Parameter(torch.randn(8, 8, 3, 3, generator=g) * 0.2, requires_grad=False)
        self.seen = 0

    def features(self, x):
        self.seen += x.shape[0]
        h1 = F.relu(F.conv2d(x, self.w1, padding=1))
        h2 = F.relu(F.conv2d(F.avg_pool2d(h1, 2), self.w2, padding=1))
        return torch.cat([h1.mean((2, 3)), h2.mean((2, 3))], 1)


@pytest.fixture(scope="module")
def celeba64(celeba_root) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves (300 + 300) of real CelebA at 64x64, uint8."""
    imgs = _celeba_uint8(celeba_root, 600)
    return imgs[:300], imgs[300:]


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return tmp_path


# ---------------------------------------------------------------------------------------------- FID

def _stats(rng, n, d, scale):
    a = rng.normal(size=(n, d)) @ (rng.normal(size=(d, d)) * scale) + rng.normal(size=d)
    return a.mean(0), np.cov(a, rowvar=False)


@pytest.mark.parametrize("d,n", [(2, 50), (8, 500), (64, 1000), (64, 40), (128, 120), (200, 150), (200, 201)])
def test_frechet_distance_matches_pytorch_fid(d, n):
    from pytorch_fid.fid_score import calculate_frechet_distance
    rng = np.random.default_rng(d * 1000 + n)
    mu1, s1 = _stats(rng, n, d, 0.3)
    mu2, s2 = _stats(rng, n, d, 0.35)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = calculate_frechet_distance(mu1, s1, mu2, s2)
        for method in ("eigh", "sqrtm"):
            got = frechet_distance(mu1, s1, mu2, s2, method=method)
            assert got == pytest.approx(ref, rel=1e-6), method
    # torch inputs are accepted
    assert frechet_distance(*map(torch.from_numpy, (mu1, s1, mu2, s2))) == pytest.approx(ref, rel=1e-6)


def test_frechet_identical_statistics_and_feature_statistics():
    f = torch.randn(300, 20, dtype=torch.float64) * 2 + 1
    mu, sigma = feature_statistics(f)
    np.testing.assert_allclose(mu, f.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f.numpy(), rowvar=False), rtol=1e-10, atol=1e-12)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------- KID

def _mmd2_direct(x: np.ndarray, y: np.ndarray) -> float:
    """O(m^2) loops over the unbiased MMD^2 of Binkowski et al. 2018 with k(a, b) = (a.b/d + 1)^3."""
    m, d = x.shape
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i, j in itertools.product(range(m), repeat=2) if i != j)
    yy = sum(k(y[i], y[j]) for i, j in itertools.product(range(m), repeat=2) if i != j)
    xy = sum(k(x[i], y[j]) for i, j in itertools.product(range(m), repeat=2))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2.0 * xy / m ** 2


def test_kid_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(14, 5, generator=g, dtype=torch.float64)
    y = torch.rand(14, 5, generator=g, dtype=torch.float64) * 1.2
    direct = _mmd2_direct(x.numpy(), y.numpy())
    mean, std = kernel_inception_distance(x, y, num_subsets=1, subset_size=1000)  # capped to 14: all samples
    assert mean == pytest.approx(direct, rel=1e-10) and std == 0.0

    # subsets: same draws as the implementation (one seeded generator, randperm for x then y per subset)
    fx = torch.rand(30, 4, generator=g, dtype=torch.float64)
    fy = torch.rand(25, 4, generator=g, dtype=torch.float64) + 0.1
    mean, std = kernel_inception_distance(fx, fy, num_subsets=4, subset_size=9, seed=3)
    gen = torch.Generator().manual_seed(3)
    vals = []
    for _ in range(4):
        ix, iy = torch.randperm(30, generator=gen)[:9], torch.randperm(25, generator=gen)[:9]
        vals.append(_mmd2_direct(fx[ix].numpy(), fy[iy].numpy()))
    assert mean == pytest.approx(np.mean(vals), rel=1e-10)
    assert std == pytest.approx(np.std(vals), rel=1e-8)


def test_mmd2_unbiased_rejects_bad_shapes():
    with pytest.raises(ValueError):
        mmd2_unbiased(torch.ones(3, 3), torch.ones(3, 2), torch.ones(3, 3))


# ---------------------------------------------------------------------------------------------- SWD

_GF = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6], [4, 16, 24, 16, 4],
                  [1, 4, 6, 4, 1]]) / 256.0


def _pggan_pyramid(m: np.ndarray, levels: int) -> list[np.ndarray]:
    """PGGAN's numpy/scipy Laplacian pyramid (metrics/sliced_wasserstein.py)."""
    down = lambda t: scipy.ndimage.convolve(t, _GF[None, None], mode="mirror")[:, :, ::2, ::2]  # noqa: E731

    def up(t):
        r = np.zeros(t.shape[:2] + (t.shape[2] * 2, t.shape[3] * 2), t.dtype)
        r[:, :, ::2, ::2] = t
        return scipy.ndimage.convolve(r, _GF[None, None] * 4.0, mode="mirror")
    pyr = [m.astype(np.float32)]
    for _ in range(1, levels):
        pyr.append(down(pyr[-1]))
        pyr[-2] = pyr[-2] - up(pyr[-1])
    return pyr


def test_laplacian_pyramid_matches_pggan():
    x = np.random.default_rng(0).integers(0, 256, (3, 3, 64, 64)).astype(np.float32)
    for ref, got in zip(_pggan_pyramid(x, 3), laplacian_pyramid(torch.from_numpy(x), 3)):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-3)


def test_descriptors_and_sliced_wasserstein_match_pggan():
    level = torch.randn(2, 3, 16, 16)
    ys, xs = torch.tensor([[0, 9], [3, 5]]), torch.tensor([[1, 2], [9, 0]])
    d = patch_descriptors(level, ys, xs)
    assert d.shape == (4, 3, 7, 7)
    assert torch.equal(d[1], level[0, :, 9:16, 2:9]) and torch.equal(d[2], level[1, :, 3:10, 9:16])

    raw = torch.randn(600, 2, 7, 7) * torch.tensor([1.0, 3.0]).view(1, 2, 1, 1) + 2.0
    ref = raw.double().numpy().copy()
    ref -= ref.mean(axis=(0, 2, 3), keepdims=True)
    ref /= ref.std(axis=(0, 2, 3), keepdims=True)
    a = normalize_descriptors(raw)
    np.testing.assert_allclose(a.numpy(), ref.reshape(600, -1), atol=1e-5)

    b = normalize_descriptors(torch.randn(600, 2, 7, 7) ** 3)
    got = sliced_wasserstein(a, b, dir_repeats=2, dirs_per_repeat=16, seed=5, chunk=5)
    gen, results = torch.Generator().manual_seed(5), []
    for _ in range(2):  # PGGAN's sliced_wasserstein() with the same directions
        dirs = torch.randn(98, 16, generator=gen).numpy()
        dirs /= np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
        pa, pb = np.sort(a.numpy() @ dirs, axis=0), np.sort(b.numpy() @ dirs, axis=0)
        results.append(np.mean(np.abs(pa - pb)))
    assert got == pytest.approx(np.mean(results), rel=1e-5)


def test_swd_descriptors_use_the_laplacian_levels():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    desc = swd_descriptors(x, seed=2, nhoods_per_image=5)
    pyr = _pggan_pyramid(x.numpy(), 2)
    for lv, res in enumerate((32, 16)):
        ys, xs = _patch_positions(4, res, lv, 2, 5, 7)
        ref = normalize_descriptors(patch_descriptors(torch.from_numpy(pyr[lv]), ys, xs))
        torch.testing.assert_close(desc[res], ref, atol=1e-4, rtol=1e-4)


def test_swd_identical_sets_is_zero_and_deterministic():
    x = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    mean, levels = sliced_wasserstein_distance(x, x.clone(), per_level=True)
    assert mean == 0.0 and set(levels) == {32, 16}
    y = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    assert sliced_wasserstein_distance(x, y, seed=1) == sliced_wasserstein_distance(x, y, seed=1) > 0


# ---------------------------------------------------------------------------------------------- real CelebA

def test_swd_celeba_halves_small_and_monotone_in_corruption(celeba64):
    a, b = celeba64
    half, per_level = sliced_wasserstein_distance(a, b, per_level=True)
    assert set(per_level) == {64, 32, 16}
    blur = [sliced_wasserstein_distance(a, _blur(b, s)) for s in (1.0, 2.0)]
    noise = [sliced_wasserstein_distance(a, _noise(b, s)) for s in (0.2, 0.4)]
    # measured (300 vs 300 images): half 18.5, blur 39 / 78, noise 71 / 90
    assert 1.5 * half < blur[0] < blur[1], (half, blur)
    assert 1.5 * half < noise[0] < noise[1], (half, noise)


def test_randconv_fid_kid_celeba_halves_small_and_monotone_in_corruption(celeba64):
    a, b = celeba64
    ext = RandConvFeatures()
    fa = extract_features(ext, a, progress=False)

    def scores(imgs):
        fb = extract_features(ext, imgs, progress=False)
        return fid_from_features(fa, fb), kernel_inception_distance(fa, fb, num_subsets=1)[0]
    half = scores(b)
    blurred = [scores(_blur(b, s)) for s in (1.0, 2.0)]
    noisy = scores(_noise(b, 0.4))
    # measured: FID half 0.161, blur 0.27 / 0.65, noise 0.94; KID 3.6e-4, 1.3e-3 / 4.3e-3, 4.5e-3
    assert 1.5 * half[0] < blurred[0][0] < blurred[1][0] and 1.5 * half[0] < noisy[0], (half, blurred, noisy)
    assert 2 * half[1] < blurred[0][1] < blurred[1][1] and 2 * half[1] < noisy[1], (half, blurred, noisy)
    # identical sets: FID ~ 0, KID ~ 0 (the unbiased estimate on identical samples is O(1/m), not exactly 0)
    assert abs(fid_from_features(fa, fa)) < 1e-3 * half[0]    # 480-d, 300 samples: rank-deficient covariances
    kid_same = kernel_inception_distance(fa, fa, num_subsets=1)[0]             # measured -4.1e-4
    assert -0.5 * blurred[0][1] < kid_same <= 0


def test_randconv_is_deterministic_and_bf16_close():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    f32 = extract_features(RandConvFeatures(), x, progress=False)
    assert torch.equal(f32, extract_features(RandConvFeatures(), x, progress=False))
    assert f32.shape == (8, RandConvFeatures().dim)
    bf16 = extract_features(RandConvFeatures(), x, progress=False, precision="bf16")
    torch.testing.assert_close(bf16, f32, rtol=3e-2, atol=3e-3)
    gray = extract_features(RandConvFeatures(), x[:, :1], progress=False)
    torch.testing.assert_close(gray, extract_features(RandConvFeatures(), x[:, :1].repeat(1, 3, 1, 1),
                                                      progress=False))


# ---------------------------------------------------------------------------------------------- Inception

def test_missing_inception_weights_error_names_file_and_env(no_weights, monkeypatch):
    with pytest.raises(MissingWeightsError) as err:
        InceptionFeatures()
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert FID_WEIGHTS_FILE in msg and WEIGHTS_ENV in msg and str(no_weights / "torch_home") in msg
    monkeypatch.setenv(WEIGHTS_ENV, str(no_weights / "nowhere.pth"))
    with pytest.raises(MissingWeightsError, match="nowhere.pth"):
        resolve_inception_weights()
    with pytest.raises(MissingWeightsError, match="elsewhere.pth"):
        resolve_inception_weights(no_weights / "elsewhere.pth")
    assert available_metrics() == {"swd": True, "fid": False, "kid": False, "fid_randconv": True,
                                   "kid_randconv": True}


def test_inception_loads_local_weights_and_matches_pytorch_fid(no_weights, monkeypatch):
    import pytorch_fid.inception as pfi
    torch.manual_seed(0)
    state = build_fid_inception().state_dict()
    hub = no_weights / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / FID_WEIGHTS_FILE)
    assert resolve_inception_weights() == hub / FID_WEIGHTS_FILE          # the torch hub cache
    assert available_metrics()["fid"]
    custom = no_weights / "custom.pth"
    (hub / FID_WEIGHTS_FILE).rename(custom)
    monkeypatch.setenv(WEIGHTS_ENV, str(custom))
    ext = InceptionFeatures()                                              # via the env var
    assert ext.weights_path == custom and ext.dim == 2048

    x = torch.rand(2, 3, 64, 64) * 2 - 1
    feats = ext(x)
    assert feats.shape == (2, 2048)
    torch.testing.assert_close(ext(x[:, :1]), ext(x[:, :1].repeat(1, 3, 1, 1)))
    # pytorch-fid's own InceptionV3([3]) with the same weights (its download call patched out)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: state)
    ref = pfi.InceptionV3([3]).eval()(((x + 1) / 2))[0].flatten(1)
    torch.testing.assert_close(feats, ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------- evaluate

def _toy_dataset(n=48, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=g) * 200
    grad = torch.linspace(0, 50, size).view(1, 1, 1, size)
    imgs = (base + grad + torch.rand(n, 3, size, size, generator=g) * 5).clamp(0, 255).to(torch.uint8)
    return ImageDataset(imgs, name="toy", split="all", root=None)


def test_evaluate_identical_sets_and_cache(tmp_path):
    ds = _toy_dataset()
    ext = TinyFeatures()
    replay = lambda: iter(uint8_to_float(ds.images).split(10))  # noqa: E731
    it = replay()
    res = evaluate(lambda n: next(it)[:n], ds, metrics=("swd", "kid", "fid"), num_samples=48, batch_size=10,
                   extractor=ext, cache_dir=tmp_path, progress=False, kid_subsets=3)
    assert set(res) == {"swd", "swd_32", "swd_16", "fid_tiny", "kid_tiny", "kid_tiny_std"}
    assert res["swd"] == 0.0 and abs(res["fid_tiny"]) < 1e-6
    assert -0.1 < res["kid_tiny"] <= 0  # unbiased MMD^2 of a set with itself: -(2/m) mean(k_ii - k_ij) <= 0
    assert ext.seen == 96                                        # 48 real + 48 generated
    assert len(list((tmp_path / "metrics").glob("*.pt"))) == 1

    it = replay()
    res2 = evaluate(lambda n: next(it)[:n], ds, metrics=("swd", "kid", "fid"), num_samples=48, batch_size=10,
                    extractor=ext, cache_dir=tmp_path, progress=False, kid_subsets=3)
    assert ext.seen == 96 + 48                                   # real features came from the cache
    assert res2 == pytest.approx(res)
    assert not list((tmp_path / "metrics").glob("*.tmp"))


def test_evaluate_falls_back_to_randconv_kid_without_weights(no_weights):
    ds = _toy_dataset(n=40)
    gen = lambda n: torch.rand(n, 3, 32, 32) * 2 - 1  # noqa: E731
    with pytest.warns(UserWarning, match=FID_WEIGHTS_FILE) as rec:
        res = evaluate(gen, ds, metrics=("fid", "kid"), num_samples=40, cache_dir=no_weights, progress=False,
                       kid_subsets=2)
    assert len([w for w in rec if FID_WEIGHTS_FILE in str(w.message)]) == 1
    assert set(res) == {"kid_randconv", "kid_randconv_std"} and res["kid_randconv"] > 0
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(gen, ds, metrics=("is",), progress=False)


def test_generate_images_leaves_caller_rng_untouched():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = generate_images(lambda n: torch.rand(n, 1, 16, 16) * 2 - 1, 7, batch_size=3, seed=1, progress=False)
    assert torch.equal(torch.rand(3), expected)
    b = generate_images(lambda n: torch.rand(n, 1, 16, 16) * 2 - 1, 7, batch_size=3, seed=1, progress=False)
    assert a.dtype == torch.uint8 and a.shape == (7, 1, 16, 16) and torch.equal(a, b)
