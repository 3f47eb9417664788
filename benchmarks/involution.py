"""Involution: ``gan_lib.layers.involution2d`` against the unfold formulation of the official RedNet code.

    python benchmarks/involution.py [--batch 64 --channels 64 --size 32 --groups 4] [--kernels 1 3 5 7]
        [--repeats 5] [--dtype float32|bfloat16] [--compiled] [--impls native upcast ...]

For each K, forward+backward (gradients for x and the kernel) of the implementations are timed side by side
in this one process, alternating: ours with the native backend (the default: C++ loops built on first use),
ours with the eager backend (PyTorch ops), ours with the torch.compile backend
(``--compiled``; compiled once per K before timing) and the unfold reference, and the median is printed with the ratio unfold / ours.
With ``--dtype bfloat16`` ours with the native backend also runs the way it ran before its kernels took bf16
(``upcast``: float32 copies in, float32 kernels, a bf16 copy out; bit-identical) and ``upcast/native`` is the
speed-up of the bf16 kernels over it. Peak memory is the
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

from gan_lib.layers import involution2d, involution2d_unfold, set_backend, set_bf16_path  # noqa: E402

# ours with each backend (gan_lib.layers.set_backend; "upcast": native with bf16 through float32 copies), the reference
IMPLS = ("native", "upcast", "eager", "compiled", "unfold")


def make_inputs(b, c, h, g, k, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, h, generator=gen).to(dtype).requires_grad_()
    kernel = torch.randn(b, g, k * k, h, h, generator=gen).to(dtype).requires_grad_()
    grad = torch.randn(b, c, h, h, generator=gen).to(dtype)
    return x, kernel, grad


def fwd_bwd(impl, x, kernel, grad, k):
    if impl == "unfold":
        out = involution2d_unfold(x, kernel, k)
    else:
        set_backend("native" if impl == "upcast" else impl)
        set_bf16_path("upcast" if impl == "upcast" else "native")
        out = involution2d(x, kernel, k)
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
bench.fwd_bwd({impl!r}, x, kernel, grad, a["k"])  # compiled: the compile is part of the first call's peak
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
    p.add_argument("--compiled", action="store_true", help="also time the torch.compile backend (compiles first)")
    p.add_argument("--impls", nargs="+", choices=IMPLS, help="time only these (the unfold reference still checks)")
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    print(f"involution fwd+bwd, B={args.batch} C={args.channels} {args.size}x{args.size} G={args.groups} "
          f"{args.dtype}, {torch.get_num_threads()} threads, median of {args.repeats}")
    impls = [i for i in (args.impls or IMPLS) if (i != "compiled" or args.compiled or args.impls)
             and (i != "upcast" or dtype == torch.bfloat16)]
    vs_unfold = [i for i in impls if i != "unfold" and "unfold" in impls]
    upcast = "upcast" in impls and "native" in impls
    header = (f"{'K':>2} " + " ".join(f"{i + ' ms':>11}" for i in impls) + " " +
              " ".join(f"{'x ' + i:>10}" for i in vs_unfold) + (f" {'upcast/native':>13}" if upcast else "") + " " +
              " ".join(f"{i + ' MB':>11}" for i in impls) + f" {'unfold buffer MB':>17}")
    print(header)
    print("-" * len(header))
    for k in args.kernels:
        x, kernel, grad = make_inputs(args.batch, args.channels, args.size, args.groups, k, dtype)
        ref = fwd_bwd("unfold", x, kernel, grad, k)
        tol = 1e-3 if dtype == torch.float32 else 5e-1
        for impl in impls:  # warm-up (and compile), and every implementation must agree with the reference
            got = fwd_bwd(impl, x, kernel, grad, k)
            assert all((a.float() - b.float()).abs().max() < tol * b.float().abs().max() for a, b in zip(got, ref))
        if upcast:  # the bf16 kernels and the upcast path agree bit for bit
            native, upcasted = fwd_bwd("native", x, kernel, grad, k), fwd_bwd("upcast", x, kernel, grad, k)
            assert all(torch.equal(a, b) for a, b in zip(native, upcasted))
        times = {impl: [] for impl in impls}
        for _ in range(args.repeats):
            for impl in impls:
                t0 = time.perf_counter()
                fwd_bwd(impl, x, kernel, grad, k)
                times[impl].append(time.perf_counter() - t0)
        t = {impl: statistics.median(v) * 1e3 for impl, v in times.items()}
        buffer_mb = x.numel() * k * k * x.element_size() / 2**20
        a = argparse.Namespace(**{**vars(args), "k": k})
        mem = {impl: float("nan") if args.no_memory else peak_mb(impl, a) for impl in impls}
        print(f"{k:>2} " + " ".join(f"{t[i]:>11.1f}" for i in impls) + " " +
              " ".join(f"{t['unfold'] / t[i]:>9.1f}x" for i in vs_unfold) +
              (f" {t['upcast'] / t['native']:>12.2f}x" if upcast else "") + " " +
              " ".join(f"{mem[i]:>11.0f}" for i in impls) + f" {buffer_mb:>17.0f}")
    set_backend("native")
    set_bf16_path("native")


if __name__ == "__main__":
    main()
