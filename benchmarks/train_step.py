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
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_lib.config import CHOICES, make_config, parse_overrides  # noqa: E402
from gan_lib.train import autocast, build_models, resolve_device, train_step  # noqa: E402

TARGET_SEC_PER_STEP = 0.43


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
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field (e.g. kernel_size=7)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = make_config("paper", model=args.model, precision=args.precision, batch_size=args.batch,
                      image_size=args.image_size, width=args.width, n_critic=args.n_critic, device=args.device,
                      channels_last=args.channels_last, compile=args.compile, **parse_overrides(args.overrides))
    device = resolve_device(cfg.device)
    torch.manual_seed(0)
    G, D = build_models(cfg, 3)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G.to(device, memory_format=fmt).train()
    D.to(device, memory_format=fmt).train()
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    G_fwd = torch.compile(G) if cfg.compile else G
    amp = autocast(device, cfg.precision)
    images = torch.randint(0, 256, (max(1024, cfg.batch_size), 3, cfg.image_size, cfg.image_size),
                           dtype=torch.uint8)
    gen_noise = torch.Generator(device).manual_seed(1)

    def next_batch():
        idx = torch.randint(0, len(images), (cfg.batch_size,))
        return (images[idx].float() / 127.5 - 1).to(device).contiguous(memory_format=fmt)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        stats = train_step(G_fwd, D, opt_g, opt_d, next_batch, gen_noise, cfg, amp)
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    loss_d, loss_g, gp, emd = stats.tolist()
    sec = statistics.median(times)
    params = sum(q.numel() for q in G.parameters()) + sum(q.numel() for q in D.parameters())
    print(f"model={cfg.model} precision={cfg.precision} device={device} threads={torch.get_num_threads()} "
          f"batch={cfg.batch_size} image_size={cfg.image_size} width={cfg.width} n_critic={cfg.n_critic} "
          f"channels_last={cfg.channels_last} compile={cfg.compile} params={params:,}")
    print(f"timed {len(times)} steps after {args.warmup} warm-up: median {sec:.4f} s, min {min(times):.4f} s, "
          f"max {max(times):.4f} s (last losses d={loss_d:.3f} g={loss_g:.3f} gp={gp:.3f})")
    print(f"ratio_to_target={sec / TARGET_SEC_PER_STEP:.3f} (target {TARGET_SEC_PER_STEP} s/step = the authors' "
          f"4.3 s/step / 10; <= 1 meets it)")
    print(f"sec_per_step={sec:.6f}")
    return sec


if __name__ == "__main__":
    main()
