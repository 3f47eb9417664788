"""benchmarks/authors_step.py: the authors' vendored iGAN step runs, is timed against ours, and prints what its
callers parse (the LAST line is sec_per_step=...); the vendored models are theirs, unchanged, at the paper shape."""
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
AUTHORS = REPO / "benchmarks" / "authors"
SCRIPT = REPO / "benchmarks" / "authors_step.py"


def run_script(*args, check=True):
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=REPO)
    if check:
        assert out.returncode == 0, out.stderr[-2000:]
    return out


def value(lines, key) -> float:
    (line,) = [ln for ln in lines if ln.startswith(f"{key}=")]
    return float(line.split("=", 1)[1].split()[0])


def test_compare_times_theirs_and_ours_and_ends_with_sec_per_step():
    # their models build only at 64x64 and width 64; batch 2 keeps the step small
    lines = run_script("--batch", "2", "--steps", "1", "--warmup", "0", "--compare", "--rounds", "1",
                       "--device", "cpu", "--threads", "1").stdout.strip().splitlines()
    assert lines[-1].startswith("sec_per_step=")
    sec, ours = value(lines, "sec_per_step"), value(lines, "ours_sec_per_step")
    assert sec > 0 and ours > 0
    assert lines[-2].startswith("speedup_vs_authors=")
    assert value(lines, "speedup_vs_authors") == pytest.approx(sec / ours, rel=1e-2)
    first = lines[0]
    assert first.startswith("model=authors-igan") and "precision=fp32" in first and "batch=2" in first
    assert "image_size=64" in first and "width=64" in first and "amx=" in first and "cpu=" in first
    assert re.search(r"last losses d=-?\d+\.\d+ g=-?\d+\.\d+ gp=\d+\.\d+", "\n".join(lines))  # finite losses


def test_shapes_their_models_cannot_build_are_refused():
    out = run_script("--image-size", "32", "--width", "8", "--steps", "1", check=False)
    assert out.returncode == 2 and "only at --image-size 64 --width 64" in out.stderr


def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_vendored_files_are_the_authors_unchanged():
    """igan_models.py, spectral.py and LICENSE are byte-identical to the source commit: their git blob ids are the
    ones recorded in benchmarks/authors/README.md (= `git ls-tree f049f76 <file>` of their repository)."""
    readme = (AUTHORS / "README.md").read_text()
    for name, blob in [("igan_models.py", "8faacb5fd4f23d2da14bc45a5ba10fe643ace259"),
                       ("spectral.py", "39b2c037d1f68e3b4e7ad0b282139f73712ffaca"),
                       ("LICENSE", "df8213d931e5f32b371340a9adf2c2ebc8a87fb1")]:
        assert git_blob_id(AUTHORS / name) == blob, name
        assert blob in readme, name
    assert "MIT License" in (AUTHORS / "LICENSE").read_text()


def test_vendored_models_build_at_the_paper_shape_and_match_our_parameter_count():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from authors_step import UNUSED, build_authors
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    import operator

    from gan_lib.config import make_config
    from gan_lib.train import build_models

    trainer, loader = build_authors(batch=2, image_size=64, width=64, device=torch.device("cpu"))
    G, D = trainer.G, trainer.D
    assert len(loader) == 128 and loader[0][0].shape == (2, 3, 64, 64)
    assert (trainer.z_dim, trainer.lambda_gp, trainer.g_lr, trainer.d_lr) == (128, 10, 1e-4, 4e-4)
    assert trainer.d_optimizer.defaults["betas"] == (0.0, 0.9)
    with torch.no_grad():
        img, _, _ = G(torch.randn(2, 128))
        out, _, _ = D(img)
    assert img.shape == (2, 3, 64, 64) and out.shape == (2,)
    assert [type(m).__name__ for m in (G.inv1, D.inv2)] == ["Involution2d", "Involution2d"]
    assert G.inv1.unfold.kernel_size == (3, 3) and G.inv1.groups == 4 and G.inv1.reduce_ratio == 2
    trainable = sum(p.numel() for m in (G, D) for p in m.parameters() if p.requires_grad)
    unused = sum(p.numel() for m in UNUSED for p in operator.attrgetter(m)(trainer).parameters())
    assert trainable == 6_675_512 and unused == 97_132
    # the layers their forward passes use have exactly our paper-shape iGAN's parameter count
    ours_G, ours_D = build_models(make_config("paper", model="igan", image_size=64, width=64, device="cpu"))
    ours = sum(p.numel() for m in (ours_G, ours_D) for p in m.parameters() if p.requires_grad)
    assert trainable - unused == ours == 6_578_380
