"""Time full WGAN-GP training steps (n_critic critic steps + 1 generator step) at the paper's shape.

    python benchmarks/train_step.py --model igan [--precision fp32|bf16] [--steps 10] [--batch 64]
        [--image-size 64] [--width 64] [--n-critic 1] [--channels-last] [--compile] [--set key=value ...]
        [--seeds N [--rounds 2]] [--cuda-graph] [--tf32] [--profile] [--involution-bf16 native|upcast|compare]

The step is `gan_lib.train.train_step`, the one the training loop runs (data comes from an in-memory
uint8 tensor, as in training). Prints the median over the timed steps; the LAST line is
``sec_per_step=<float>``. Target: 0.43 s/step on the 2-core CPU, 10x the authors' 4.3 s/step
(their iGAN, batch 64, 64x64, same kind of machine).

``--seeds N`` times one stacked step of N seeds (`gan_lib.train.TrainState`, batch per seed) and, side by
side in the same process (alternating rounds, so load changes hit both), one single-seed step; it prints
``stacking_speedup=`` (run-steps/s of N stacked over one seed; the issue's targets: >= 1.5 at the cpu shape
with N=4, >= 500 run-steps/s at the paper shape on an H200), ``run_steps_per_sec=`` and, last,
``sec_per_step=`` of one stacked step. ``--profile`` prints the per-op profile of the (stacked) step.
``--batch-ceiling`` (with ``--seeds N``) also times, in the same alternating rounds, ONE seed at N times the
batch and prints ``batch_ceiling=`` (run-steps/s of N steps' worth of images in one step of one model, over one
seed at the batch): what larger kernels and fewer ops gain on this device. N stacked seeds run as many ops as that
step, with the same FLOPs, in kernels no larger (each copy's weights apply to its own batch only), so it is the
ceiling of ``stacking_speedup`` short of a layout that beats one model's own kernels.

``--involution-bf16`` (bf16 on the CPU): ``native`` (default) runs the involution's bf16 C++ kernels, ``upcast``
the path before them (float32 copies in, float32 kernels, a bf16 copy out; bit-identical); ``compare`` times the
two side by side (alternating ``--rounds`` of ``--steps`` each, so load changes hit both) and prints
``upcast_sec_per_step=`` and ``bf16_kernels_speedup=`` (upcast over native) before the usual lines.

``--cuda-graph`` (CUDA only; elsewhere a one-line error, exit 2) times the step captured in one CUDA graph
(`gan_lib.cuda_graph.GraphedStep`) and, side by side (alternating rounds of ``--steps`` each), the eager step, both
for the ``--seeds N`` stacked seeds (no single-seed comparison then). Before the rounds: ``--warmup`` eager steps on
each side (for the graph: its warm-up steps, then the capture and a first replay). It prints
``eager_sec_per_step=``, ``cuda_graph_speedup=`` (eager over graphed), ``run_steps_per_sec=`` and, last,
``sec_per_step=`` of the graphed step. When the capture fails it prints ``cuda_graph: not captured: <why>`` (one
line), ``cuda_graph_speedup=nan`` and the eager figures. Each step is timed between two device syncs, with its
data (`TrainState.next_batch`: indexing, uint8 -> float, host -> device) inside, as the training loop runs it.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_lib.config import CHOICES, make_config, parse_overrides  # noqa: E402
from gan_lib.cost import time_train_steps  # noqa: E402
from gan_lib.layers import get_bf16_path, set_bf16_path  # noqa: E402

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

    from gan_lib.train import TrainState, autocast, resolve_device, train_step

    device = resolve_device(cfg.device)
    state = TrainState([cfg], 3, device, cfg.batch_size)
    x = (torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device) * 2 - 1).to(state.dtype)
    with Counter():
        train_step(state.G, state.D, state.opt_g, state.opt_d, lambda: x.contiguous(memory_format=state.fmt),
                   state.noise(), cfg, autocast(device, cfg.precision))
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
    p.add_argument("--seeds", type=int, default=1, help="stacked seeds (and 1 seed side by side)")
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating rounds of N stacked / 1 seed (--seeds > 1), of graphed / eager (--cuda-graph), "
                        "of native / upcast (--involution-bf16 compare)")
    p.add_argument("--batch-ceiling", action="store_true",
                   help="with --seeds N: also time one seed at N times the batch (the most larger kernels gain)")
    p.add_argument("--tf32", action="store_true", help="TF32 for fp32 matmuls/convs on CUDA")
    p.add_argument("--cuda-graph", action="store_true",
                   help="time the step captured in a CUDA graph, side by side with the eager step (CUDA only)")
    p.add_argument("--profile", action="store_true", help="print the per-op profile of the step")
    p.add_argument("--involution-bf16", choices=("native", "upcast", "compare"), default="native",
                   help="bf16 involution: its bf16 kernels, the float32 upcast path, or both side by side")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field (e.g. kernel_size=7)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = make_config("paper", model=args.model, precision=args.precision, batch_size=args.batch,
                      image_size=args.image_size, width=args.width, n_critic=args.n_critic, device=args.device,
                      channels_last=args.channels_last, compile=args.compile, **parse_overrides(args.overrides))
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    seeds = args.seeds
    if args.cuda_graph:
        return graph_main(args, cfg)
    if args.involution_bf16 == "compare":  # the bf16 kernels and the upcast path, alternating rounds
        native, upcast = [], []
        for _ in range(args.rounds):
            for path, times in (("native", native), ("upcast", upcast)):
                set_bf16_path(path)
                times += time_train_steps(cfg, steps=args.steps, warmup=args.warmup, seeds=seeds)["times"]
        sec_native, sec_upcast = statistics.median(native), statistics.median(upcast)
        print(f"involution bf16, {len(native)} steps each side by side: native kernels median {sec_native:.4f} s, "
              f"upcast path median {sec_upcast:.4f} s")
        print(f"upcast_sec_per_step={sec_upcast:.6f}")
        print(f"bf16_kernels_speedup={sec_upcast / sec_native:.3f} (upcast path over the bf16 kernels)")
    set_bf16_path("upcast" if args.involution_bf16 == "upcast" else "native")
    if args.batch_ceiling and seeds < 2:
        p.error("--batch-ceiling needs --seeds N with N >= 2")
    if seeds > 1:  # N stacked and 1 alone (and 1 at N times the batch), alternating rounds
        stacked, single, big = [], [], []
        big_cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size * seeds) if args.batch_ceiling else None
        for _ in range(args.rounds):
            stacked += time_train_steps(cfg, steps=args.steps, warmup=args.warmup, seeds=seeds)["times"]
            single += time_train_steps(cfg, steps=args.steps, warmup=args.warmup, seeds=1)["times"]
            if big_cfg is not None:
                big += time_train_steps(big_cfg, steps=args.steps, warmup=args.warmup, seeds=1)["times"]
        sec_single = statistics.median(single)
    r = time_train_steps(cfg, steps=args.steps, warmup=args.warmup, seeds=seeds)
    times, sec, params, device = r["times"], r["sec_per_step"], r["params"], r["device"]
    if seeds > 1:
        times = stacked + times
        sec = statistics.median(times)
    loss_d, loss_g, gp, emd = r["last"]
    print(config_line(args, cfg, device, params, involution_bf16=get_bf16_path()))
    print(f"timed {len(times)} steps after {args.warmup} warm-up: median {sec:.4f} s, min {min(times):.4f} s, "
          f"max {max(times):.4f} s (last losses d={loss_d:.3f} g={loss_g:.3f} gp={gp:.3f})")
    if args.profile:
        print(profile_step(cfg, seeds))
    if not args.no_floor:
        print(floor_line(cfg, seeds, device, sec))
    one_seed = sec if seeds == 1 else sec_single
    if seeds > 1:
        print(f"single_sec_per_step={sec_single:.6f} ({len(single)} steps side by side)")
        print(f"stacking_speedup={sec_single * seeds / sec:.3f} (run-steps/s of {seeds} stacked seeds over one seed)")
        if big:
            sec_big = statistics.median(big)
            print(f"big_batch_sec_per_step={sec_big:.6f} (one seed at batch {cfg.batch_size * seeds}, {len(big)} steps "
                  f"side by side)")
            print(f"batch_ceiling={sec_single * seeds / sec_big:.3f} (one seed at {seeds}x the batch over {seeds} steps "
                  f"at the batch: what larger kernels and fewer ops gain here)")
    print(f"ratio_to_target={one_seed / TARGET_SEC_PER_STEP:.3f} (one seed's step against {TARGET_SEC_PER_STEP} s/step "
          f"= the authors' 4.3 s/step / 10; <= 1 meets it)")
    print(f"run_steps_per_sec={seeds / sec:.3f}")
    print(f"sec_per_step={sec:.6f}")
    return sec


def config_line(args, cfg, device, params: int, **extra) -> str:
    """The first line of a report: the step's shape and settings, the machine, then ``extra`` (key=value)."""
    more = "".join(f" {k}={v}" for k, v in extra.items())
    return (f"model={cfg.model} precision={cfg.precision} device={device} threads={torch.get_num_threads()} "
            f"batch={cfg.batch_size} image_size={cfg.image_size} width={cfg.width} n_critic={cfg.n_critic} "
            f"channels_last={cfg.channels_last} compile={cfg.compile} tf32={args.tf32} seeds={args.seeds}{more} "
            f"params={params:,} (one seed) cpu={cpu_model()}")


