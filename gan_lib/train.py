"""WGAN-GP (Gulrajani et al. 2017) with TTUR (Heusel et al. 2017): the paper's training loop.

One generator step = ``n_critic`` critic steps + one generator step.

* critic step: ``loss_d = E[D(fake)] - E[D(real)] + lambda * E[(||grad_x D(x_hat)||_2 - 1)^2]`` with
  ``x_hat = eps * real + (1 - eps) * fake``, eps ~ U(0, 1) per sample; the penalty's gradient is built with
  ``create_graph=True`` so the whole loss takes ONE backward. The generator runs under ``no_grad`` here.
* generator step: ``loss_g = -E[D(G(z))]`` (the critic's parameters are frozen meanwhile).
* TTUR = the two learning rates (Table 1); both decay by ``lr_decay`` every ``lr_decay_every`` steps.

The critic scores real, fake and interpolated batches in three separate forward passes. With BatchNorm in
the critic (the involution's sigma, ``critic_sigma_norm="batch"``) each batch is then normalised with its
own statistics, as in the usual WGAN-GP code; a single concatenated pass would mix real and fake statistics
and make every score depend on the other batch. (Strictly, batch statistics make the per-sample gradient
penalty inexact - Gulrajani et al. recommend layer norm, ``critic_sigma_norm="layer"``.)

Randomness: batch order (a permutation per epoch) comes from one ``torch.Generator`` and z / eps from
another; both, the global RNG, model/optimizer/scheduler states and the data position are checkpointed, so
a resumed run continues exactly (bitwise on the CPU with ``deterministic=True``). Evaluations run under a
forked RNG with their own fixed z, so they never perturb training.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from .config import RESUMABLE_FIELDS, ConfigError, TrainConfig
from .data.fingerprint import check_same_data, data_fingerprint
from .run_dir import RunDir
from .stacking import (stack_images, stack_optimizer_states, stack_states, unstack_images,
                       unstack_optimizer_state, unstack_state)

NUM_SAMPLES_GRID = 64  # images in each samples/step_XXXXXX.png (8 x 8)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but no CUDA device is available: use --device auto or cpu "
                          "(device= in a config)")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmul/conv in hardware: a CUDA GPU with bf16, or a CPU with AMX or
    AVX512-BF16. Elsewhere (e.g. an AVX2-only CPU) bf16 is emulated: measured 11x *slower* than fp32 for a
    cpu-preset iGAN step on a 2-core AVX2 AMD EPYC (2.55 vs 0.23 s/step; ``benchmarks/train_step.py
    --image-size 32 --width 32 --precision bf16``)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run uses: ``"auto"`` is bf16 where `native_bf16`, else fp32. An explicit bf16 on a
    device without native bf16 is kept (it is what was asked) with a warning that it will be slow."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        warnings.warn(f"precision=bf16 on {device.type} without native bf16 (no AMX / AVX512-BF16): autocast "
                      "emulates it and is several times slower than fp32; use precision=auto or fp32")
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU (AMX / AVX512-BF16) or CUDA; a no-op context for fp32 (``"auto"``: see
    `resolve_precision`)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def block_factories(cfg: TrainConfig):
    """The generator's and the critic's block factories for ``cfg`` (`networks.make_block`): the same involution
    settings, the critic's with ``cfg.critic_sigma_norm`` inside its kernel branch (the generator's: batch)."""
    from .networks import make_block

    settings = dict(kernel_size=cfg.kernel_size, groups=cfg.groups, reduction_ratio=cfg.reduction_ratio,
                    kernel_norm=cfg.kernel_norm, kernel_clip=cfg.kernel_clip)
    return make_block(cfg.model, **settings), make_block(cfg.model, sigma_norm=cfg.critic_sigma_norm, **settings)


def build_models(cfg: TrainConfig, channels: int = 3, stack: int = 1):
    """The paper's generator and critic for ``cfg`` (on the CPU, in train mode); ``stack`` seed-stacked copies."""
    from .networks import Critic, Generator

    block_g, block_d = block_factories(cfg)
    common = dict(image_size=cfg.image_size, channels=channels, width=cfg.width, num_blocks=cfg.num_blocks,
                  stack=stack)
    return Generator(z_dim=cfg.z_dim, block=block_g, **common), Critic(block=block_d, **common)


