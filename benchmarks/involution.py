"""Involution: ``gan_lib.layers.involution2d`` against the unfold formulation of the official RedNet code.

    python benchmarks/involution.py [--batch 64 --channels 64 --size 32 --groups 4] [--kernels 1 3 5 7]
        [--repeats 5] [--dtype float32|bfloat16]

For each K, forward+backward (gradients for x and the kernel) of both implementations are timed side by side
in this one process, alternating, and the median is printed with the ratio unfold / ours. Peak memory is the
high-water mark of the resident set (VmHWM) of a fresh subprocess that builds the inputs, notes its
RSS, then runs one forward+backward: the difference is what the call itself needed. ``unfold buffer`` is the
size of the K*K-times larger copy of x the reference builds (our implementation never builds it).
Paper shape (default): B=64, C=64, 32x32, G=4 — the involution layer of the iGAN generator at w=64.
Target on the 2-core CPU: at least 10x faster for K = 3..7.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gan_lib  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch loads)
import torch  # noqa: E402

from gan_lib.layers import involution2d, involution2d_unfold  # noqa: E402

IMPLS = {"ours": involution2d, "unfold": involution2d_unfold}


def make_inputs(b, c, h, g, k, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, h, generator=gen).to(dtype).requires_grad_()
    kernel = torch.randn(b, g, k * k, h, h, generator=gen).to(dtype).requires_grad_()
    grad = torch.randn(b, c, h, h, generator=gen).to(dtype)
    return x, kernel, grad


def fwd_bwd(impl, x, kernel, grad, k):
    out = IMPLS[impl](x, kernel, k)
    return torch.autograd.grad(out, (x, kernel), grad)


def peak_mb(impl, args) -> float:
    """Peak RSS growth (MB) of one forward+backward, in a fresh process."""
    code = f"""
import sys, json
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import involution as bench, torch
a = json.loads({json.dumps(json.dumps(vars(args)))})
dtype = getattr(torch, a["dtype"])
x, kernel, grad = bench.make_inputs(a["batch"], a["channels"], a["size"], a["groups"], a["k"], dtype)
from gan_lib.cost import peak_rss_mb
base = peak_rss_mb()
bench.fwd_bwd({impl!r}, x, kernel, grad, a["k"])
print(peak_rss_mb() - base)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--kernels", type=int, nargs="+", default=[1, 3, 5, 7])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    print(f"involution fwd+bwd, B={args.batch} C={args.channels} {args.size}x{args.size} G={args.groups} "
          f"{args.dtype}, {torch.get_num_threads()} threads, median of {args.repeats}")
    header = (f"{'K':>2} {'ours ms':>9} {'unfold ms':>10} {'speed-up':>9} {'ours MB':>8} {'unfold MB':>10} "
              f"{'mem ratio':>9} {'unfold buffer MB':>17}")
    print(header)
    print("-" * len(header))
    for k in args.kernels:
        x, kernel, grad = make_inputs(args.batch, args.channels, args.size, args.groups, k, dtype)
        for impl in IMPLS:  # warm-up, and the two must agree
            fwd_bwd(impl, x, kernel, grad, k)
        ours, ref = fwd_bwd("ours", x, kernel, grad, k), fwd_bwd("unfold", x, kernel, grad, k)
        tol = 1e-3 if dtype == torch.float32 else 5e-1
        assert all((a.float() - b.float()).abs().max() < tol * b.float().abs().max() for a, b in zip(ours, ref))
        times = {impl: [] for impl in IMPLS}
        for _ in range(args.repeats):
            for impl in IMPLS:
                t0 = time.perf_counter()
                fwd_bwd(impl, x, kernel, grad, k)
                times[impl].append(time.perf_counter() - t0)
        t = {impl: statistics.median(v) * 1e3 for impl, v in times.items()}
        buffer_mb = x.numel() * k * k * x.element_size() / 2**20
        if args.no_memory:
            mem = {impl: float("nan") for impl in IMPLS}
        else:
            a = argparse.Namespace(**{**vars(args), "k": k})
            mem = {impl: peak_mb(impl, a) for impl in IMPLS}
        print(f"{k:>2} {t['ours']:>9.1f} {t['unfold']:>10.1f} {t['unfold'] / t['ours']:>8.1f}x "
              f"{mem['ours']:>8.0f} {mem['unfold']:>10.0f} {mem['unfold'] / max(mem['ours'], 1):>8.1f}x "
              f"{buffer_mb:>17.0f}")


if __name__ == "__main__":
    main()
