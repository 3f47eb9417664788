"""`gan_lib.cuda_graph.GraphedStep` without a GPU: its CPU fallback is exactly `train_step`, the pieces of its
capture-failure fallback (state copies, optimizer settings) give the state back, and ``benchmarks/train_step.py
--cuda-graph`` is a one-line error on the CPU and reports a graph that was not captured.

The graphed steps themselves (capture, replays, a capture that fails on the GPU) are tested in
``tests/test_cuda.py`` (skipped without CUDA; run by ``scripts/gpu_check.sh``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_lib.config import make_config
from gan_lib.cuda_graph import GraphedStep, _Capturable, _restore, _snapshot
from gan_lib.train import TrainState, autocast, train_step

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _cfgs(seeds, **overrides):
    return [make_config("smoke", model="igan", device="cpu", precision="fp32", image_size=32, width=8, batch_size=4,
                        z_dim=8, seed=s, **overrides) for s in seeds]


def _images(n=16, size=32):
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))

    class Images:  # the ImageDataset.batch interface
        @staticmethod
        def batch(idx):
            return images[idx].float() / 127.5 - 1

    return Images


def _state_tensors(state: TrainState) -> list[torch.Tensor]:
    """Every parameter, buffer and optimizer-state tensor, and the noise generators' states."""
    out = [t.detach() for m in (state.G, state.D) for t in m.state_dict().values()]
    for opt in (state.opt_g, state.opt_d):
        out += [t for s in opt.state_dict()["state"].values() for t in s.values()]
    return out + [s.gen_noise.get_state() for s in state.seeds]


@pytest.mark.parametrize("seeds", [pytest.param((0,), id="one-seed"), pytest.param((0, 1), id="two-seeds")])
def test_graphed_step_on_the_cpu_is_exactly_train_step(seeds):
    cfgs, Images = _cfgs(seeds, n_critic=2), _images()
    amp = autocast(CPU, "fp32")
    eager, graphed = TrainState(cfgs, 3, CPU, 16), TrainState(cfgs, 3, CPU, 16)
    with pytest.warns(UserWarning, match=r"^CUDA graph not used \(device cpu: CUDA graphs need a CUDA device\)"):
        step = GraphedStep(graphed.G_fwd, graphed.D, graphed.opt_g, graphed.opt_d, graphed.noise(), cfgs[0], amp,
                           warmup=1)
    assert not step.graphed and step.fallback_reason.startswith("device cpu")
    for _ in range(3):
        a = train_step(eager.G_fwd, eager.D, eager.opt_g, eager.opt_d, lambda: eager.next_batch(Images),
                       eager.noise(), cfgs[0], amp)
        b = step.step(lambda: graphed.next_batch(Images))
        assert b.shape == (len(seeds), 4) and torch.equal(a, b)
    assert step.steps == 3
    assert all(torch.equal(x, y) for x, y in zip(_state_tensors(eager), _state_tensors(graphed), strict=True))
    assert graphed.opt_g.param_groups[0]["lr"] == eager.opt_g.param_groups[0]["lr"]  # nothing converted
    assert not graphed.opt_d.param_groups[0]["capturable"]


def test_state_copies_taken_before_a_capture_give_the_state_back():
    """What a failed capture restores (`_snapshot` / `_restore`): the same steps from there are bitwise the same."""
    cfgs = _cfgs((0, 1))
    amp = autocast(CPU, "fp32")
    state = TrainState(cfgs, 3, CPU, 16)
    batches = [torch.rand(4, 6, 32, 32) * 2 - 1 for _ in range(3)]

    def steps():
        return torch.stack([train_step(state.G_fwd, state.D, state.opt_g, state.opt_d, lambda x=x: x, state.noise(),
                                       cfgs[0], amp) for x in batches])

    steps()  # optimizer states exist, as after a warm-up
    modules, opts, gens = (state.G, state.D), (state.opt_g, state.opt_d), [s.gen_noise for s in state.seeds]
    before = [t.clone() for t in _state_tensors(state)]
    params = [p for m in modules for p in m.parameters()]
    snap = _snapshot(modules, opts, gens)
    first = steps()
    _restore(snap, modules, opts, gens)
    assert all(torch.equal(x, y) for x, y in zip(before, _state_tensors(state), strict=True))
    assert all(p is q for p, q in zip(params, [p for m in modules for p in m.parameters()]))  # in place
    assert all(p is q for p, q in zip(params, [p for o in opts for g in o.param_groups for p in g["params"]]))
    assert torch.equal(steps(), first)


