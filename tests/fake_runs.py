"""Hand-made run folders with known numbers, for the report and plot tests (no training)."""
from __future__ import annotations

from pathlib import Path

import torch

from gan_lib.config import make_config
from gan_lib.run_dir import RunDir

SLOW_ROWS_SEC = 9.0  # sec_per_step of the first rows (start-up), which report leaves out


def make_run(root: Path, label: str, seed: int, evals: list[float], *, state: str = "completed", steps: int = 20,
             step: int | None = None, reason: str | None = None, sec: float = 0.1, gp: float = 0.5,
             samples: tuple = (0, 10, 20), eval_every: int = 10, device: str = "cpu", precision: str = "fp32",
             **cfg) -> Path:
    """A run folder ``root/<label>-s<seed>``: ``steps`` metrics rows (the first 10 at SLOW_ROWS_SEC s/step, the
    rest at ``sec``), evaluations ``swd = evals[i]`` at steps eval_every, 2*eval_every, ..., sample grids at
    ``samples``, and status ``state`` at ``step`` (default ``steps``)."""
    path = Path(root) / f"{label}-s{seed}"
    run = RunDir(path).create()
    config = make_config("smoke", seed=seed, steps=steps, **cfg)
    run.save_config(config.to_dict())
    last = step if step is not None else steps
    run.append_metrics([dict(step=s, loss_d=1.0 / s, loss_g=-0.5, gp=gp * s, emd=2.0 / s, lr_g=1e-4, lr_d=4e-4,
                             sec_per_step=SLOW_ROWS_SEC if s <= 10 else sec) for s in range(1, last + 1)])
    for i, v in enumerate(evals):
        run.append_eval({"step": (i + 1) * eval_every, "swd": v, "swd_16": v / 2, "eval_sec": 0.1})
    g = torch.Generator().manual_seed(seed)
    for s in samples:
        if s <= last:
            run.save_samples(torch.rand(64, 3, 8, 8, generator=g) * 2 - 1, s)
    run.write_status(state=state, step=last, steps=steps, reason=reason, sec_per_step=sec, device=device,
                     precision=precision, best={"metric": "swd", "value": min(evals) if evals else None, "step": None})
    return path