def floor_line(cfg, seeds: int, device, sec: float) -> str:
    """The step's conv/matmul FLOPs, this device's matmul speed, the floor they give and how close ``sec`` is."""
    flops, peak = step_flops(cfg) * seeds, matmul_flops_per_sec(cfg, device)
    return (f"compute floor: one step is {flops / 1e9:.0f} GFLOP of conv/matmul (torch's FLOP formulas; the "
            f"involution and elementwise ops not counted); a {MM}x{MM} matmul runs at {peak / 1e9:.0f} GFLOP/s "
            f"here -> floor {flops / peak:.3f} s/step at matmul speed; measured step = "
            f"{flops / sec / 1e9:.0f} GFLOP/s ({flops / peak / sec:.0%} of matmul speed)")


LAST_RUN: dict = {}  # --cuda-graph: the last run's figures (scripts/gpu_check.sh reads them to plan the next N)


def graph_main(args, cfg) -> float:
    """``--cuda-graph``: graphed and eager steps side by side; returns the graphed s/step (eager when not captured)."""
    from gan_lib.train import resolve_device

    try:
        device = resolve_device(cfg.device)
    except Exception as e:  # e.g. --device cuda without one
        device = f"none ({' '.join(str(e).split())})"
    if getattr(device, "type", None) != "cuda":
        print(f"train_step.py: --cuda-graph needs a CUDA device; this run's device is {device}", file=sys.stderr)
        raise SystemExit(2)
    r = graph_vs_eager(cfg, steps=args.steps, warmup=args.warmup, seeds=args.seeds, rounds=args.rounds)
    return graph_report(args, cfg, device, r)


