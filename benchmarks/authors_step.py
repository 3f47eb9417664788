"""Time full training steps of the AUTHORS' iGAN (their code, vendored in benchmarks/authors/) at the paper's shape.

    python benchmarks/authors_step.py [--steps 10] [--warmup 3] [--batch 64] [--image-size 64] [--width 64]
        [--threads N] [--device auto|cpu|cuda] [--compare [--ours-precision auto] [--rounds 2]]

One step is one iteration of the training loop of their trainer.py (liminghao0914/involution_GAN @ f049f76,
MIT; `benchmarks/authors/step.py`): their Generator_INV / Discriminator_INV (igan_models.py, with their
unfold-based Involution2d and their SpectralNorm), WGAN-GP, one critic step (an Adam step on the Wasserstein
loss, then a second Adam step on the gradient penalty), one generator step, three ``.item()`` calls, in fp32
(their precision). Input: random images in [-1, 1] held in memory as CPU float batches, moved to the device
each step as their loop does with its DataLoader's batches. Timed like `benchmarks/train_step.py` (device
synchronised around each step; the median over the timed steps). Prints the shape, the machine (CPU model,
AMX) and, as its LAST line, ``sec_per_step=<float>``.

``--compare`` also times OUR step (`gan_lib.cost.time_train_steps`, the paper preset at the same shape,
precision ``--ours-precision``) in this process, alternating ``--rounds`` rounds of theirs and ours so that
load changes hit both, and prints ``speedup_vs_authors=<their s/step / ours>`` (issue 11 item 5's target:
>= 10) before the last line.

Their models build only at ``--image-size 64 --width 64``: Generator_INV and Discriminator_INV hard-code
``Involution2d(64, 64)`` and call their 64x64-only layer ``l4`` unconditionally (``--batch`` is free).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import operator
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gan_lib  # noqa: E402,F401  (before torch, as benchmarks/involution.py)
import torch  # noqa: E402

from gan_lib.config import CHOICES, make_config  # noqa: E402

AUTHORS = Path(__file__).resolve().parent / "authors"
SOURCE = "liminghao0914/involution_GAN@f049f76"
SPEEDUP_TARGET = 10.0
# modules their models build (so Adam is given their parameters) but their forward passes never call
UNUSED = ("G.inv2", "G.batchN2", "D.inv1", "D.inv4")


def cpu_model() -> str:
    """The CPU's model name and AMX / AVX512-BF16 flags (`benchmarks/train_step.py`'s)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_step import cpu_model as _cpu_model

    return _cpu_model()


def authors_module():
    """Their step module (benchmarks/authors/step.py; it imports their igan_models and spectral as top-level
    modules, as in their repository)."""
    if str(AUTHORS) not in sys.path:
        sys.path.insert(0, str(AUTHORS))
    import step

    return step


def build_authors(batch: int, image_size: int, width: int, device: torch.device, seed: int = 0):
    """Their Trainer (their build_model: models and Adam optimisers) over an in-memory loader of random images.
    Returns (trainer, loader)."""
    step = authors_module()
    step.DEVICE = device.type
    config = types.SimpleNamespace(**{**step.CONFIG, "batch_size": batch, "imsize": image_size,
                                      "g_conv_dim": width, "d_conv_dim": width})
    gen = torch.Generator().manual_seed(seed)
    n_images = max(256, batch)
    images = torch.rand(n_images, 3, image_size, image_size, generator=gen) * 2 - 1  # their Normalize(0.5, 0.5)
    labels = torch.zeros(n_images, dtype=torch.long)  # ImageFolder's labels (unused by the step)
    # a DataLoader's batches (CPU tensors, drop_last=True); their loop re-creates the iterator when it runs out
    loader = [(images[i:i + batch], labels[i:i + batch]) for i in range(0, n_images - batch + 1, batch)]
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # their build_model prints the case and both networks
        trainer = step.Trainer(loader, config)
    return trainer, loader


