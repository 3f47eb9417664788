"""Memory and computation of a configuration (paper §4.4 "Memory & computation", Table 2's last columns).

* `step_cost`: seconds per full training step (``train.train_step``: ``n_critic`` critic steps + one
  generator step, as ``benchmarks/train_step.py`` times it) and peak resident memory, measured in a fresh
  subprocess so the peak (VmHWM on Linux) belongs to that configuration alone.
  Data are random uint8 images in memory (no dataset is loaded): the timing is the step, not the input.
* `param_counts`: parameters of G and D and of their inserted blocks (attention / involution).
* `involution_layer_params`: the true parameter count of the generator's involution layer (what eq. 4
  estimates).
* `cost_table`: all three for several configurations, one subprocess each, run one after another.

Run as ``python -m gan_lib.cost '<json>'`` (what `step_cost` does): prints one JSON line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from .config import TrainConfig


def _channels(cfg: TrainConfig) -> int:
    return 1 if cfg.dataset == "mnist" else 3


def param_counts(cfg: TrainConfig, channels: int | None = None) -> dict:
    """{params_G, params_D, params_block_G, params_block_D}: trainable parameters of the generator and the
    critic, and of the attention / involution blocks inside them (0 for DCGAN)."""
    from .layers import Involution2d, SelfAttention2d, count_parameters
    from .train import build_models

    G, D = build_models(cfg, channels or _channels(cfg))

    def blocks(m):
        return sum(count_parameters(b) for b in m.modules() if isinstance(b, (Involution2d, SelfAttention2d)))

    return dict(params_G=count_parameters(G), params_D=count_parameters(D), params_block_G=blocks(G),
                params_block_D=blocks(D))


def involution_layer_params(cfg: TrainConfig, width: int | None = None) -> int:
    """True trainable parameters of the generator's involution layer at C = ``width`` channels (default: the
    config's width; the layer before the generator's output layer). Built with the generator's block factory
    (`train.block_factories`), without the rest of the network. ValueError for a model without one."""
    from .layers import Involution2d, count_parameters
    from .train import block_factories

    if cfg.model != "igan":
        raise ValueError(f"model {cfg.model!r} has no involution layer")
    layer = block_factories(cfg)[0](width or cfg.width)
    assert isinstance(layer, Involution2d)
    return count_parameters(layer)


def step_cost(cfg: TrainConfig, steps: int = 5, warmup: int = 2, *, channels: int | None = None,
              threads: int | None = None, timeout: float | None = 600) -> dict:
    """Time ``steps`` full training steps (after ``warmup``) of ``cfg`` in a fresh subprocess.

    Returns {sec_per_step (median), sec_per_step_min, peak_rss_mb (the process's high-water mark: Python,
    torch, models, optimiser states and the step's activations), base_rss_mb (after imports, before the
    models), peak_gpu_mb (CUDA only), device, threads, timed_steps}. RuntimeError with the subprocess's output
    when it fails.
    """
    job = dict(config=cfg.to_dict(), steps=steps, warmup=warmup, channels=channels or _channels(cfg),
               threads=threads)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-m", "gan_lib.cost", json.dumps(job)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"step_cost({cfg.model}) failed with exit code {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def cost_table(configs: dict[str, TrainConfig], steps: int = 5, warmup: int = 2, threads: int | None = None,
               progress: bool = True) -> pd.DataFrame:
    """One row per label: label, model, sec_per_step, sec_per_step_min, peak_rss_mb, base_rss_mb, peak_gpu_mb
    (CUDA only), device, threads, timed_steps, params_G, params_D, params_block_G, params_block_D. Each configuration in its own subprocess, one after
    another, so the timings are side by side under the same load."""
    from tqdm.auto import tqdm

    rows = []
    for label, cfg in tqdm(configs.items(), desc="step cost", unit="config", disable=not progress):
        rows.append(dict(label=label, model=cfg.model, **step_cost(cfg, steps, warmup, threads=threads),
                         **param_counts(cfg)))
    return pd.DataFrame(rows)


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which exec resets (``ru_maxrss`` would report the
    parent's peak, inherited across fork + exec); elsewhere ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


class RandomImages:
    """The ``ImageDataset.batch`` interface over ``n`` random uint8 images in memory (timing: a batch costs the
    uint8 -> float conversion a real dataset's batch costs)."""

    def __init__(self, n: int, channels: int, size: int):
        import torch

        self.images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)

    def batch(self, idx):
        return self.images[idx].float() / 127.5 - 1


