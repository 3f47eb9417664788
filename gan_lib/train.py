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

import math
import os
import signal
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from .config import RESUMABLE_FIELDS, ConfigError, TrainConfig
from .run_dir import RunDir

NUM_SAMPLES_GRID = 64  # images in each samples/step_XXXXXX.png (8 x 8)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA device is available; use device=auto or cpu")
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


def build_models(cfg: TrainConfig, channels: int = 3):
    """The paper's generator and critic for ``cfg`` (on the CPU, in train mode)."""
    from .networks import Critic, Generator

    common = dict(image_size=cfg.image_size, channels=channels, width=cfg.width, block=cfg.model,
                  num_blocks=cfg.num_blocks, kernel_size=cfg.kernel_size, groups=cfg.groups,
                  reduction_ratio=cfg.reduction_ratio, kernel_norm=cfg.kernel_norm, kernel_clip=cfg.kernel_clip)
    return Generator(z_dim=cfg.z_dim, **common), Critic(sigma_norm=cfg.critic_sigma_norm, **common)


def build_training(cfg: TrainConfig, channels: int, device: torch.device):
    """(G, D, opt_g, opt_d, memory_format): the seeded models on ``device`` in train mode, with Table 1's Adam."""
    torch.manual_seed(cfg.seed)
    G, D = build_models(cfg, channels)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G.to(device, memory_format=fmt).train()
    D.to(device, memory_format=fmt).train()
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    return G, D, opt_g, opt_d, fmt


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, amp) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake, differentiable (double backward)."""
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    with amp:
        score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    return (grad.float().flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def train_step(G, D, opt_g, opt_d, next_batch, gen_noise, cfg: TrainConfig, amp) -> torch.Tensor:
    """One generator step: ``cfg.n_critic`` critic steps then one generator step.

    ``next_batch()`` gives real images on the device; ``gen_noise`` draws z and eps. Returns the detached
    tensor ``[loss_d, loss_g, gp, emd]`` (critic values averaged over the critic steps).
    """
    B = cfg.batch_size
    device = next(D.parameters()).device
    stats = torch.zeros(4, device=device)
    # critic steps: the generator runs without a graph
    D.requires_grad_(True)
    for _ in range(cfg.n_critic):
        real = next_batch()
        z = torch.randn(B, cfg.z_dim, device=device, generator=gen_noise)
        eps = torch.rand(B, 1, 1, 1, device=device, generator=gen_noise)
        with torch.no_grad(), amp:
            fake = G(z).float()
        with amp:  # real, fake and x_hat in separate passes (see the module docstring)
            d_real = D(real).float().mean()
            d_fake = D(fake).float().mean()
        gp = gradient_penalty(D, real, fake, eps, amp)
        loss_d = d_fake - d_real + cfg.gp_lambda * gp
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()  # one backward, through the penalty's gradient too
        opt_d.step()
        stats += torch.stack([loss_d.detach(), torch.zeros_like(gp), gp.detach(), (d_real - d_fake).detach()])
    stats /= cfg.n_critic
    # generator step: the critic's parameters are frozen (no weight gradients computed for them)
    D.requires_grad_(False)
    z = torch.randn(B, cfg.z_dim, device=device, generator=gen_noise)
    with amp:
        loss_g = -D(G(z)).float().mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    stats[1] = loss_g.detach()
    return stats


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


def _finite_params(*models) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in models for p in m.parameters())


class _DeferredSigint:
    """First Ctrl-C: finish the current step, then raise KeyboardInterrupt (a clean checkpoint). Second: now."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after this step (press Ctrl-C again to stop now)", flush=True)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def load_data(cfg: TrainConfig, progress: bool = False):
    """The config's dataset (uint8 in memory; decoded once, then read from the gan_lib cache)."""
    from .data import load_dataset

    return load_dataset(cfg.dataset, root=cfg.data_root, image_size=cfg.image_size, split=cfg.split,
                        max_images=cfg.max_images, seed=0, progress=progress)  # one fixed synthetic set for every run