def param_dtype(precision: str) -> torch.dtype:
    """The parameters' dtype: float64 for ``precision="fp64"`` (exactness tests), else float32 (bf16 = autocast)."""
    return torch.float64 if precision == "fp64" else torch.float32


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, amp) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake, differentiable (double backward).

    real, fake: (B, S*C, H, W) for S seed-stacked critics (S=1: a plain batch); eps: broadcastable to them.
    Returns (S,): each copy's penalty, its gradient norm taken over its own C channels.
    """
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    with amp:
        score = critic(x_hat)
    acc = _acc_dtype(real)
    (grad,) = torch.autograd.grad(score.to(acc).sum(), x_hat, create_graph=True)
    b = real.shape[0]
    stack = score.numel() // b
    return (grad.to(acc).reshape(b, stack, -1).norm(2, dim=2) - 1).pow(2).mean(0)


def _acc_dtype(t: torch.Tensor) -> torch.dtype:
    """Losses are computed in float32 (float64 for an fp64 run), whatever autocast ran the layers in."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class SeedNoise:
    """z and eps for S stacked seeds, each seed from its own ``torch.Generator`` in the single-run order (z then
    eps for each critic step, z for the generator step), so seed s draws exactly what it draws training alone."""

    def __init__(self, generators: list, z_dim: int, dtype: torch.dtype = torch.float32):
        self.generators, self.z_dim, self.dtype = list(generators), z_dim, dtype

    @classmethod
    def of(cls, noise, z_dim: int, dtype: torch.dtype) -> "SeedNoise":
        """``noise`` itself, or for one ``torch.Generator`` the one-seed `SeedNoise` over it."""
        return cls([noise], z_dim, dtype) if isinstance(noise, torch.Generator) else noise

    def z(self, batch: int, device) -> torch.Tensor:
        """(B, S*z_dim)."""
        zs = [torch.randn(batch, self.z_dim, device=device, generator=g, dtype=self.dtype) for g in self.generators]
        return zs[0] if len(zs) == 1 else torch.cat(zs, dim=1)

    def eps(self, batch: int, channels: int, device) -> torch.Tensor:
        """(B, S*C, 1, 1): one interpolation weight per sample and seed, repeated over the seed's C channels."""
        es = [torch.rand(batch, 1, 1, 1, device=device, generator=g, dtype=self.dtype) for g in self.generators]
        if len(es) == 1:
            return es[0]
        return torch.cat([e.expand(batch, channels, 1, 1) for e in es], dim=1)


def train_step(G, D, opt_g, opt_d, next_batch, noise, cfg: TrainConfig, amp) -> torch.Tensor:
    """One generator step of S stacked seeds: ``cfg.n_critic`` critic steps then one generator step.

    ``next_batch()`` gives real images on the device, (B, S*C, H, W); ``noise`` is a `SeedNoise` (or, for one
    seed, a ``torch.Generator``). Each seed's losses are means over its own batch; the backward pass runs on their
    sum, which gives every seed exactly its own gradient (the copies share no parameter). Returns the detached
    (S, 4) tensor ``[loss_d, loss_g, gp, emd]`` per seed (critic values averaged over the critic steps).
    """
    B = cfg.batch_size
    device = next(D.parameters()).device
    noise = SeedNoise.of(noise, cfg.z_dim, next(D.parameters()).dtype)
    S = len(noise.generators)
    stats = None
    # critic steps: the generator runs without a graph
    D.requires_grad_(True)
    for _ in range(cfg.n_critic):
        real = next_batch()
        acc = _acc_dtype(real)
        z = noise.z(B, device)
        eps = noise.eps(B, real.shape[1] // S, device)
        # One autocast context for the critic step's forward passes: its cast cache casts each weight to bf16
        # once per step instead of once per pass (weights change only at opt.step, after the context exits).
        with amp:
            with torch.no_grad():
                fake = G(z).to(acc)
            d_real = D(real).to(acc).reshape(B, S).mean(0)  # real, fake and x_hat in separate passes (see the
            d_fake = D(fake).to(acc).reshape(B, S).mean(0)  # module docstring)
            # already inside amp, and one torch.autocast object must not be entered twice (its exit would
            # restore the wrong state and leave autocast on for everything after the step)
            gp = gradient_penalty(D, real, fake, eps, nullcontext())
        loss_d = d_fake - d_real + cfg.gp_lambda * gp
        opt_d.zero_grad(set_to_none=True)
        loss_d.sum().backward()  # one backward, through the penalty's gradient too
        opt_d.step()
        row = torch.stack([loss_d.detach(), torch.zeros_like(gp), gp.detach(), (d_real - d_fake).detach()], dim=1)
        stats = row if stats is None else stats + row
    stats /= cfg.n_critic
    # generator step: the critic's parameters are frozen (no weight gradients computed for them)
    D.requires_grad_(False)
    z = noise.z(B, device)
    with amp:
        loss_g = -D(G(z)).to(stats.dtype).reshape(B, S).mean(0)
    opt_g.zero_grad(set_to_none=True)
    loss_g.sum().backward()
    opt_g.step()
    stats[:, 1] = loss_g.detach()
    return stats


class DivergenceMonitor:
    """One seed's divergence rule (paper §5.3): a non-finite loss, or the gradient penalty above ``threshold``
    for ``window`` consecutive steps. `check(rows)` returns ``(reason, step)`` of the first divergence or None."""

    def __init__(self, threshold: float, window: int):
        self.threshold, self.window, self.streak = threshold, window, 0

    def check(self, rows: list[dict]):
        found = None
        for row in rows:
            bad = [k for k in ("loss_d", "loss_g", "gp", "emd") if not math.isfinite(row[k])]
            if bad and found is None:
                found = (f"non-finite {', '.join(bad)} at step {row['step']}", row["step"])
            self.streak = self.streak + 1 if row["gp"] > self.threshold else 0
            if found is None and self.streak >= self.window:
                found = (f"gradient penalty above {self.threshold} for {self.streak} consecutive steps "
                         f"(step {row['step']})", row["step"])
        return found

    def state_dict(self) -> dict:
        return {"gp_streak": self.streak}

    def load_state_dict(self, state: dict) -> None:
        self.streak = int(state["gp_streak"])


class SeedStreams:
    """One seed's own randomness and bookkeeping: batch order, z/eps generator, the fixed z of its sample grids,
    its best evaluation and its `DivergenceMonitor`. Seeds: order ``seed``, z/eps ``seed+1``, grid ``seed+2``,
    evaluations ``seed+3``; model init ``torch.manual_seed(seed)`` (in `TrainState`)."""

    def __init__(self, cfg: TrainConfig, n_images: int, device: torch.device, torch_rng: torch.Tensor):
        self.seed = cfg.seed
        self.gen_data = torch.Generator().manual_seed(cfg.seed)
        self.gen_noise = torch.Generator(device).manual_seed(cfg.seed + 1)
        self.fixed_z = torch.randn(NUM_SAMPLES_GRID, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 2))
        self.order = {"perm": torch.randperm(n_images, generator=self.gen_data), "pos": 0}
        self.best = {"metric": None, "value": None, "step": None}
        self.monitor = DivergenceMonitor(cfg.gp_explode_threshold, cfg.gp_explode_window)
        self.torch_rng = torch_rng  # the global RNG after this seed's models were built (kept in its checkpoint)
        self.n_images = n_images

    def next_indices(self, batch: int) -> torch.Tensor:
        if self.order["pos"] + batch > self.n_images:
            self.order["perm"], self.order["pos"] = torch.randperm(self.n_images, generator=self.gen_data), 0
        idx = self.order["perm"][self.order["pos"]: self.order["pos"] + batch]
        self.order["pos"] += batch
        return idx

    def state_dict(self, device: torch.device) -> dict:
        return {"rng": {"torch": self.torch_rng, "data": self.gen_data.get_state(), "noise": self.gen_noise.get_state(),
                        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                        "device_type": device.type},
                "data_order": self.order, "gp_streak": self.monitor.streak, "best": self.best}

    def load_state_dict(self, ck: dict, device: torch.device, step: int) -> None:
        self.order, self.best = ck["data_order"], ck["best"]
        self.monitor.load_state_dict(ck)
        self.torch_rng = ck["rng"]["torch"].cpu()
        self.gen_data.set_state(ck["rng"]["data"].cpu())
        if ck["rng"].get("device_type") == device.type:
            self.gen_noise.set_state(ck["rng"]["noise"].cpu())
        else:
            warnings.warn(f"resuming on {device.type} a run checkpointed on {ck['rng'].get('device_type')}: "
                          "the z/eps stream is reseeded, so the run is not bitwise identical")
            self.gen_noise.manual_seed(self.seed + 1 + step)


