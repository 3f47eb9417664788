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
