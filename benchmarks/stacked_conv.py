"""Per-layer: S seed copies of the networks' convolutions as S separate convs, one grouped conv (groups=S, what
`gan_lib.stacking` and vmap run; also in channels_last), a loop over channel slices, or im2col and ONE batched
matmul over the seeds (`bmm_conv`), forward + backward, side by side.

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


def bmm_conv(x: torch.Tensor, w: torch.Tensor, stack: int, stride: int, padding: int,
             transposed: bool = False) -> torch.Tensor:
    """S stacked convolutions as im2col + one ``torch.bmm`` over the seeds: equals ``conv2d(x, w, groups=S)``
    (``conv_transpose2d`` with ``transposed``).

    x: (B, S*C_in, H, W); w: (S*C_out, C_in, k, k) for a conv, (S*C_in, C_out, k, k) for a transposed one.
    A conv is ``W_s (C_out, C_in*k*k) @ unfold(x_s) (C_in*k*k, B*L)`` per seed; a transposed conv is
    ``fold(W_s^T (C_out*k*k, C_in) @ x_s (C_in, B*H*W))``.
    """
    B, SC, H, W = x.shape
    S, k, c_in = stack, w.shape[-1], SC // stack
    if not transposed:
        c_out = w.shape[0] // S
        cols = F.unfold(x, k, padding=padding, stride=stride)  # (B, S*C_in*k*k, L)
        L = cols.shape[-1]
        cols = cols.view(B, S, c_in * k * k, L).permute(1, 2, 0, 3).reshape(S, c_in * k * k, B * L)
        out = torch.bmm(w.reshape(S, c_out, c_in * k * k), cols)  # (S, C_out, B*L)
        h_out = (H + 2 * padding - k) // stride + 1
        return out.view(S, c_out, B, h_out, L // h_out).permute(2, 0, 1, 3, 4).reshape(B, S * c_out, h_out, L // h_out)
    c_out = w.shape[1]
    xs = x.view(B, S, c_in, H * W).permute(1, 2, 0, 3).reshape(S, c_in, B * H * W)
    wt = w.reshape(S, c_in, c_out * k * k).transpose(1, 2)  # (S, C_out*k*k, C_in)
    cols = torch.bmm(wt, xs).view(S, c_out * k * k, B, H * W).permute(2, 0, 1, 3).reshape(B, S * c_out * k * k, H * W)
    size = ((H - 1) * stride - 2 * padding + k, (W - 1) * stride - 2 * padding + k)
    return F.fold(cols, size, k, padding=padding, stride=stride)


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

        def bmm():
            if transposed:
                bmm_conv(x, w, S, 2, 1, transposed=True).sum().backward()
            else:
                bmm_conv(x, w, S, stride, pad).sum().backward()

        def sliced():
            ys = [op(x[:, i * ci:(i + 1) * ci], w[i * rows:(i + 1) * rows], 1) for i in range(S)]
            torch.cat(ys, 1).sum().backward()

        t = {f.__name__: median_time(f) for f in (separate, grouped, grouped_channels_last, sliced, bmm)}
        ratios = " ".join(f"{k} {t['separate'] / v:.2f}x" for k, v in t.items() if k != "separate")
        print(f"{name} {ci}->{co} @{hw}x{hw}: separate {t['separate'] * 1e3:.1f} ms; {ratios}", flush=True)


if __name__ == "__main__":
    main()