def time_authors_steps(batch: int, image_size: int, width: int, device: torch.device, steps: int, warmup: int,
                       seed: int = 0) -> dict:
    """Time ``steps`` of their training steps after ``warmup``. Returns {times, sec_per_step (median),
    last (lossd, lossg, gp), params (G + D, trainable)}."""
    trainer, loader = build_authors(batch, image_size, width, device, seed)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    data_iter, times, last = iter(loader), [], None
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        data_iter, *last = trainer.train_step(data_iter)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    params = sum(p.numel() for m in (trainer.G, trainer.D) for p in m.parameters() if p.requires_grad)
    unused = sum(p.numel() for m in UNUSED for p in operator.attrgetter(m)(trainer).parameters())
    return dict(times=times, sec_per_step=statistics.median(times), last=last, params=params, unused=unused)


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup), per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64, help="their models build only at 64")
    p.add_argument("--width", type=int, default=64, help="their conv_dim (g_conv_dim = d_conv_dim); only 64 builds")
    p.add_argument("--device", default="auto", choices=CHOICES["device"])
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--compare", action="store_true", help="also time ours, alternating rounds")
    p.add_argument("--ours-precision", default="auto", choices=CHOICES["precision"])
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of theirs / ours (--compare)")
    args = p.parse_args(argv)
    if (args.image_size, args.width) != (64, 64):
        p.error("the authors' models build only at --image-size 64 --width 64 (Generator_INV / Discriminator_INV "
                "hard-code Involution2d(64, 64) and always call their 64x64 layer l4)")
    if args.threads:
        torch.set_num_threads(args.threads)

    from gan_lib.train import resolve_device, resolve_precision

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # their main.py ("For fast training"); our training loop does too
    cfg = make_config("paper", model="igan", precision=args.ours_precision, batch_size=args.batch,
                      image_size=args.image_size, width=args.width, n_critic=1, device=args.device)
    theirs, ours, r = [], [], None
    for _ in range(args.rounds if args.compare else 1):
        r = time_authors_steps(args.batch, args.image_size, args.width, device, args.steps, args.warmup)
        theirs += r["times"]
        if args.compare:
            from gan_lib.cost import time_train_steps

            o = time_train_steps(cfg, steps=args.steps, warmup=args.warmup)
            ours += o["times"]
    sec = statistics.median(theirs)
    lossd, lossg, gp = r["last"]
    gpu = (f" gpu='{torch.cuda.get_device_name(device)}' cudnn_benchmark=True "
           f"cudnn_tf32={torch.backends.cudnn.allow_tf32} matmul_tf32={torch.backends.cuda.matmul.allow_tf32}"
           if device.type == "cuda" else "")
    print(f"model=authors-igan ({SOURCE}: igan_models.py case 1, trainer.py step) precision=fp32 device={device} "
          f"threads={torch.get_num_threads()} batch={args.batch} image_size={args.image_size} width={args.width} "
          f"n_critic=1 params={r['params']:,} ({r['unused']:,} of them in {', '.join(UNUSED)}, never called) "
          f"cpu={cpu_model()}{gpu}")
    print(f"authors: timed {len(theirs)} steps after {args.warmup} warm-up (per round): median {sec:.4f} s, "
          f"min {min(theirs):.4f} s, max {max(theirs):.4f} s (last losses d={lossd:.3f} g={lossg:.3f} gp={gp:.3f})")
    if args.compare:
        sec_ours = statistics.median(ours)
        print(f"ours: model=igan precision={resolve_precision(cfg.precision, device)} (asked {cfg.precision}) "
              f"params={o['params']:,}; timed {len(ours)} steps after {args.warmup} warm-up (per round), "
              f"{args.rounds} rounds alternating with the authors': median {sec_ours:.4f} s, min {min(ours):.4f} s, "
              f"max {max(ours):.4f} s")
        print(f"ours_sec_per_step={sec_ours:.6f}")
        print(f"speedup_vs_authors={sec / sec_ours:.4g} (authors' s/step / ours, same process and shape; "
              f"target >= {SPEEDUP_TARGET:g})")
    print(f"sec_per_step={sec:.6f}")
    return sec


if __name__ == "__main__":
    main()