def graph_report(args, cfg, device, r: dict) -> float:
    """Print `graph_vs_eager`'s result ``r`` (the LAST line: ``sec_per_step=``); return the graphed s/step
    (the eager one when not captured)."""
    seeds = args.seeds
    graphed, eager = r["graphed"], r["eager"]
    sec_eager = statistics.median(eager)
    sec = statistics.median(graphed) if graphed else sec_eager
    times = graphed or eager
    loss_d, loss_g, gp, emd = r["last"]
    print(config_line(args, cfg, device, r["params"], cuda_graph="captured" if graphed else "not captured"))
    print(f"timed {len(times)} {'graphed' if graphed else 'eager'} steps after {r['graph_warmup']} warm-up "
          f"steps and the capture: median {sec:.4f} s, min {min(times):.4f} s, max {max(times):.4f} s (last losses "
          f"d={loss_d:.3f} g={loss_g:.3f} gp={gp:.3f})")
    if args.profile:
        print(profile_step(cfg, seeds))
    if not args.no_floor:
        print(floor_line(cfg, seeds, device, sec))
    print(f"eager_sec_per_step={sec_eager:.6f} ({len(eager)} steps side by side)")
    if r["reason"] is not None:
        print(f"cuda_graph: not captured: {r['reason']}")
    speedup = sec_eager / sec if graphed else float("nan")
    print(f"cuda_graph_speedup={speedup:.3f} (eager over graphed s/step, {seeds} seed{'s' * (seeds > 1)})")
    if seeds == 1:
        print(f"ratio_to_target={sec / TARGET_SEC_PER_STEP:.3f} (one seed's step against {TARGET_SEC_PER_STEP} "
              f"s/step = the authors' 4.3 s/step / 10; <= 1 meets it)")
    print(f"run_steps_per_sec={seeds / sec:.3f}")
    print(f"sec_per_step={sec:.6f}")
    LAST_RUN.clear()
    LAST_RUN.update(sec_per_step=sec, eager_sec_per_step=sec_eager, graphed=bool(graphed),
                    graph_steps=r["graph_steps"], eager_steps=r["eager_steps"])
    return sec