class TrainState:
    """Everything S seeds of one configuration train and checkpoint, as ONE stacked model (`gan_lib.stacking`):
    the generator and critic (``stack=S``; for S=1 the plain networks), their Adam optimizers and lr schedules,
    the step, and one `SeedStreams` per seed.

    `seed_state_dicts()` are the seeds' checkpoints in the single-run layout (what ``checkpoints/last.pt`` holds);
    built with ``checkpoints`` (one per seed, all at the same step) it resumes from them, building the networks
    once (`load_seed_state_dicts`); `drop(i)` takes a seed out of the stack (it diverged) and the others go on
    unchanged.
    """

    def __init__(self, cfgs: list[TrainConfig], channels: int, device: torch.device, n_images: int,
                 checkpoints: list[dict] | None = None):
        self.cfgs, self.channels, self.device = list(cfgs), channels, device
        self.fmt = torch.channels_last if cfgs[0].channels_last else torch.contiguous_format
        self.dtype = param_dtype(cfgs[0].precision)
        self.step = 0
        if checkpoints is not None:  # the init is overwritten: no single-seed networks to build
            self.seeds = [SeedStreams(cfg, n_images, device, torch.get_rng_state()) for cfg in self.cfgs]
            self.load_seed_state_dicts(checkpoints)
            return
        singles, self.seeds = [], []
        for cfg in self.cfgs:  # each seed's init exactly as a single run draws it
            torch.manual_seed(cfg.seed)
            singles.append(build_models(cfg, channels))
            self.seeds.append(SeedStreams(cfg, n_images, device, torch.get_rng_state()))
        self._build([g.state_dict() for g, _ in singles], [d.state_dict() for _, d in singles],
                    singles[0] if len(singles) == 1 else None)

    @property
    def stack(self) -> int:
        return len(self.seeds)

    def _build(self, g_states, d_states, models=None, opt_states=None, sched_states=None) -> None:
        cfg, S = self.cfgs[0], len(g_states)
        if models is None:  # in the run's dtype BEFORE loading: load_state_dict copies into the existing tensors
            G, D = (m.to(dtype=self.dtype) for m in build_models(cfg, self.channels, stack=S))
            G.load_state_dict(stack_states(g_states))
            D.load_state_dict(stack_states(d_states))
        else:
            G, D = models
        self.G = G.to(self.device, dtype=self.dtype, memory_format=self.fmt).train()
        self.D = D.to(self.device, dtype=self.dtype, memory_format=self.fmt).train()
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        if opt_states is not None:
            self.opt_g.load_state_dict(stack_optimizer_states(opt_states[0]))
            self.opt_d.load_state_dict(stack_optimizer_states(opt_states[1]))
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
        if sched_states is not None:
            self.sched_g.load_state_dict(sched_states[0])
            self.sched_d.load_state_dict(sched_states[1])
        self.G_fwd = torch.compile(self.G) if cfg.compile else self.G  # the critic needs double backward

    def noise(self) -> SeedNoise:
        return SeedNoise([s.gen_noise for s in self.seeds], self.cfgs[0].z_dim, self.dtype)

    def _unstacked(self, positions):
        S = self.stack
        return (unstack_state(self.G.state_dict(), S, positions), unstack_state(self.D.state_dict(), S, positions),
                unstack_optimizer_state(self.opt_g.state_dict(), S, positions),
                unstack_optimizer_state(self.opt_d.state_dict(), S, positions))

    def seed_state_dicts(self, positions=None) -> list[dict]:
        """The checkpoints, in the single-run layout, of every seed or of the stack positions ``positions``."""
        positions = list(range(self.stack)) if positions is None else list(positions)
        gs, ds, ogs, ods = self._unstacked(positions)
        return [{"step": self.step, "config": self.cfgs[pos].to_dict(), "channels": self.channels,
                 "generator": g, "critic": d, "opt_g": og, "opt_d": od,
                 "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
                 **self.seeds[pos].state_dict(self.device)}
                for pos, g, d, og, od in zip(positions, gs, ds, ogs, ods)]

    def load_seed_state_dicts(self, cks: list[dict]) -> None:
        """Resume every seed from its checkpoint (all at the same step)."""
        steps = {ck["step"] for ck in cks}
        if len(steps) != 1:
            raise ValueError(f"stacked seeds must resume from the same step, got {sorted(steps)}")
        self.step = steps.pop()
        self._build([ck["generator"] for ck in cks], [ck["critic"] for ck in cks],
                    opt_states=([ck["opt_g"] for ck in cks], [ck["opt_d"] for ck in cks]),
                    sched_states=(cks[0]["sched_g"], cks[0]["sched_d"]))
        for seed, ck in zip(self.seeds, cks):
            seed.load_state_dict(ck, self.device, self.step)
        if self.device.type == "cuda" and cks[0]["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all([s.cpu() for s in cks[0]["rng"]["cuda"]])

    def finite(self) -> list[bool]:
        """Per seed: are all its parameters finite?"""
        S = self.stack
        ok = torch.ones(S, dtype=torch.bool, device=self.device)
        for p in list(self.G.parameters()) + list(self.D.parameters()):
            ok &= torch.isfinite(p.detach().reshape(S, -1)).all(1)
        return ok.tolist()

    def drop(self, index: int) -> None:
        """Take seed ``index`` out of the stack; the others keep their parameters, optimizer and streams."""
        keep = [i for i in range(self.stack) if i != index]
        gs, ds, ogs, ods = self._unstacked(keep)
        sched = (self.sched_g.state_dict(), self.sched_d.state_dict())
        self.cfgs = [self.cfgs[i] for i in keep]
        self.seeds = [self.seeds[i] for i in keep]
        if keep:
            self._build(gs, ds, opt_states=(ogs, ods), sched_states=sched)

    def next_batch(self, dataset) -> torch.Tensor:
        """Each seed's next batch from its own order, side by side: (B, S*C, H, W) on the device."""
        B = self.cfgs[0].batch_size
        x = stack_images([dataset.batch(s.next_indices(B)) for s in self.seeds])
        return x.to(self.device, dtype=self.dtype, non_blocking=True).contiguous(memory_format=self.fmt)

    def generate(self, zs: list[torch.Tensor], amp) -> list[torch.Tensor]:
        """Images of each seed's generator (eval mode) for its z (n, z_dim): a list of (n, C, H, W) float32."""
        self.G.eval()
        with torch.no_grad(), amp:
            z = torch.cat([z.to(self.device, self.dtype) for z in zs], dim=1)
            out = unstack_images(self.G_fwd(z).float(), self.stack)
        self.G.train()
        return list(out)


class _StackedSampler:
    """`evaluate`'s ``generate(n)`` for each stacked seed: the first seed to ask for n images runs the stacked
    generator once for every seed (z from each seed's evaluation generator, in chunks of 256 as a single run
    draws them) and the other seeds' images wait in their queues until their own evaluation asks."""

    def __init__(self, state: TrainState, amp):
        self.state, self.amp = state, amp
        self.gens = [torch.Generator(state.device).manual_seed(c.seed + 3) for c in state.cfgs]  # same z every eval
        self.queues = [[] for _ in state.cfgs]

    def generate(self, index: int, n: int) -> torch.Tensor:
        if not self.queues[index]:
            chunks = []
            for i in range(0, n, 256):
                m = min(256, n - i)
                zs = [torch.randn(m, self.state.cfgs[0].z_dim, device=self.state.device, generator=g,
                                  dtype=self.state.dtype) for g in self.gens]
                chunks.append([x.clamp_(-1, 1).cpu() for x in self.state.generate(zs, self.amp)])
            for q, parts in zip(self.queues, zip(*chunks)):
                q.append(torch.cat(parts))
        out = self.queues[index].pop(0)
        if out.shape[0] != n:
            raise RuntimeError(f"stacked evaluation: seed {index} asked for {n} images, {out.shape[0]} generated")
        return out


def config_differences(saved: dict, cfg: TrainConfig, ignore=()) -> dict:
    """{key: (saved value, cfg value)} for every field that differs between a run's config.json and ``cfg``
    (tuples and JSON lists compare equal), leaving out the keys in ``ignore``."""
    new = cfg.to_dict()
    return {k: (saved.get(k), new.get(k)) for k in set(saved) | set(new)
            if k not in ignore and _norm(saved.get(k)) != _norm(new.get(k))}


def check_resume_config(saved: dict, cfg: TrainConfig) -> None:
    """A resumed run must keep its config, except ``RESUMABLE_FIELDS`` (steps, intervals, device, ...)."""
    diff = config_differences(saved, cfg, ignore=RESUMABLE_FIELDS)
    if diff:
        lines = ", ".join(f"{k}: run has {a!r}, asked {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(f"cannot resume: config differs from the run's config.json ({lines}); only "
                          f"{list(RESUMABLE_FIELDS)} may change. Use a new --out folder for a new run.")


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _pick_metric(result: dict, name: str):
    """The value of metric ``name`` in an evaluate() result (exact key, else the first key starting with it)."""
    if name in result:
        return name, result[name]
    for k in sorted(result):
        if k.startswith(name):
            return k, result[k]
    return None, None


class _DeferredInterrupt:
    """First Ctrl-C or SIGTERM (what schedulers, Ray and ``kill`` send): finish the current step, then raise
    KeyboardInterrupt (a clean checkpoint). A second one: now."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        name = signal.Signals(signum).name
        print(f"\n{name}: stopping after this step (send it again to stop now)", flush=True)

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def load_data(cfg: TrainConfig, progress: bool = False):
    """The config's dataset (uint8 in memory; decoded once, then read from the gan_lib cache)."""
    from .data import load_dataset

    return load_dataset(cfg.dataset, root=cfg.data_root, image_size=cfg.image_size, split=cfg.split,
                        max_images=cfg.max_images, seed=0, progress=progress)  # one fixed synthetic set for every run


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _where() -> dict:
    """Who runs the training: the executor (``GAN_LIB_EXECUTOR``, set by the Ray runner) and the node."""
    where = {"executor": os.environ.get("GAN_LIB_EXECUTOR", "local"),
             "node": os.environ.get("GAN_LIB_NODE") or socket.gethostname()}
    if os.environ.get("GAN_LIB_RAY_NODE_ID"):
        where["ray_node_id"] = os.environ["GAN_LIB_RAY_NODE_ID"]
    return where


def train(cfg: TrainConfig, run_dir: str | Path, *, dataset=None, progress: bool = False, callback=None,
          restart: bool = False) -> dict:
    """Train (or resume, when ``run_dir`` has checkpoints/last.pt) one run; return its final status dict.

    ``dataset``: a loaded ``ImageDataset`` to reuse (else ``load_dataset`` from the config).
    ``callback(step, row)``: called for every metrics.csv row once written (tests raise from it).
    A KeyboardInterrupt (Ctrl-C, SIGTERM or from ``callback``) saves a checkpoint, marks the run ``interrupted``
    and is re-raised. Divergence stops the run with state ``diverged`` (no exception).
    """
    return train_seeds([cfg], [run_dir], dataset=dataset, progress=progress, callback=callback, restart=restart)[0]


def train_seeds(cfgs: list[TrainConfig], run_dirs: list, *, dataset=None, progress: bool = False, callback=None,
                restart: bool = False) -> list[dict]:
    """Train the seeds of ONE configuration as one stacked model (`TrainState`); each seed writes its own
    complete run folder (config.json with its seed, data.json, metrics.csv, evals.csv, samples, checkpoints,
    status.json), exactly as `train` would alone. Returns one final status per seed.

    ``cfgs`` must differ only in ``seed``. Every folder is claimed first (its lock, held for the whole run: a
    second writer gets `RunLocked`; ``restart`` moves an old run aside), then checked: a folder holding a run but
    no checkpoint is refused (`RunExists`), a resumed run must keep its config and its data (`DataMismatch`),
    all before any file is written. Seeds resume from their own checkpoints; seeds whose checkpoints are at
    different steps train as separate stacks, one after another. A seed that diverges stops alone (its folder
    keeps its last good checkpoint; status ``diverged``) and the others go on. ``callback(step, row)`` gets each
    seed's rows (``row["seed"]`` says whose).
    """
    if len(cfgs) != len(run_dirs) or not cfgs:
        raise ConfigError(f"train_seeds needs one run folder per config, got {len(cfgs)} configs, {len(run_dirs)} folders")
    cfgs = [TrainConfig.from_dict(c.to_dict()) for c in cfgs]  # validated private copies
    for c in cfgs[1:]:
        diff = config_differences(cfgs[0].to_dict(), c, ignore=("seed",))
        if diff:
            raise ConfigError(f"stacked seeds must share their config except the seed; they differ in {sorted(diff)}")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"stacked seeds must be distinct, got {seeds}")
    runs = [RunDir(p).check_path() for p in run_dirs]
    if len({r.path.resolve() for r in runs}) != len(runs):
        raise ConfigError("stacked seeds need one run folder each; two of them are the same folder")
    device = resolve_device(cfgs[0].device)

    with contextlib.ExitStack() as claims:
        for run in runs:  # held until every seed has ended, however it ends
            claims.enter_context(run.claim(restart=restart))
        resume_steps, checkpoints = [], []
        for cfg, run in zip(cfgs, runs):
            same = lambda saved, cfg=cfg: not config_differences(saved, cfg, ignore=RESUMABLE_FIELDS)  # noqa: E731
            if run.check_can_start(same) == "resume":
                if run.config_path.exists():
                    check_resume_config(run.load_config(), cfg)
                checkpoints.append(run.load_checkpoint("last", map_location="cpu"))  # verified, read once
                resume_steps.append(checkpoints[-1]["step"])
            else:
                checkpoints.append(None)
                resume_steps.append(None)
        if dataset is None:
            dataset = load_data(cfgs[0], progress)
        fingerprint = data_fingerprint(dataset)
        for run, start in zip(runs, resume_steps):
            if start is not None:
                check_same_data(run.read_data_fingerprint(), fingerprint)
        out: list[dict | None] = [None] * len(cfgs)
        for start in dict.fromkeys(resume_steps):  # one stack per starting step
            idx = [i for i, s in enumerate(resume_steps) if s == start]
            group = ([cfgs[i] for i in idx], [runs[i] for i in idx], [checkpoints[i] for i in idx])
            for i, st in zip(idx, _train_claimed(*group, device, dataset, fingerprint, progress, callback, start)):
                out[i] = st
        return out


