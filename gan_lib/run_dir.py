"""One run folder, self-describing::

    config.json            the TrainConfig
    metrics.csv            one row per generator step (appended, flushed)
    evals.csv              step + one column per metric from gan_lib.metrics.evaluate
    status.json            state (running|completed|diverged|interrupted|failed), step, reason, timestamps
    samples/step_XXXXXX.png  sample grids from a fixed z
    checkpoints/last.pt, checkpoints/best.pt

Every JSON / checkpoint / image write is atomic (temporary file in the same folder + ``os.replace``), so a
crash never leaves a half-written file behind.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path

import torch

METRIC_COLUMNS = ("step", "loss_d", "loss_g", "gp", "emd", "lr_g", "lr_d", "sec_per_step")
STATES = ("running", "completed", "diverged", "interrupted", "failed")


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunDir:
    """Paths and (atomic) readers/writers of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.csv"
        self.evals_path = self.path / "evals.csv"
        self.status_path = self.path / "status.json"
        self.samples_dir = self.path / "samples"
        self.checkpoints_dir = self.path / "checkpoints"

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def create(self) -> "RunDir":
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        return self

    # --- config ---
    def save_config(self, config: dict) -> None:
        atomic_write_text(self.config_path, json.dumps(config, indent=2) + "\n")

    def load_config(self) -> dict:
        return json.loads(self.config_path.read_text())

    # --- per-step metrics ---
    def append_metrics(self, rows: list[dict]) -> None:
        """Append rows (dicts with METRIC_COLUMNS) to metrics.csv; writes the header on a new file."""
        if not rows:
            return
        new = not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0
        with open(self.metrics_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)
            f.flush()

    def read_metrics(self) -> list[dict]:
        return _read_csv(self.metrics_path)

    # --- evaluations ---
    def append_eval(self, row: dict) -> None:
        """Add one evaluation row (``step`` + metric values); new metric names widen the file's columns."""
        rows = _read_csv(self.evals_path) + [{k: v for k, v in row.items()}]
        columns = ["step"] + sorted({k for r in rows for k in r} - {"step"})
        _write_csv(self.evals_path, columns, rows)

    def read_evals(self) -> list[dict]:
        return _read_csv(self.evals_path)

    def truncate(self, step: int) -> None:
        """Drop metrics/evals rows after ``step`` (a resumed run rewrites them exactly)."""
        for path, columns in ((self.metrics_path, METRIC_COLUMNS), (self.evals_path, None)):
            if not path.exists():
                continue
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                cols = reader.fieldnames or list(columns or ["step"])
                rows = list(reader)
            keep = [r for r in rows if int(float(r["step"])) <= step]
            if len(keep) != len(rows):
                _write_csv(path, cols, keep)

    # --- status ---
    def write_status(self, **fields) -> dict:
        """Merge ``fields`` into status.json (adds ``updated_at``) and return the new status."""
        status = self.read_status()
        status.update(fields)
        if status.get("state") not in STATES:
            raise ValueError(f"bad state {status.get('state')!r}; one of {STATES}")
        status["updated_at"] = _now()
        atomic_write_text(self.status_path, json.dumps(status, indent=2) + "\n")
        return status

    def read_status(self) -> dict:
        return json.loads(self.status_path.read_text()) if self.status_path.exists() else {}

    # --- checkpoints ---
    def checkpoint_path(self, name: str = "last") -> Path:
        return self.checkpoints_dir / f"{name}.pt"

    def has_checkpoint(self, name: str = "last") -> bool:
        return self.checkpoint_path(name).exists()

    def save_checkpoint(self, state: dict, name: str = "last") -> Path:
        path = self.checkpoint_path(name)
        atomic_write(path, lambda f: torch.save(state, f))
        return path

    def load_checkpoint(self, name: str = "last", map_location="cpu") -> dict:
        return torch.load(self.checkpoint_path(name), map_location=map_location, weights_only=False)

    # --- samples ---
    def sample_path(self, step: int) -> Path:
        return self.samples_dir / f"step_{step:06d}.png"

    def save_samples(self, images: torch.Tensor, step: int, nrow: int = 8) -> Path:
        """Save a grid of images in [-1, 1] as samples/step_XXXXXX.png."""
        from torchvision.utils import save_image

        path = self.sample_path(step)
        buf = io.BytesIO()
        save_image(images.detach().float().cpu(), buf, nrow=nrow, normalize=True, value_range=(-1, 1),
                   format="png")
        atomic_write(path, lambda f: f.write(buf.getvalue()))
        return path


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, columns, rows) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