class BenchmarkRun:
    """``seeds`` seed-stacked copies of ``cfg`` (seeds cfg.seed, cfg.seed + 1, ...; `train.TrainState`) over
    `RandomImages`: what the step benchmarks time. ``data`` may be shared between runs; ``step()`` is one
    ``train.train_step`` and returns its (S, 4) stats."""

    def __init__(self, cfg: TrainConfig, seeds: int = 1, channels: int = 3, data: RandomImages | None = None):
        from .train import TrainState, autocast, resolve_device

        self.cfg, self.seeds = cfg, seeds
        self.device = resolve_device(cfg.device)
        n_images = max(256, cfg.batch_size)
        cfgs = [TrainConfig.from_dict({**cfg.to_dict(), "seed": cfg.seed + i}) for i in range(seeds)]
        self.state = TrainState(cfgs, channels, self.device, n_images)  # (a bad channel count fails here)
        self.data = RandomImages(n_images, channels, cfg.image_size) if data is None else data
        self.amp = autocast(self.device, cfg.precision)

    def next_batch(self):
        return self.state.next_batch(self.data)

    def step(self):
        from .train import train_step

        s = self.state
        return train_step(s.G_fwd, s.D, s.opt_g, s.opt_d, self.next_batch, s.noise(), self.cfg, self.amp)

    def sync(self) -> None:
        """Wait for the device (CUDA; a no-op elsewhere), so a step is timed to its end."""
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    @property
    def params(self) -> int:
        """Parameters of G + D of one seed."""
        s = self.state
        return (sum(p.numel() for p in s.G.parameters()) + sum(p.numel() for p in s.D.parameters())) // self.seeds


def time_train_steps(cfg: TrainConfig, steps: int = 5, warmup: int = 2, channels: int = 3, seeds: int = 1) -> dict:
    """Time ``steps`` full training steps (``train.train_step``) of ``cfg`` after ``warmup``, in this process,
    for ``seeds`` seed-stacked copies (`BenchmarkRun`; 1: a plain run).

    Data are random uint8 images in memory. Returns {times (seconds per timed step), sec_per_step (median),
    sec_per_step_min, last (loss_d, loss_g, gp, emd of the last step, first seed), params (G + D of one seed),
    device, seeds}."""
    import statistics
    import time

    run = BenchmarkRun(cfg, seeds, channels)
    times, stats = [], None
    for i in range(warmup + steps):
        run.sync()
        t0 = time.perf_counter()
        stats = run.step()
        run.sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return dict(times=times, sec_per_step=statistics.median(times), sec_per_step_min=min(times),
                last=stats[0].tolist(), params=run.params, device=run.device, seeds=seeds)


def _measure(job: dict) -> dict:
    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    base = peak_rss_mb()
    cfg = TrainConfig.from_dict(job["config"])
    r = time_train_steps(cfg, job["steps"], job["warmup"], job["channels"])
    out = dict(sec_per_step=r["sec_per_step"], sec_per_step_min=r["sec_per_step_min"], peak_rss_mb=peak_rss_mb(),
               base_rss_mb=base, device=str(r["device"]), threads=torch.get_num_threads(),
               timed_steps=len(r["times"]))
    if r["device"].type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


if __name__ == "__main__":
    print(json.dumps(_measure(json.loads(sys.argv[1]))), flush=True)
