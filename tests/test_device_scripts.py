"""The scripts of a device call (scripts/gpu_check.sh): carrying CelebA to a machine without it (32 px lossless,
64 px JPEG), training an experiment's runs without papermill, and the whole call dry-run on the CPU."""
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import carry_celeba  # noqa: E402
import train_experiment  # noqa: E402
from gan_lib import study  # noqa: E402
from gan_lib.data import load_dataset  # noqa: E402


@pytest.mark.parametrize("n", [1, 127, 128, 300])
def test_mosaic_round_trip_is_exact(n):
    a = np.random.default_rng(n).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    m = carry_celeba.to_mosaic(a)
    assert m.shape == (-(-n // carry_celeba.COLS) * 8, carry_celeba.COLS * 8, 3)
    np.testing.assert_array_equal(carry_celeba.from_mosaic(m, n, 8), a)
    np.testing.assert_array_equal(m[:8, 8:16], a[1].transpose(1, 2, 0) if n > 1 else 0)  # tile order: row-major


def _fake_celeba(root: Path, n: int = 12) -> None:
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / f"{i:06d}.jpg")
        lines.append(f"{i:06d}.jpg {0 if i <= n - 2 else 2}")  # the last two are test images
    lines.append("999999.jpg 0")  # listed, not present
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


def test_carried_celeba_is_loaded_by_gan_lib_with_the_same_pixels(tmp_path, monkeypatch):
    real = tmp_path / "celeba"
    _fake_celeba(real)
    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache_here"))
    carry_celeba.pack(real, 16, tmp_path / "carry")
    note = json.loads((tmp_path / "carry" / "celeba16.json").read_text())
    assert note["count"] == 10 and len(note["names"]) == 12 and len(note["partition"]) == 12
    assert note["format"] == "webp" and note["file"] == "celeba16.webp" and "psnr_db" not in note  # lossless
    assert note["file_sha256"] == hashlib.sha256((tmp_path / "carry" / "celeba16.webp").read_bytes()).hexdigest()
    expected = load_dataset("celeba", root=real, image_size=16, split="train", progress=False).images.numpy()

    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache_device"))  # the device: no cache, no images
    device_root = tmp_path / "device" / "celeba"
    carry_celeba.stage(tmp_path / "carry", device_root, 16)
    assert {p.stat().st_size for p in (device_root / "img_align_celeba").iterdir()} == {0}  # placeholders only
    got = load_dataset("celeba", root=device_root, image_size=16, split="train", progress=False).images.numpy()
    np.testing.assert_array_equal(got, expected)

    # a real copy is never written into
    before = (real / "list_eval_partition.txt").read_text()
    carry_celeba.stage(tmp_path / "carry", real, 16)
    assert (real / "list_eval_partition.txt").read_text() == before


def test_stage_rejects_images_that_do_not_match_their_checksum(tmp_path, monkeypatch):
    real = tmp_path / "celeba"
    _fake_celeba(real, 4)
    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache"))
    carry_celeba.pack(real, 8, tmp_path / "carry")
    note_path = tmp_path / "carry" / "celeba8.json"
    note_path.write_text(json.dumps(dict(json.loads(note_path.read_text()), sha256="0" * 64)))
    with pytest.raises(SystemExit, match="sha256"):
        carry_celeba.stage(tmp_path / "carry", tmp_path / "device", 8)


def test_runs_start_seed_major():
    specs = study.involution_cases((0, 1))
    order = train_experiment.seed_major(specs)
    assert [s.seed for s in order] == [0] * 7 + [1] * 7
    assert [s.label for s in order[:7]] == [s.label for s in specs if s.seed == 0]


def test_train_experiment_writes_the_runs_the_notebook_reuses(tmp_path):
    cmd = [sys.executable, str(REPO / "scripts" / "train_experiment.py"), "01", "--preset", "smoke", "--dataset",
           "synthetic", "--runs-root", str(tmp_path), "--jobs", "2", "--threads", "1", "--steps", "2",
           "--eval-every", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert sorted(o["name"] for o in lines) == ["dcgan-s0", "igan-k3g4r2-s0", "sagan-s0"]
    assert {o["state"] for o in lines} == {"completed"}
    exp = study.experiment("01_gan_comparison", "smoke", dataset="synthetic", steps=2, eval_every=2)
    reused = exp.run(tmp_path, train=False, progress=False)
    assert len(reused) == 3 and all(o["reused"] for o in reused)


def test_train_experiment_stops_its_queue_on_sigint_even_when_started_with_sigint_ignored(tmp_path):
    """As gpu_check.sh starts it (`setsid ... &`: SIGINT inherited ignored), then SIGINT to its process group."""
    import os
    import signal
    import time

    cmd = [sys.executable, str(REPO / "scripts" / "train_experiment.py"), "01", "--preset", "smoke", "--dataset",
           "synthetic", "--runs-root", str(tmp_path), "--jobs", "1", "--threads", "1", "--steps", "100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    first = tmp_path / "smoke" / "synthetic32" / "dcgan-s0" / "metrics.csv"
    deadline = time.time() + 300
    while not (first.exists() and first.stat().st_size > 200) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # the queue went on: stop it all, then fail
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    assert proc.returncode == 130, out
    assert sorted(p.name for p in (tmp_path / "smoke" / "synthetic32").iterdir()) == ["dcgan-s0"]  # none started
    status = json.loads((tmp_path / "smoke" / "synthetic32" / "dcgan-s0" / "status.json").read_text())
    assert status["state"] == "interrupted"


def test_64px_carry_is_jpeg_and_stages_the_pixels_it_recorded(tmp_path, monkeypatch):
    """64 px: JPEG q95 4:4:4 (lossy); the staged cache entry is what gan_lib loads, and its hashes are the ones the
    note recorded when packing (the decode here), the data fingerprint included (what each run's data.json says)."""
    from gan_lib.data.fingerprint import data_fingerprint

    real = tmp_path / "celeba"
    _fake_celeba(real)
    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache_here"))
    note = carry_celeba.pack(real, 64, tmp_path / "carry")
    assert note["format"] == "jpeg" and note["quality"] == 95 and note["chroma"] == "4:4:4"
    assert sorted(p.name for p in (tmp_path / "carry").iterdir()) == ["celeba64.jpg", "celeba64.json"]
    source = load_dataset("celeba", root=real, image_size=64, split="train", progress=False).images.numpy()
    assert note["source_sha256"] == carry_celeba.sha256(source) != note["sha256"]  # lossy: other pixels
    assert 30 < note["psnr_db"] < 60 and note["psnr_db"] == pytest.approx(carry_celeba.psnr(
        carry_celeba.decode((tmp_path / "carry" / "celeba64.jpg").read_bytes(), 10, 64), source), abs=1e-3)

    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache_device"))
    device_root = tmp_path / "device" / "celeba"
    staged = carry_celeba.stage(tmp_path / "carry", device_root, 64)
    assert staged["same_as_packed"] and staged["sha256"] == note["sha256"] and staged["pixels"] == note["pixels"]
    data = load_dataset("celeba", root=device_root, image_size=64, split="train", progress=False)
    assert carry_celeba.sha256(data.images.numpy()) == note["sha256"]
    assert data_fingerprint(data)["pixels"] == note["pixels"]
    assert {p.stat().st_size for p in (device_root / "img_align_celeba").iterdir()} == {0}


def test_stage_checks_the_carried_bytes(tmp_path, monkeypatch):
    real = tmp_path / "celeba"
    _fake_celeba(real, 4)
    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache"))
    carry_celeba.pack(real, 64, tmp_path / "carry")
    jpg = tmp_path / "carry" / "celeba64.jpg"
    data = bytearray(jpg.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, where JPEG would still decode
    jpg.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="bytes do not match"):
        carry_celeba.stage(tmp_path / "carry", tmp_path / "device", 64)
    assert not (tmp_path / "device" / "img_align_celeba").exists()  # nothing staged


def test_32_and_64px_carries_staged_at_one_root_both_load(tmp_path, monkeypatch):
    """Staging the second size must not touch the placeholders of the first (their mtimes key its cache entry)."""
    real = tmp_path / "celeba"
    _fake_celeba(real)
    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache_here"))
    notes = {size: carry_celeba.pack(real, size, tmp_path / "carry") for size in (16, 64)}
    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache_device"))
    root = tmp_path / "device" / "celeba"
    for size in (16, 64):
        time.sleep(0.01)  # (a touch would give the placeholders a later mtime)
        carry_celeba.stage(tmp_path / "carry", root, size)
    for size in (16, 64):  # both cache hits: decoding the empty placeholders would fail
        got = load_dataset("celeba", root=root, image_size=size, split="train", progress=False).images.numpy()
        assert carry_celeba.sha256(got) == notes[size]["sha256"]


def _git_repo(path: Path) -> Path:
    path.mkdir()
    for cmd in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", "-C", str(path), *cmd], check=True)
    (path / ".gitignore").write_text("/ignored/\n/results/runs/\n")
    for rel, size in (("code.py", 100), ("results/runs/a/metrics.csv", 5000), ("results/cpu/t.csv", 700),
                      ("ignored/big.bin", 10**6)):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(b"x" * size)
    subprocess.run(["git", "-C", str(path), "add", ".gitignore", "code.py", "results/cpu/t.csv"], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-f", "results/runs/a/metrics.csv"], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "x"], check=True)
    (path / "untracked.txt").write_bytes(b"y" * 30)
    return path


def test_budget_counts_what_a_call_sends(tmp_path, capsys):
    repo = _git_repo(tmp_path / "repo")
    gitignore = len((repo / ".gitignore").read_bytes())
    total, by_top = carry_celeba.tree_bytes(repo)
    assert total == 100 + 5000 + 700 + 30 + gitignore  # tracked (force-added too) and untracked; not the ignored
    assert by_top["results/runs"] == 5000 and by_top["results/cpu"] == 700
    assert carry_celeba.tree_bytes(repo, ("results/runs", "results/cpu/"))[0] == 130 + gitignore
    carry = tmp_path / "carry"
    carry.mkdir()
    with open(carry / "celeba64.jpg", "wb") as f:
        f.truncate(carry_celeba.CALL_LIMIT - 5000)  # (sparse) fits only without results/runs
    assert carry_celeba.budget(carry, repo=repo) == 1 and "TOO LARGE" in capsys.readouterr().out
    assert carry_celeba.budget(carry, ("results/runs",), repo=repo) == 0 and "fits" in capsys.readouterr().out


def _gpu_check(env: dict, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PY": sys.executable, **env})


def test_gpu_check_packs_the_runs_within_what_a_call_brings_back(tmp_path):
    """Past TAR_MAX_MIB the grids of the seeds after the first go; past TAR_PART_MIB the archive is split; the
    checkpoints never travel."""
    rng = np.random.default_rng(0)
    for label in ("igan-k3g4r2", "igan-k7g4r2"):
        for seed in (0, 1):
            run = tmp_path / "runs" / "05_long_training" / "paper" / "celeba64" / f"{label}-s{seed}"
            (run / "samples").mkdir(parents=True)
            (run / "checkpoints").mkdir()
            (run / "metrics.csv").write_text("step,loss_d\n1,0.5\n")
            (run / "samples" / "step_000000.png").write_bytes(rng.bytes(700 * 1024))  # incompressible
            (run / "checkpoints" / "last.pt").write_bytes(b"0" * 1000)
    out = _gpu_check(dict(PACK_ONLY=str(tmp_path / "runs"), OUT=str(tmp_path / "out"), SEEDS="0,1",
                          TAR_MAX_MIB="2", TAR_PART_MIB="1"), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "without the grids of the seeds after 0" in out.stdout and "without any sample grid" not in out.stdout
    parts = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in parts] == ["runs.tar.gz.0", "runs.tar.gz.1"]
    assert all(p.stat().st_size <= 2**20 for p in parts)
    (tmp_path / "whole.tar.gz").write_bytes(b"".join(p.read_bytes() for p in parts))  # cat runs.tar.gz* | tar
    with tarfile.open(tmp_path / "whole.tar.gz") as tar:
        names = tar.getnames()
    assert not any("checkpoints" in n or n.endswith(".pt") for n in names)
    assert sum(n.endswith("metrics.csv") for n in names) == 4
    grids = sorted(n.split("/")[3] for n in names if n.endswith(".png"))
    assert grids == ["igan-k3g4r2-s0", "igan-k7g4r2-s0"]


@pytest.mark.slow
def test_gpu_check_dry_run_exercises_every_stage(tmp_path, monkeypatch):
    """DEVICE=cpu QUICK=1: the whole call on the CPU, on a fake CelebA packed at 64 px (JPEG) and staged as the
    device would; notebook 05's runs (paper preset, shrunk in the driver) trained stacked; what comes back is
    what the tool brings back (8 files at most, 16 MiB each), and the runs unpacked from it are the ones the
    notebook reuses with the --steps and --eval-every the summary names."""
    from gan_lib.config import PRESETS

    real = tmp_path / "celeba"
    _fake_celeba(real)
    monkeypatch.setenv("GAN_LIB_CACHE", str(tmp_path / "cache"))  # (the script's subprocesses get it too)
    note = carry_celeba.pack(real, 64, tmp_path / "carry")
    out_dir, stage_root = tmp_path / "out", tmp_path / "device" / "celeba"
    t0 = time.time()
    out = _gpu_check(dict(DEVICE="cpu", QUICK="1", OUT=str(out_dir), CARRY=str(tmp_path / "carry"),
                          STAGE_ROOT=str(stage_root)), timeout=600)
    wall = time.time() - t0
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    files = sorted(p.name for p in out_dir.iterdir())
    assert len(files) <= 8 and all((out_dir / f).stat().st_size <= 16 * 2**20 for f in files), files
    assert {"nvidia-smi.txt", "test_cuda.log", "train_step.log", "runs.log", "summary.txt"} <= set(files)
    assert "3 passed" in (out_dir / "test_cuda.log").read_text()  # dcgan fp32, stacked == single fp64 and fp32
    bench = (out_dir / "train_step.log").read_text()
    for variant in ("fp32", "fp32-tf32", "bf16"):
        assert f"== {variant} seeds=2:" in bench
        assert f"== {variant} seeds=4096: skipped" in bench  # predicted from N=2 not to fit the budget
    lines = bench.splitlines()
    assert sum(line.startswith("sec_per_step=") for line in lines) == 6  # N = 1, 2 of each variant
    assert sum(line.startswith("stacking_speedup=") for line in lines) == 3
    for variant in ("graph-bf16", "graph-fp32-tf32"):  # the --cuda-graph rows: CUDA only, one line each here
        assert f"== {variant}: skipped, --cuda-graph needs a CUDA device (DEVICE=cpu)" in lines
    assert not any(line.startswith("cuda_graph") for line in lines)
    assert "Self CPU" in bench  # the profile of one of them
    summary = (out_dir / "summary.txt").read_text()
    assert "graph-bf16: skipped, --cuda-graph needs a CUDA device" in summary
    assert note["sha256"] in summary and note["pixels"] in summary  # the data the runs trained on
    runs_log = (out_dir / "runs.log").read_text()
    assert "calibration:" in runs_log and "-- runs: --steps" in runs_log
    steps, every = (int(v) for v in runs_log.split("-- runs: --steps ")[1].split(" (")[0].split(" --eval-every "))
    assert steps in (2, 4) and f"--steps {steps} --eval-every {every} --seeds 0,1" in summary

    unpacked = tmp_path / "results_runs"
    unpacked.mkdir()
    archive = b"".join((out_dir / f).read_bytes() for f in files if f.startswith("runs.tar.gz"))
    subprocess.run(["tar", "-xzf", "-", "-C", str(unpacked)], input=archive, check=True)
    runs = sorted((unpacked / "05_long_training" / "paper" / "celeba64").iterdir())
    assert len(runs) == 10  # 5 configurations x 2 seeds
    for run in runs:
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "completed" and status["step"] == steps and status["stacked_seeds"] == [0, 1]
        assert json.loads((run / "data.json").read_text())["pixels"] == note["pixels"]
        assert not (run / "checkpoints").exists()
        assert len((run / "metrics.csv").read_text().splitlines()) == steps + 1
    # the render (reproduce --no-train) reuses every run with the summary's --steps / --eval-every
    patched = dict(PRESETS["paper"])
    PRESETS["paper"].update(width=8, batch_size=8, eval_num_samples=32)  # what QUICK's driver did
    try:
        exp = study.experiment("05_long_training", "paper", data_root=str(stage_root), seeds=(0, 1), steps=steps,
                               eval_every=every)
        reused = exp.run(unpacked, train=False, progress=False)
    finally:
        PRESETS["paper"].clear()
        PRESETS["paper"].update(patched)
    assert len(reused) == 10 and all(o["reused"] for o in reused)
    print(f"dry run: {wall:.0f} s")


def test_train_experiment_configs_trains_only_the_named_configurations(tmp_path, capsys):
    args = ["01", "--preset", "smoke", "--dataset", "synthetic", "--runs-root", str(tmp_path), "--threads", "1",
            "--steps", "2", "--eval-every", "2"]
    assert train_experiment.main(args + ["--configs", "sagan,nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope not in 01_gan_comparison" in err and "dcgan" in err
    assert train_experiment.main(args + ["--configs", "sagan"]) == 0
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(o["name"], o["state"]) for o in lines] == [("sagan-s0", "completed")]
    assert "1 of 1 runs finished" in out
    assert sorted(p.name for p in (tmp_path / "smoke" / "synthetic32").iterdir()) == ["sagan-s0"]