def test_optimizer_settings_round_trip_and_a_schedule_changes_the_tensor_lr_in_place():
    """`_Capturable`: capturable Adam, lr a 0-dim tensor that an lr schedule fills in place (the graph keeps
    reading the same tensor); `undo` gives the float lr back (the very same float when the schedule left it)."""
    cfgs = _cfgs((0,))
    state = TrainState(cfgs, 3, CPU, 16)
    x = torch.rand(4, 3, 32, 32)
    train_step(state.G_fwd, state.D, state.opt_g, state.opt_d, lambda: x, state.noise(), cfgs[0], autocast(CPU, "fp32"))
    saved = state.opt_g.state_dict()
    lr_d = state.opt_d.param_groups[0]["lr"]
    conv = [_Capturable(o, CPU) for o in (state.opt_g, state.opt_d)]
    group = state.opt_g.param_groups[0]
    assert group["capturable"] and torch.is_tensor(group["lr"]) and group["lr"].dim() == 0
    lr = group["lr"]
    sched = torch.optim.lr_scheduler.StepLR(state.opt_g, step_size=1, gamma=0.5)
    sched.step()
    assert state.opt_g.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(saved["param_groups"][0]["lr"] / 2)
    for c in conv:
        c.undo()
    assert state.opt_g.param_groups[0]["lr"] == pytest.approx(saved["param_groups"][0]["lr"] / 2, rel=1e-6)
    assert state.opt_d.param_groups[0]["lr"] == lr_d and isinstance(lr_d, float)  # the same float
    assert not state.opt_g.param_groups[0]["capturable"]
    now = state.opt_g.state_dict()
    for k, s in saved["state"].items():
        assert now["state"][k]["step"].device == CPU and torch.equal(now["state"][k]["step"], s["step"])


def test_cuda_graph_benchmark_is_a_one_line_error_on_the_cpu():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--cuda-graph", "--device", "cpu",
                          "--image-size", "32", "--width", "8", "--batch", "4"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "--cuda-graph needs a CUDA device" in out.stderr and "cpu" in out.stderr


def test_cuda_graph_benchmark_reports_a_graph_that_was_not_captured(capsys):
    """The report when no graph could be captured (here: the CPU, past the CLI's guard): the reason in one line,
    cuda_graph_speedup=nan, the eager figures, sec_per_step= last."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import train_step as bench
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    cfg = _cfgs((0,))[0]
    r = bench.graph_vs_eager(cfg, steps=1, warmup=1, seeds=2, rounds=2)
    assert r["graphed"] == [] and len(r["eager"]) == 2 and "CUDA device" in r["reason"]
    assert r["graph_steps"] == 2 + 0 and r["eager_steps"] == 1 + 2  # warm-up + capture attempt; warm-up + rounds
    args = argparse.Namespace(seeds=2, tf32=False, profile=False, no_floor=True)
    sec = bench.graph_report(args, cfg, CPU, r)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"sec_per_step={sec:.6f}" and "cuda_graph=not captured" in lines[0]
    assert [ln for ln in lines if ln.startswith("cuda_graph: not captured: device cpu")]
    assert "cuda_graph_speedup=nan" in "\n".join(lines)
    assert bench.LAST_RUN["graphed"] is False and bench.LAST_RUN["eager_sec_per_step"] == sec
