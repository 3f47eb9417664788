"""Does bf16 autocast change training behaviour? Two runs from the same seed, fp32 and bf16, side by side.

    python benchmarks/precision.py [--model igan] [--preset cpu] [--steps 400] [--out runs/precision]
        [--data-root PATH] [--dataset celeba]

Trains both runs (reusing them when already complete), then prints, per window of steps, the mean critic
loss, generator loss, gradient penalty and EMD estimate of each, their differences, and the evaluations
(SWD / KID) at the same steps. bf16 runs are not bitwise equal to fp32 (rounding grows over steps, as between
two seeds); what matters is that the loss curves and metrics stay within the seed-to-seed spread.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_lib.config import PRESETS, make_config  # noqa: E402
from gan_lib.errors import report_user_errors  # noqa: E402
from gan_lib.run_dir import RunDir  # noqa: E402
from gan_lib.train import train  # noqa: E402

COLUMNS = ("loss_d", "loss_g", "gp", "emd")


def main(argv=None) -> int:
    return report_user_errors(lambda: compare(argv))  # a user's mistake: one line, as `python -m gan_lib`


def compare(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="igan")
    p.add_argument("--preset", default="cpu", choices=list(PRESETS))
    p.add_argument("--dataset", default="celeba")
    p.add_argument("--data-root", default=None)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--out", default="runs/precision")
    args = p.parse_args(argv)

    rows = {}
    for precision in ("fp32", "bf16"):
        cfg = make_config(args.preset, model=args.model, dataset=args.dataset, data_root=args.data_root,
                          steps=args.steps, precision=precision, eval_every=max(1, args.steps // 2),
                          sample_every=args.steps, ckpt_every=args.steps)
        path = Path(args.out) / f"{args.model}-{precision}"
        status = RunDir(path).read_status() if (path / "status.json").exists() else {}
        if status.get("state") != "completed" or status.get("steps") != args.steps:
            status = train(cfg, path, progress=True)
        run = RunDir(path)
        rows[precision] = (run.read_metrics(), run.read_evals(), status)

    print(f"{args.model}, {args.preset} preset, {args.steps} steps, same seed: mean per {args.window}-step window")
    print(f"{'steps':>11} " + " ".join(f"{c + ' fp32':>11} {c + ' bf16':>11}" for c in COLUMNS))
    (m32, e32, s32), (m16, e16, s16) = rows["fp32"], rows["bf16"]
    for start in range(0, args.steps, args.window):
        w32, w16 = m32[start: start + args.window], m16[start: start + args.window]
        if not w32 or not w16:
            break
        cells = []
        for c in COLUMNS:
            a = sum(float(r[c]) for r in w32) / len(w32)
            b = sum(float(r[c]) for r in w16) / len(w16)
            cells.append(f"{a:>11.4f} {b:>11.4f}")
        print(f"{start + 1:>5}-{start + len(w32):<5} " + " ".join(cells))
    for e_a, e_b in zip(e32, e16):
        keys = [k for k in e_a if k not in ("step", "eval_sec")]
        print(f"eval step {e_a['step']}: " + ", ".join(f"{k} fp32 {float(e_a[k]):.4g} / bf16 {float(e_b[k]):.4g}"
                                                        for k in keys))
    print(f"sec/step: fp32 {s32.get('sec_per_step') or float('nan'):.3f}, "
          f"bf16 {s16.get('sec_per_step') or float('nan'):.3f}")


if __name__ == "__main__":
    sys.exit(main())
