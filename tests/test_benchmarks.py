"""The benchmark scripts run and print what their callers parse (the LAST line is sec_per_step=...)."""
import subprocess
import sys

import pytest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(*args) -> list[str]:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_step.py"), *args], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()


def value(lines, key) -> float:
    (line,) = [ln for ln in lines if ln.startswith(f"{key}=")]
    return float(line.split("=", 1)[1].split()[0])


def test_stacked_step_benchmark_prints_both_rates_and_ends_with_sec_per_step():
    lines = run_benchmark("--seeds", "3", "--image-size", "32", "--width", "8", "--batch", "4", "--steps", "2",
                          "--warmup", "1", "--rounds", "1", "--no-floor", "--device", "cpu", "--threads", "1")
    sec, single = value(lines, "sec_per_step"), value(lines, "single_sec_per_step")
    assert lines[-1].startswith("sec_per_step=") and sec > 0 and single > 0
    assert value(lines, "run_steps_per_sec") == pytest.approx(3 / sec, rel=1e-2)
    assert value(lines, "stacking_speedup") == pytest.approx(single * 3 / sec, rel=1e-2)
    assert "seeds=3" in lines[0] and "amx=" in lines[0]
    assert value(lines, "ratio_to_target") == pytest.approx(single / 0.43, rel=1e-2, abs=1e-3)  # both ratios (3 decimals)


def test_batch_ceiling_times_one_seed_at_n_times_the_batch_side_by_side():
    lines = run_benchmark("--seeds", "2", "--batch-ceiling", "--image-size", "32", "--width", "8", "--batch", "4",
                          "--steps", "2", "--warmup", "1", "--rounds", "1", "--no-floor", "--device", "cpu",
                          "--threads", "1")
    single, big = value(lines, "single_sec_per_step"), value(lines, "big_batch_sec_per_step")
    assert value(lines, "batch_ceiling") == pytest.approx(single * 2 / big, rel=1e-2)
    assert "batch 8, 2 steps" in "\n".join(lines)  # one seed at 2 x 4 images, as many steps as each side
    assert lines[-1].startswith("sec_per_step=")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--batch-ceiling"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2 and "--batch-ceiling needs --seeds N" in out.stderr


def test_single_seed_benchmark_keeps_the_step_target_line():
    lines = run_benchmark("--image-size", "32", "--width", "8", "--batch", "4", "--steps", "1", "--warmup", "1",
                          "--device", "cpu", "--threads", "1", "--profile")
    assert lines[-1].startswith("sec_per_step=") and "ratio_to_target=" in "\n".join(lines)
    assert "GFLOP" in "\n".join(lines) and "convolution" in "\n".join(lines)  # floor and the per-op profile


def test_involution_bf16_compare_times_both_paths_side_by_side():
    lines = run_benchmark("--precision", "bf16", "--image-size", "32", "--width", "8", "--batch", "4", "--steps", "1",
                          "--warmup", "1", "--rounds", "1", "--no-floor", "--device", "cpu", "--threads", "1",
                          "--involution-bf16", "compare")
    upcast, sec = value(lines, "upcast_sec_per_step"), value(lines, "sec_per_step")
    assert upcast > 0 and sec > 0 and value(lines, "bf16_kernels_speedup") > 0
    assert lines[-1].startswith("sec_per_step=") and "involution_bf16=native" in "\n".join(lines)


@pytest.mark.parametrize("stack, c_in, c_out, size, transposed, stride, padding", [
    (3, 5, 7, 16, False, 2, 1), (3, 5, 2, 4, False, 1, 0), (2, 6, 4, 8, True, 2, 1), (1, 3, 4, 5, True, 1, 0)])
def test_bmm_conv_is_the_grouped_convolution(stack, c_in, c_out, size, transposed, stride, padding):
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from stacked_conv import bmm_conv
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, stack * c_in, size, size, dtype=torch.float64, generator=g, requires_grad=True)
    shape = (stack * c_in, c_out) if transposed else (stack * c_out, c_in)
    w = torch.randn(*shape, 4, 4, dtype=torch.float64, generator=g, requires_grad=True)
    ref = (F.conv_transpose2d if transposed else F.conv2d)(x, w, stride=stride, padding=padding, groups=stack)
    out = bmm_conv(x, w, stack, stride, padding, transposed=transposed)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    weights = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    for a, b in zip(torch.autograd.grad((out * weights).sum(), (x, w)), torch.autograd.grad((ref * weights).sum(), (x, w))):
        torch.testing.assert_close(a, b)


def test_stacked_conv_benchmark_times_every_layout_per_layer():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "stacked_conv.py"), "--seeds", "2", "--batch", "2",
                          "--width", "4"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = out.stdout.strip().splitlines()[1:]
    assert len(rows) == 7  # the cpu-shape networks' seven convolutions
    for row in rows:
        for layout in ("grouped", "grouped_channels_last", "sliced", "bmm"):
            assert f" {layout} " in row and row.endswith("x")
