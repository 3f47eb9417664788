"""scripts/record_runs.sh stages finished run folders (never running ones, never checkpoints)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_folder(root: Path, name: str, state: str) -> Path:
    d = root / "cpu" / "celeba32" / name
    (d / "samples").mkdir(parents=True)
    (d / "checkpoints").mkdir()
    (d / "config.json").write_text("{}")
    (d / "metrics.csv").write_text("step\n1\n")
    (d / "evals.csv").write_text("step,swd\n1,2.0\n")
    (d / "status.json").write_text(json.dumps({"state": state, "step": 1, "steps": 1}))
    (d / "samples" / "step_000000.png").write_bytes(b"png")
    (d / "checkpoints" / "last.pt").write_bytes(b"ckpt")
    return d


def test_record_runs_stages_only_finished_runs(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "record_runs.sh", repo / "scripts")
    (repo / ".gitignore").write_text("/results/runs/\n*.pt\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    root = repo / "results" / "runs"
    _run_folder(root, "a-s0", "completed")
    _run_folder(root, "b-s0", "diverged")
    _run_folder(root, "c-s0", "running")
    out = subprocess.run(["bash", "scripts/record_runs.sh"], cwd=repo, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    staged = subprocess.run([*git, "diff", "--cached", "--name-only"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "recorded results/runs/cpu/celeba32/a-s0" in out.stdout
    assert {Path(p).parts[4] for p in staged} == {"a-s0", "b-s0"}  # the running run is left out
    assert not [p for p in staged if p.endswith(".pt")]  # checkpoints never
    assert "results/runs/cpu/celeba32/a-s0/samples/step_000000.png" in staged
