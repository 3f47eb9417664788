"""Per-layer: S seed copies of the networks' convolutions as S separate convs, one grouped conv (groups=S, what
`gan_lib.stacking` and vmap run), or a loop over channel slices, forward + backward, side by side.

    python benchmarks/stacked_conv.py [--seeds 4] [--precision fp32|bf16] [--batch 64] [--width 32] [--threads 1]

One line per layer of the cpu-shape iGAN (32x32, width 32): time of S separate convs and the ratio of each
stacked form to it (> 1: the stacked form is faster). Measured to choose where stacking pays (see
`study.stack_default`): on a 2-core Zen 4 EPYC the grouped conv ran at 0.5-1.1x of separate convs, in
channels_last at 0.9-2.2x (the gains on the smallest layers), while a whole stacked step gained at most 1.01x
(`results/cpu/benchmarks/stacked_conv_epyc.log`, `stacking_epyc.log`); on a GPU one launch replaces S.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def median_time(fn, n: int = 5) -> float:
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[n // 2]


def layers(width: int):
    """(name, c_in, c_out, size, transposed) of the cpu-shape generator and critic convolutions."""
    w = width
    return [("critic conv", 3, w, 32, False), ("critic conv", w, 2 * w, 16, False),
            ("critic conv", 2 * w, 4 * w, 8, False), ("critic out", 4 * w, 1, 4, False),
            ("gen convT", 4 * w, 2 * w, 4, True), ("gen convT", 2 * w, w, 8, True), ("gen out", w, 3, 16, True)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    S, B, dt = args.seeds, args.batch, torch.bfloat16 if args.precision == "bf16" else torch.float32
    print(f"seeds={S} precision={args.precision} batch={B} threads={args.threads}")
    for name, ci, co, hw, transposed in layers(args.width):
        if transposed:
            w = torch.randn(S * ci, co, 4, 4, dtype=dt, requires_grad=True)
            op = lambda x, w, g: F.conv_transpose2d(x, w, stride=2, padding=1, groups=g)  # noqa: E731
        else:
            stride, pad = (1, 0) if co == 1 else (2, 1)
            w = torch.randn(S * co, ci, 4, 4, dtype=dt, requires_grad=True)
            op = lambda x, w, g, s=stride, p=pad: F.conv2d(x, w, stride=s, padding=p, groups=g)  # noqa: E731
        x = torch.randn(B, S * ci, hw, hw, dtype=dt, requires_grad=True)
        rows = w.shape[0] // S
        xs = [x[:, i * ci:(i + 1) * ci].detach().clone().requires_grad_() for i in range(S)]
        ws = [w[i * rows:(i + 1) * rows].detach().clone().requires_grad_() for i in range(S)]
        xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()

        def separate():
            for a, b in zip(xs, ws):
                op(a, b, 1).sum().backward()

        def grouped():
            op(x, w, S).sum().backward()

        def grouped_channels_last():
            op(xc, w, S).sum().backward()

        def sliced():
            ys = [op(x[:, i * ci:(i + 1) * ci], w[i * rows:(i + 1) * rows], 1) for i in range(S)]
            torch.cat(ys, 1).sum().backward()

        t = {f.__name__: median_time(f) for f in (separate, grouped, grouped_channels_last, sliced)}
        ratios = " ".join(f"{k} {t['separate'] / v:.2f}x" for k, v in t.items() if k != "separate")
        print(f"{name} {ci}->{co} @{hw}x{hw}: separate {t['separate'] * 1e3:.1f} ms; {ratios}", flush=True)


if __name__ == "__main__":
    main()
