"""The scripts of a device call (scripts/gpu_check.sh): carrying CelebA to a machine without it, and training an
experiment's runs without papermill."""
import json
import subprocess
import sys
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