def _train_claimed(cfgs, runs, checkpoints, device, dataset, fingerprint, progress, callback, start):
    """`_train` for claimed and checked folders, with deterministic mode set and restored around it."""
    prev_deterministic = torch.are_deterministic_algorithms_enabled()
    prev_benchmark = torch.backends.cudnn.benchmark
    if cfgs[0].deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    for cfg, run in zip(cfgs, runs):
        run.create()
        run.save_config(cfg.to_dict())
        run.save_data_fingerprint(fingerprint)
    try:
        return _train(cfgs, runs, checkpoints, device, dataset, progress, callback, start)
    except KeyboardInterrupt:
        for cfg, run in zip(cfgs, runs):
            if run.read_status().get("state") not in ("interrupted", "completed", "diverged"):  # during set-up
                saved = start or 0
                run.try_write_status(state="interrupted", step=saved, steps=cfg.steps, checkpoint_step=start,
                                     reason="KeyboardInterrupt during set-up, before the first step",
                                     finished_at=_now(), **_where())
        raise
    finally:
        if torch.are_deterministic_algorithms_enabled() != prev_deterministic:  # the call imports torch._inductor
            torch.use_deterministic_algorithms(prev_deterministic)
        torch.backends.cudnn.benchmark = prev_benchmark


def _train(cfgs, runs, checkpoints, device, dataset, progress, callback, start):
    """The loop over generator steps for the stacked seeds ``cfgs`` (all resuming from step ``start`` from their
    verified ``checkpoints``, or new)."""
    from tqdm import tqdm

    from .metrics import evaluate

    # Section: data, models, streams.
    cfg = cfgs[0]
    n_images, B = len(dataset.images), cfg.batch_size
    if n_images < B:
        raise ConfigError(f"dataset has {n_images} images, fewer than batch_size={B}: use more images, or a "
                          f"smaller batch (--set batch_size=N)")
    channels = int(dataset.images.shape[1])
    resuming = start is not None
    state = TrainState(cfgs, channels, device, n_images, checkpoints if resuming else None)
    amp = autocast(device, cfg.precision)
    statuses = [run.read_status() if resuming else {} for run in runs]
    del checkpoints
    for run in runs:
        run.truncate(state.step)
        if not resuming:  # a folder without a checkpoint starts over
            run.checkpoint_path("best").unlink(missing_ok=True)
            run.previous_checkpoint_path("best").unlink(missing_ok=True)
    live = dict(enumerate(runs))  # stack index -> run, re-indexed when a seed leaves the stack
    order = list(range(len(runs)))  # live position -> original index
    finals: list[dict | None] = [None] * len(runs)
    seed_list = [c.seed for c in cfgs]
    for run, st in zip(runs, statuses):
        run.write_status(state="running", step=state.step, steps=cfg.steps, reason=None,
                         started_at=st.get("started_at") or _now(), finished_at=None,
                         resumed_at_step=state.step if resuming else None,
                         checkpoint_step=state.step if resuming else None, device=str(device),
                         precision=resolve_precision(cfg.precision, device),
                         best=state.seeds[runs.index(run)].best, stacked_seeds=seed_list, **_where())

    def run_of(pos):
        return runs[order[pos]]

    # Section: checkpoints, samples and evaluations of every live seed.
    def save_checkpoints(name="last", positions=None):
        positions = list(range(state.stack)) if positions is None else list(positions)
        for pos, ck in zip(positions, state.seed_state_dicts(positions)):
            run_of(pos).save_checkpoint(ck, name)

    def save_samples():
        images = state.generate([s.fixed_z for s in state.seeds], amp)
        for pos, img in enumerate(images):
            run_of(pos).save_samples(img, state.step)

    eval_warned = set()

    def run_evals():
        sampler = _StackedSampler(state, amp)
        improved = []
        for pos, seed in enumerate(state.seeds):
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device.type == "cuda" else []):
                result = evaluate(lambda n, pos=pos: sampler.generate(pos, n), dataset, metrics=cfg.metrics,
                                  num_samples=cfg.eval_num_samples, device=device, progress=False)
            result = {k: float(v) for k, v in result.items()}
            run_of(pos).append_eval({"step": state.step, **result, "eval_sec": round(time.perf_counter() - t0, 3)})
            key, value = _pick_metric(result, cfg.best_metric)
            if key is None:
                key, value = _pick_metric(result, "swd")
                if cfg.best_metric not in eval_warned:
                    warnings.warn(f"best_metric={cfg.best_metric!r} is not in the evaluation ({sorted(result)}); "
                                  f"checkpoints/best.pt follows {key!r} instead")
                    eval_warned.add(cfg.best_metric)
            if key is not None and math.isfinite(value) and (seed.best["value"] is None or value < seed.best["value"]):
                seed.best = {"metric": key, "value": value, "step": state.step}
                improved.append(pos)
        if improved:
            save_checkpoints("best", improved)

    # Section: per-step rows, kept as tensors and written (one sync) every log_every steps.
    pending = []  # (step, tensor (S, 4), lr_g, lr_d)
    clock = {"t": time.perf_counter(), "train_sec": 0.0, "timed_steps": 0}
    desc = cfg.model + (f" x{len(cfgs)} seeds" if len(cfgs) > 1 else "")
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not progress, desc=desc, dynamic_ncols=True, unit="step")

    def flush() -> dict:
        """Write pending rows to each live seed's metrics.csv; return {position: (reason, step)} of divergences."""
        if not pending:
            return {}
        values = torch.stack([p[1] for p in pending]).tolist()  # (rows, S, 4)
        now = time.perf_counter()
        dt, clock["t"] = now - clock["t"], now
        clock["train_sec"] += dt
        clock["timed_steps"] += len(pending)
        sec = dt / len(pending)
        diverged, written = {}, []
        for pos, seed in enumerate(state.seeds):
            rows = [dict(step=s, loss_d=v[pos][0], loss_g=v[pos][1], gp=v[pos][2], emd=v[pos][3], lr_g=lg, lr_d=ld,
                         sec_per_step=sec) for (s, _, lg, ld), v in zip(pending, values)]
            run_of(pos).append_metrics(rows)
            found = seed.monitor.check(rows)
            if found is not None:
                diverged[pos] = found
            written += [(row, seed.seed) for row in rows]
            run_of(pos).heartbeat()  # status.json says the run is alive (at most every 30 s)
        last = values[-1][0]
        pending.clear()
        bar.update(len(values))
        bar.set_postfix(loss_d=f"{last[0]:.3f}", loss_g=f"{last[1]:.3f}", gp=f"{last[2]:.3f}", refresh=False)
        if callback is not None:
            for row, seed in written:
                callback(row["step"], {**row, "seed": seed})
        return diverged

    def finish(pos, quiet=False, **fields):
        """Write seed ``pos``'s final status (``quiet``: in an error handler, where a full disk must not hide
        the error being reported)."""
        i = order[pos]
        run = run_of(pos)
        fields = dict(best=state.seeds[pos].best, sec_per_step=_sps(clock), finished_at=_now(), **fields)
        if quiet:
            finals[i] = run.try_write_status(**fields) or {**run.read_status(), **fields}
        else:
            finals[i] = run.write_status(**fields)

    def leave(diverged: dict) -> None:
        """Diverged seeds stop alone: final status, out of the stack; their last good checkpoint stays."""
        for pos in sorted(diverged, reverse=True):
            reason, bad_step = diverged[pos]
            run = run_of(pos)
            finish(pos, state="diverged", step=bad_step, reason=reason, checkpoint_step=run.last_good_step())
            state.drop(pos)
            del order[pos]

    # Section: the loop.
    consistent = True
    try:
        with _DeferredInterrupt() as interrupt:
            if not resuming:
                save_samples()  # step 0: the initial generator
            clock["t"] = time.perf_counter()
            while state.step < cfg.steps and state.stack:
                consistent = False
                lr_g, lr_d = state.sched_g.get_last_lr()[0], state.sched_d.get_last_lr()[0]
                stats = train_step(state.G_fwd, state.D, state.opt_g, state.opt_d, lambda: state.next_batch(dataset),
                                   state.noise(), cfg, amp)
                state.sched_g.step()
                state.sched_d.step()
                state.step += 1
                pending.append((state.step, stats, lr_g, lr_d))
                consistent = True

                step = state.step
                last = step == cfg.steps
                do_eval = step % cfg.eval_every == 0 or last
                do_samples = step % cfg.sample_every == 0 or last
                do_ckpt = step % cfg.ckpt_every == 0 or last
                if step % cfg.log_every == 0 or do_eval or do_samples or do_ckpt or interrupt.requested:
                    diverged = flush()
                    if do_ckpt:
                        for pos, ok in enumerate(state.finite()):
                            if not ok and pos not in diverged:
                                diverged[pos] = (f"non-finite weights at step {step}", step)
                    if diverged:
                        leave(diverged)
                        if not state.stack:
                            break
                if do_eval:
                    run_evals()
                if do_samples:
                    save_samples()
                if do_ckpt:
                    save_checkpoints("last")
                    for pos in range(state.stack):
                        run_of(pos).write_status(step=step, checkpoint_step=step, best=state.seeds[pos].best,
                                                 sec_per_step=_sps(clock))
                if do_eval or do_samples or do_ckpt:
                    clock["t"] = time.perf_counter()  # housekeeping is not step time
                if interrupt.requested and step < cfg.steps:  # after the last step there is nothing to stop
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        try:
            diverged = flush() if consistent else None
        except KeyboardInterrupt:
            diverged = None
        finite = state.finite() if state.stack else []
        clean = [diverged is not None and pos not in diverged and finite[pos] for pos in range(state.stack)]
        if any(clean):  # a clean step boundary: resumable exactly from here
            save_checkpoints("last", [pos for pos, ok in enumerate(clean) if ok])
        for pos in range(state.stack):
            saved = state.step if clean[pos] else (run_of(pos).last_good_step() or 0)
            finish(pos, quiet=True, state="interrupted", step=saved, checkpoint_step=saved,
                   reason=f"KeyboardInterrupt at step {state.step}")
        raise
    except Exception as e:
        bar.close()
        for pos in range(state.stack):
            finish(pos, quiet=True, state="failed", step=state.step, reason=f"{type(e).__name__}: {e}")
        raise
    bar.close()
    if state.stack and not run_of(0).has_checkpoint("last"):
        save_checkpoints("last")  # steps=0
    for pos in range(state.stack):
        finish(pos, state="completed", step=state.step, reason=None, checkpoint_step=state.step)
    return finals


