"""Time full WGAN-GP training steps (n_critic critic steps + 1 generator step) at the paper's shape.

    python benchmarks/train_step.py --model igan [--precision fp32|bf16] [--steps 10] [--batch 64]
        [--image-size 64] [--width 64] [--n-critic 1] [--channels-last] [--compile] [--set key=value ...]

The step is `gan_lib.train.train_step`, the one the training loop runs (data comes from an in-memory
uint8 tensor, as in training). Prints the median over the timed steps; the LAST line is
``sec_per_step=<float>``. Target: 0.43 s/step on the 2-core CPU, 10x the authors' 4.3 s/step
(their iGAN, batch 64, 64x64, same kind of machine).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_lib.config import CHOICES, make_config, parse_overrides  # noqa: E402
from gan_lib.cost import time_train_steps  # noqa: E402

TARGET_SEC_PER_STEP = 0.43


MM = 2048


def step_flops(cfg) -> float:
    """FLOPs of one training step (critic steps + generator step), counted per aten op with torch's FLOP
    formulas (``torch.utils.flop_counter.flop_registry``: convolutions, matmuls, attention). FlopCounterMode
    itself cannot be used: its module hooks do not support the gradient penalty's ``autograd.grad``."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            count = flop_registry.get(func._overloadpacket)
            if count is not None:
                Counter.total += count(*args, **kwargs, out_val=out)
            return out

    from gan_lib.train import autocast, build_training, resolve_device, train_step

    device = resolve_device(cfg.device)
    G, D, opt_g, opt_d, fmt = build_training(cfg, 3, device)
    x = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    noise = torch.Generator(device).manual_seed(0)
    with Counter():
        train_step(G, D, opt_g, opt_d, lambda: x.contiguous(memory_format=fmt), noise, cfg,
                   autocast(device, cfg.precision))
    return float(Counter.total)


def matmul_flops_per_sec(cfg, device) -> float:
    """FLOP/s of a large square matmul in the step's precision on this device (the best dense-compute speed)."""
    import time

    from gan_lib.train import resolve_precision

    dtype = torch.bfloat16 if resolve_precision(cfg.precision, device) == "bf16" else torch.float32
    a = torch.randn(MM, MM, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * MM**3 / best


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="igan", choices=CHOICES["model"])
    p.add_argument("--precision", default="fp32", choices=CHOICES["precision"])
    p.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--n-critic", type=int, default=1)
    p.add_argument("--device", default="auto", choices=CHOICES["device"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the generator")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--no-floor", action="store_true", help="skip the FLOP count / matmul-speed floor")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field (e.g. kernel_size=7)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = make_config("paper", model=args.model, precision=args.precision, batch_size=args.batch,
                      image_size=args.image_size, width=args.width, n_critic=args.n_critic, device=args.device,
                      channels_last=args.channels_last, compile=args.compile, **parse_overrides(args.overrides))
    r = time_train_steps(cfg, steps=args.steps, warmup=args.warmup)
    times, sec, params, device = r["times"], r["sec_per_step"], r["params"], r["device"]
    loss_d, loss_g, gp, emd = r["last"]
    print(f"model={cfg.model} precision={cfg.precision} device={device} threads={torch.get_num_threads()} "
          f"batch={cfg.batch_size} image_size={cfg.image_size} width={cfg.width} n_critic={cfg.n_critic} "
          f"channels_last={cfg.channels_last} compile={cfg.compile} params={params:,}")
    print(f"timed {len(times)} steps after {args.warmup} warm-up: median {sec:.4f} s, min {min(times):.4f} s, "
          f"max {max(times):.4f} s (last losses d={loss_d:.3f} g={loss_g:.3f} gp={gp:.3f})")
    if not args.no_floor:
        flops, peak = step_flops(cfg), matmul_flops_per_sec(cfg, device)
        print(f"compute floor: one step is {flops / 1e9:.0f} GFLOP of conv/matmul (torch's FLOP formulas; the "
              f"involution and elementwise ops not counted); a {MM}x{MM} matmul runs at {peak / 1e9:.0f} GFLOP/s "
              f"here -> floor {flops / peak:.3f} s/step at matmul speed; measured step = "
              f"{flops / sec / 1e9:.0f} GFLOP/s ({flops / peak / sec:.0%} of matmul speed)")
    print(f"ratio_to_target={sec / TARGET_SEC_PER_STEP:.3f} (target {TARGET_SEC_PER_STEP} s/step = the authors' "
          f"4.3 s/step / 10; <= 1 meets it)")
    print(f"sec_per_step={sec:.6f}")
    return sec


if __name__ == "__main__":
    main()