def graph_vs_eager(cfg, steps: int, warmup: int, seeds: int, rounds: int, channels: int = 3) -> dict:
    """``rounds`` alternating rounds of ``steps`` graphed then ``steps`` eager steps of ``seeds`` stacked seeds
    (two `TrainState` objects built alike), each step timed between device syncs, after ``warmup`` eager steps on each
    side (the graph's warm-up, at least one step, then its capture and first replay, untimed).

    Returns {graphed: times ([] when not captured), eager: times, reason (why not captured, else None), last
    (the last graphed step's losses, first seed), params (one seed), graph_warmup, graph_steps and eager_steps
    (all steps each side ran)}."""
    import time
    import warnings

    from gan_lib.cost import BenchmarkRun
    from gan_lib.cuda_graph import GraphedStep

    g_run = BenchmarkRun(cfg, seeds, channels)
    e_run = BenchmarkRun(cfg, seeds, channels, data=g_run.data)
    g_state = g_run.state
    with warnings.catch_warnings(record=True):  # the reason is printed as one line (GraphedStep.fallback_reason)
        warnings.simplefilter("always")
        graph = GraphedStep(g_state.G_fwd, g_state.D, g_state.opt_g, g_state.opt_d, g_state.noise(), cfg, g_run.amp,
                            warmup=max(warmup, 1))
        for _ in range(graph.warmup + 1):  # warm-up steps, then the capture and its first replay
            stats = graph.step(g_run.next_batch)
    for _ in range(warmup):
        e_run.step()
    counts = {"graph": graph.warmup + 1, "eager": warmup}

    def timed(step, side) -> list:
        nonlocal stats
        out = []
        for _ in range(steps):
            g_run.sync()  # (off CUDA GraphedStep is the eager step: tests of the fallback)
            t0 = time.perf_counter()
            s = step()
            g_run.sync()
            out.append(time.perf_counter() - t0)
            if side == "graph":
                stats = s
        counts[side] += steps
        return out

    graphed, eager = [], []
    for _ in range(rounds):
        if graph.graphed:
            graphed += timed(lambda: graph.step(g_run.next_batch), "graph")
        eager += timed(e_run.step, "eager")
    reason = None if graph.graphed else graph.fallback_reason
    graph.close()
    return dict(graphed=graphed, eager=eager, reason=reason, last=stats[0].tolist(), params=g_run.params,
                graph_warmup=graph.warmup, graph_steps=counts["graph"], eager_steps=counts["eager"])


def cpu_model() -> str:
    """The CPU's model name and whether it has AMX (bf16 matrix tiles): every speed figure names its machine."""
    name = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    bf16 = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    return f"'{name}' amx={amx} avx512_bf16={bf16}"


def profile_step(cfg, seeds: int, steps: int = 3) -> str:
    """torch.profiler's per-op table (self CPU time) of ``steps`` stacked training steps."""
    from torch.profiler import ProfilerActivity, profile

    from gan_lib.cost import BenchmarkRun

    run = BenchmarkRun(cfg, seeds)
    device, step = run.device, run.step
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=20)


if __name__ == "__main__":
    main()