def _sps(clock) -> float | None:
    return clock["train_sec"] / clock["timed_steps"] if clock["timed_steps"] else None


# --- using a finished run ---

def load_generator(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu"):
    """(generator in eval mode, TrainConfig, checkpoint step) from checkpoints/<checkpoint>.pt
    (``best`` falls back to ``last`` when no evaluation picked a best)."""
    run = RunDir(run_dir)
    name = checkpoint if run.has_checkpoint(checkpoint) or checkpoint != "best" else "last"
    if not run.has_checkpoint(name):
        tried = " nor last.pt" if name != checkpoint else ""
        raise FileNotFoundError(f"{run.path} has no checkpoint to evaluate ({checkpoint}.pt{tried} missing in "
                                f"{run.checkpoints_dir}): train the run to its first checkpoint (every ckpt_every "
                                "steps), then evaluate it")
    other = "last" if name == "best" else "best"
    ck = run.load_checkpoint(name, map_location=device, advice=f"evaluate the other one with --checkpoint {other}"
                             if run.has_checkpoint(other) else "the run has no other checkpoint to evaluate")
    cfg = TrainConfig.from_dict(ck["config"])
    G, _ = build_models(cfg, ck["channels"])
    G.load_state_dict(ck["generator"])
    return G.to(device).eval(), cfg, ck["step"], name


def evaluate_run(run_dir: str | Path, metrics=None, num_samples: int | None = None, checkpoint: str = "best",
                 device: str = "auto", dataset=None, data_root: str | None = None, seed: int | None = None,
                 progress: bool = False) -> dict:
    """Evaluate a run's best (or last) generator against its training data (``dataset``, else loaded from
    the config, with ``data_root`` overriding its folder; `DataMismatch` when that is not the data the run
    trained on, per its data.json); writes eval_<checkpoint>.json in the run folder."""
    import json

    from .metrics import evaluate
    from .run_dir import atomic_write_text

    dev = resolve_device(device)
    G, cfg, step, name = load_generator(run_dir, checkpoint, device=str(dev))
    metrics = tuple(metrics or cfg.metrics)
    if not metrics:
        raise ConfigError(f"{run_dir} was trained with metrics=() and none were asked for: name them, e.g. "
                          "--metrics swd kid_randconv")
    num_samples = num_samples or cfg.eval_num_samples
    if dataset is None:
        if data_root is not None:
            cfg.data_root = data_root
        dataset = load_data(cfg, progress)
    check_same_data(RunDir(run_dir).read_data_fingerprint(), data_fingerprint(dataset))
    amp = autocast(dev, cfg.precision)
    gen = torch.Generator(dev).manual_seed(cfg.seed + 3 if seed is None else seed)

    def generate(n):
        out = []
        with torch.no_grad(), amp:
            for i in range(0, n, 256):
                z = torch.randn(min(256, n - i), cfg.z_dim, device=dev, generator=gen)
                out.append(G(z).float().clamp_(-1, 1).cpu())
        return torch.cat(out)

    asked, num_samples = num_samples, min(num_samples, len(dataset.images))  # as many as there are real images
    t0 = time.perf_counter()
    result = evaluate(generate, dataset, metrics=metrics, num_samples=num_samples, device=dev, progress=progress)
    result = {k: float(v) for k, v in result.items()}
    out = {"checkpoint": name, "step": step, "num_samples": num_samples, "metrics": result,
           "eval_sec": round(time.perf_counter() - t0, 3)}
    if asked != num_samples:
        out["num_samples_asked"] = asked  # more than the real set: every metric compares equal numbers
    atomic_write_text(Path(run_dir) / f"eval_{name}.json", json.dumps(out, indent=2) + "\n")
    return out