def train(cfg: TrainConfig, run_dir: str | Path, *, dataset=None, progress: bool = False, callback=None) -> dict:
    """Train (or resume, when ``run_dir`` has checkpoints/last.pt) and return the final status dict.

    ``dataset``: a loaded ``ImageDataset`` to reuse (else ``load_dataset`` from the config).
    ``callback(step, row)``: called for every metrics.csv row once written (tests raise from it).
    A KeyboardInterrupt (Ctrl-C or from ``callback``) saves a checkpoint, marks the run ``interrupted`` and
    is re-raised. Divergence stops the run with state ``diverged`` (no exception).
    """
    cfg = TrainConfig.from_dict(cfg.to_dict())  # a validated private copy
    run = RunDir(run_dir)
    device = resolve_device(cfg.device)
    resuming = run.has_checkpoint("last")
    if resuming and run.config_path.exists():
        check_resume_config(run.load_config(), cfg)
    run.create()
    run.save_config(cfg.to_dict())

    prev_deterministic = torch.are_deterministic_algorithms_enabled()
    prev_benchmark = torch.backends.cudnn.benchmark
    if cfg.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        return _train(cfg, run, device, dataset, progress, callback, resuming)
    except KeyboardInterrupt:
        if run.read_status().get("state") != "interrupted":  # during set-up: the loop's handler did not run
            saved = run.load_checkpoint("last")["step"] if resuming else 0
            run.write_status(state="interrupted", step=saved, steps=cfg.steps,
                             checkpoint_step=saved if resuming else None,
                             reason="KeyboardInterrupt during set-up, before the first step",
                             finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        raise
    finally:
        if torch.are_deterministic_algorithms_enabled() != prev_deterministic:  # the call imports torch._inductor
            torch.use_deterministic_algorithms(prev_deterministic)
        torch.backends.cudnn.benchmark = prev_benchmark


def _train(cfg, run, device, dataset, progress, callback, resuming):
    from tqdm import tqdm

    if dataset is None:
        dataset = load_data(cfg, progress)
    n_images, B = len(dataset.images), cfg.batch_size
    if n_images < B:
        raise ConfigError(f"dataset has {n_images} images, fewer than batch_size={B}")
    channels = int(dataset.images.shape[1])

    # --- models, optimizers, schedules (Table 1) ---
    G, D, opt_g, opt_d, fmt = build_training(cfg, channels, device)
    sched_g = torch.optim.lr_scheduler.StepLR(opt_g, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    sched_d = torch.optim.lr_scheduler.StepLR(opt_d, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    G_fwd = torch.compile(G) if cfg.compile else G  # the critic needs double backward: never compiled
    amp = autocast(device, cfg.precision)

    gen_data = torch.Generator().manual_seed(cfg.seed)                  # batch order
    gen_noise = torch.Generator(device).manual_seed(cfg.seed + 1)       # z and eps
    fixed_z = torch.randn(NUM_SAMPLES_GRID, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 2))
    fixed_z = fixed_z.to(device)
    order = {"perm": torch.randperm(n_images, generator=gen_data), "pos": 0}
    step, gp_streak, best = 0, 0, {"metric": None, "value": None, "step": None}
    status = run.read_status() if resuming else {}

    if resuming:
        ck = run.load_checkpoint("last", map_location="cpu")  # load_state_dict copies onto the device
        G.load_state_dict(ck["generator"])
        D.load_state_dict(ck["critic"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        sched_g.load_state_dict(ck["sched_g"])
        sched_d.load_state_dict(ck["sched_d"])
        step, gp_streak, best, order = ck["step"], ck["gp_streak"], ck["best"], ck["data_order"]
        torch.set_rng_state(ck["rng"]["torch"].cpu())
        gen_data.set_state(ck["rng"]["data"].cpu())
        if ck["rng"].get("device_type") == device.type:
            gen_noise.set_state(ck["rng"]["noise"].cpu())
            if device.type == "cuda" and ck["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state_all([s.cpu() for s in ck["rng"]["cuda"]])
        else:
            warnings.warn(f"resuming on {device.type} a run checkpointed on {ck['rng'].get('device_type')}: "
                          "the z/eps stream is reseeded, so the run is not bitwise identical")
            gen_noise.manual_seed(cfg.seed + 1 + step)
        del ck
        run.truncate(step)
    else:  # a folder without a checkpoint starts over
        run.truncate(0)
        run.checkpoint_path("best").unlink(missing_ok=True)
    run.write_status(state="running", step=step, steps=cfg.steps, reason=None,
                     started_at=status.get("started_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     finished_at=None, resumed_at_step=step if resuming else None,
                     checkpoint_step=step if resuming else None, device=str(device), precision=resolve_precision(cfg.precision, device),
                     best=best)

    def next_batch():
        if order["pos"] + B > n_images:
            order["perm"], order["pos"] = torch.randperm(n_images, generator=gen_data), 0
        idx = order["perm"][order["pos"]: order["pos"] + B]
        order["pos"] += B
        x = dataset.batch(idx).to(device, non_blocking=True)
        return x.contiguous(memory_format=fmt)

    def generate(n, gen):
        """n images in [-1, 1] (float32, CPU) from G in eval mode."""
        G.eval()
        out = []
        with torch.no_grad(), amp:
            for i in range(0, n, 256):
                z = torch.randn(min(256, n - i), cfg.z_dim, device=device, generator=gen)
                out.append(G_fwd(z).float().clamp_(-1, 1).cpu())
        G.train()
        return torch.cat(out)

    def save_checkpoint(name="last"):
        state = {
            "step": step, "config": cfg.to_dict(), "channels": channels,
            "generator": G.state_dict(), "critic": D.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "sched_g": sched_g.state_dict(), "sched_d": sched_d.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "data": gen_data.get_state(), "noise": gen_noise.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                    "device_type": device.type},
            "data_order": order, "gp_streak": gp_streak, "best": best,
        }
        run.save_checkpoint(state, name)

    def save_samples():
        with torch.no_grad():
            G.eval()
            with amp:
                images = G_fwd(fixed_z).float()
            G.train()
        run.save_samples(images, step)

    eval_warned = set()

    def run_eval():
        from .metrics import evaluate

        nonlocal best
        t0 = time.perf_counter()
        gen = torch.Generator(device).manual_seed(cfg.seed + 3)  # the same z at every evaluation
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device.type == "cuda" else []):
            result = evaluate(lambda n: generate(n, gen), dataset, metrics=cfg.metrics,
                              num_samples=cfg.eval_num_samples, device=device, progress=False)
        result = {k: float(v) for k, v in result.items()}
        run.append_eval({"step": step, **result, "eval_sec": round(time.perf_counter() - t0, 3)})
        key, value = _pick_metric(result, cfg.best_metric)
        if key is None:
            key, value = _pick_metric(result, "swd")
            if cfg.best_metric not in eval_warned:
                warnings.warn(f"best_metric={cfg.best_metric!r} is not in the evaluation ({sorted(result)}); "
                              f"checkpoints/best.pt follows {key!r} instead")
                eval_warned.add(cfg.best_metric)
        if key is not None and math.isfinite(value) and (best["value"] is None or value < best["value"]):
            best = {"metric": key, "value": value, "step": step}
            save_checkpoint("best")
        return result

    # --- per-step rows: kept as tensors, written (one sync) every log_every steps ---
    pending = []  # (step, tensor[loss_d, loss_g, gp, emd], lr_g, lr_d)
    clock = {"t": time.perf_counter(), "train_sec": 0.0, "timed_steps": 0}
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"{cfg.model}", dynamic_ncols=True,
               unit="step")

    def flush():
        """Write pending rows; return a divergence reason or None."""
        nonlocal gp_streak, bad_step
        if not pending:
            return None
        values = torch.stack([p[1] for p in pending]).tolist()
        now = time.perf_counter()
        dt, clock["t"] = now - clock["t"], now
        clock["train_sec"] += dt
        clock["timed_steps"] += len(pending)
        sec = dt / len(pending)
        rows = [dict(step=s, loss_d=v[0], loss_g=v[1], gp=v[2], emd=v[3], lr_g=lg, lr_d=ld, sec_per_step=sec)
                for (s, _, lg, ld), v in zip(pending, values)]
        pending.clear()
        run.append_metrics(rows)
        reason = None
        for row in rows:
            bad = [k for k in ("loss_d", "loss_g", "gp", "emd") if not math.isfinite(row[k])]
            if bad and reason is None:
                reason, bad_step = f"non-finite {', '.join(bad)} at step {row['step']}", row["step"]
            gp_streak = gp_streak + 1 if row["gp"] > cfg.gp_explode_threshold else 0
            if reason is None and gp_streak >= cfg.gp_explode_window:
                reason = (f"gradient penalty above {cfg.gp_explode_threshold} for {gp_streak} consecutive steps "
                          f"(step {row['step']})")
                bad_step = row["step"]
        bar.update(len(rows))
        bar.set_postfix(loss_d=f"{rows[-1]['loss_d']:.3f}", loss_g=f"{rows[-1]['loss_g']:.3f}",
                        gp=f"{rows[-1]['gp']:.3f}", refresh=False)
        if callback is not None:
            for row in rows:
                callback(row["step"], row)
        return reason

    final_state, reason, consistent, bad_step = "completed", None, True, None
    try:
        with _DeferredSigint() as sigint:
            if not resuming:
                save_samples()  # step 0: the initial generator
            clock["t"] = time.perf_counter()
            while step < cfg.steps:
                consistent = False
                lr_g, lr_d = sched_g.get_last_lr()[0], sched_d.get_last_lr()[0]
                stats = train_step(G_fwd, D, opt_g, opt_d, next_batch, gen_noise, cfg, amp)
                sched_g.step()
                sched_d.step()
                step += 1
                pending.append((step, stats, lr_g, lr_d))
                consistent = True

                last = step == cfg.steps
                do_eval = step % cfg.eval_every == 0 or last
                do_samples = step % cfg.sample_every == 0 or last
                do_ckpt = step % cfg.ckpt_every == 0 or last
                if step % cfg.log_every == 0 or do_eval or do_samples or do_ckpt or sigint.requested:
                    reason = flush()
                    if reason is None and do_ckpt and not _finite_params(G, D):
                        reason, bad_step = f"non-finite weights at step {step}", step
                    if reason is not None:
                        final_state = "diverged"
                        break
                if do_eval:
                    run_eval()
                if do_samples:
                    save_samples()
                if do_ckpt:
                    save_checkpoint("last")
                    run.write_status(step=step, checkpoint_step=step, best=best, sec_per_step=_sps(clock))
                if do_eval or do_samples or do_ckpt:
                    clock["t"] = time.perf_counter()  # housekeeping is not step time
                if sigint.requested and step < cfg.steps:  # after the last step there is nothing to stop
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        try:
            bad = flush() if consistent else "interrupted inside a step"
        except KeyboardInterrupt:
            bad = "interrupted while logging"
        if bad is None and _finite_params(G, D):
            save_checkpoint("last")  # a clean step boundary: resumable exactly from here
            saved = step
        else:
            saved = run.load_checkpoint("last")["step"] if run.has_checkpoint("last") else 0
        run.write_status(state="interrupted", step=saved, checkpoint_step=saved,
                         reason=f"KeyboardInterrupt at step {step}",
                         best=best, sec_per_step=_sps(clock), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        raise
    except Exception as e:
        bar.close()
        run.write_status(state="failed", step=step, reason=f"{type(e).__name__}: {e}", best=best,
                         finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        raise
    bar.close()
    if final_state == "completed" and not run.has_checkpoint("last"):
        save_checkpoint("last")  # steps=0
    ckpt_step = run.load_checkpoint("last")["step"] if final_state == "diverged" and run.has_checkpoint() else step
    return run.write_status(state=final_state, step=bad_step or step, reason=reason, best=best,
                            sec_per_step=_sps(clock), checkpoint_step=ckpt_step,
                            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def _sps(clock) -> float | None:
    return clock["train_sec"] / clock["timed_steps"] if clock["timed_steps"] else None


# --- using a finished run ---

def load_generator(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu"):
    """(generator in eval mode, TrainConfig, checkpoint step) from checkpoints/<checkpoint>.pt
    (``best`` falls back to ``last`` when no evaluation picked a best)."""
    run = RunDir(run_dir)
    name = checkpoint if run.has_checkpoint(checkpoint) or checkpoint != "best" else "last"
    if not run.has_checkpoint(name):
        raise FileNotFoundError(f"no checkpoint {run.checkpoint_path(name)}")
    ck = run.load_checkpoint(name, map_location=device)
    cfg = TrainConfig.from_dict(ck["config"])
    G, _ = build_models(cfg, ck["channels"])
    G.load_state_dict(ck["generator"])
    return G.to(device).eval(), cfg, ck["step"], name


def evaluate_run(run_dir: str | Path, metrics=None, num_samples: int | None = None, checkpoint: str = "best",
                 device: str = "auto", dataset=None, data_root: str | None = None, seed: int | None = None,
                 progress: bool = False) -> dict:
    """Evaluate a run's best (or last) generator against its training data (``dataset``, else loaded from
    the config, with ``data_root`` overriding its folder); writes eval_<checkpoint>.json in the run folder."""
    import json

    from .metrics import evaluate
    from .run_dir import atomic_write_text

    dev = resolve_device(device)
    G, cfg, step, name = load_generator(run_dir, checkpoint, device=str(dev))
    metrics = tuple(metrics or cfg.metrics)
    num_samples = num_samples or cfg.eval_num_samples
    if dataset is None:
        if data_root is not None:
            cfg.data_root = data_root
        dataset = load_data(cfg, progress)
    amp = autocast(dev, cfg.precision)
    gen = torch.Generator(dev).manual_seed(cfg.seed + 3 if seed is None else seed)

    def generate(n):
        out = []
        with torch.no_grad(), amp:
            for i in range(0, n, 256):
                z = torch.randn(min(256, n - i), cfg.z_dim, device=dev, generator=gen)
                out.append(G(z).float().clamp_(-1, 1).cpu())
        return torch.cat(out)

    t0 = time.perf_counter()
    result = evaluate(generate, dataset, metrics=metrics, num_samples=num_samples, device=dev, progress=progress)
    result = {k: float(v) for k, v in result.items()}
    out = {"checkpoint": name, "step": step, "num_samples": num_samples, "metrics": result,
           "eval_sec": round(time.perf_counter() - t0, 3)}
    atomic_write_text(Path(run_dir) / f"eval_{name}.json", json.dumps(out, indent=2) + "\n")
    return out
