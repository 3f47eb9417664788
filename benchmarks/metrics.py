"""Time every metric on N real CelebA images against N others (default N = 10,000, 64x64), on this machine.

    python benchmarks/metrics.py [--data-root ../shared/data/celeba] [--n 10000] [--image-size 64]
        [--inception-images 500] [--precisions fp32 bf16]

Stages, each timed once (both image sets, so "features" covers 2N images):
  swd                 Laplacian pyramid + 128 7x7 descriptors per image and level + 4x128 projections
  randconv features   gan_lib's offline random-conv extractor (KID / FID in that space), per precision
  fid / kid           Frechet distance (eigh) and KID (100 subsets of 1,000) on the 2048-d / randconv features
  inception features  pytorch-fid's InceptionV3 at 299x299, on ``--inception-images`` images with random
                      weights (the cost does not depend on the weights, which are not on this machine),
                      reported per image and scaled to 2N images (marked "scaled")
The values are printed too: the two real halves should be close (small SWD / KID).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gan_lib.data import load_dataset  # noqa: E402
from gan_lib.errors import report_user_errors  # noqa: E402
from gan_lib.metrics.features import PRECISIONS, RandConvFeatures, extract_features  # noqa: E402
from gan_lib.metrics.frechet import feature_statistics, frechet_distance  # noqa: E402
from gan_lib.metrics.inception import InceptionFeatures, build_fid_inception  # noqa: E402
from gan_lib.metrics.kid import kernel_inception_distance  # noqa: E402
from gan_lib.metrics.swd import sliced_wasserstein_distance  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    return report_user_errors(lambda: benchmark(argv))  # a user's mistake: one line, as `python -m gan_lib`


def benchmark(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="CelebA folder (default: the usual places)")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--inception-images", type=int, default=500)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS)
    args = p.parse_args(argv)

    data, t_load = timed(lambda: load_dataset("celeba", root=args.data_root, image_size=args.image_size,
                                              split="all", progress=False))
    n = min(args.n, len(data) // 2)
    a, b = data.images[:n], data.images[n: 2 * n]
    print(f"CelebA {args.image_size}x{args.image_size}: {n:,} vs {len(b):,} real images (loaded in {t_load:.1f} s), "
          f"{torch.get_num_threads()} threads")
    rows = []

    def fl(x):
        return x.float() / 127.5 - 1

    (swd, levels), t = timed(lambda: sliced_wasserstein_distance(fl(a), fl(b), per_level=True))
    rows.append(("swd (descriptors + distance)", "fp32", t, f"swd={swd:.2f} per level {levels}"))

    for precision in args.precisions:
        ext = RandConvFeatures()
        (fa, fb), t = timed(lambda: (extract_features(ext, a, precision=precision, progress=False),
                                     extract_features(ext, b, precision=precision, progress=False)))
        rows.append(("randconv features", precision, t, f"dim {fa.shape[1]}"))
        fid, t = timed(lambda: frechet_distance(*feature_statistics(fa), *feature_statistics(fb)))
        rows.append(("fid_randconv (stats + distance)", precision, t, f"{fid:.4f}"))
        (kid, kid_std), t = timed(lambda: kernel_inception_distance(fa, fb))
        rows.append(("kid_randconv (100 x 1000)", precision, t, f"{kid:.5f} +- {kid_std:.5f}"))

    if args.inception_images:
        torch.manual_seed(0)
        net = InceptionFeatures(state_dict=build_fid_inception().state_dict())
        m = min(args.inception_images, n)
        for precision in args.precisions:
            feats, t = timed(lambda: extract_features(net, a[:m], precision=precision, progress=False))
            per = t / m
            rows.append(("inception features", precision, per * 2 * n,
                         f"scaled from {m} images: {per * 1e3:.1f} ms/image"))
        fx = torch.randn(2 * n, 2048)
        fid, t = timed(lambda: frechet_distance(*feature_statistics(fx[:n]), *feature_statistics(fx[n:])))
        rows.append(("fid (2048-d stats + distance)", "fp64", t, "on random features"))
        _, t = timed(lambda: kernel_inception_distance(fx[:n], fx[n:]))
        rows.append(("kid (2048-d, 100 x 1000)", "fp32", t, "on random features"))

    print(f"{'stage':34s} {'precision':9s} {'seconds':>9s}  value")
    for stage, prec, t, val in rows:
        print(f"{stage:34s} {prec:9s} {t:9.1f}  {val}")


if __name__ == "__main__":
    sys.exit(main())
