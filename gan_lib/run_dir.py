"""One run folder, self-describing::

    config.json            the TrainConfig
    data.json              the fingerprint of the data it trains on (gan_lib.data.data_fingerprint)
    metrics.csv            one row per generator step (appended, flushed)
    evals.csv              step + one column per metric from gan_lib.metrics.evaluate
    status.json            state (running|completed|diverged|interrupted|failed), step, reason, timestamps, and
                           the writer's pid, host and heartbeat (see `RunDir.liveness`)
    samples/step_XXXXXX.png  sample grids from a fixed z
    checkpoints/last.pt, checkpoints/best.pt   each with its checksum inside (gan_lib.checkpoint), and the
                           previous one kept as last.prev.pt / best.prev.pt
    .lock                  held by the process training the folder (gan_lib.run_lock)

Every JSON / checkpoint / image write is atomic (temporary file in the same folder + ``os.replace``), so a
crash never leaves a half-written file behind; files get the usual mode (0644 under umask 022). A full disk
raises `DiskFull` naming the filesystem and, for checkpoints, the last good one.

Starting a run: ``with run.claim(restart=...):`` takes the lock (a second writer gets `RunLocked`), moves an old
run aside on restart, and removes temporary files a killed writer left; `RunDir.check_can_start` then refuses
to overwrite a folder that holds a run but no checkpoint (`RunExists`).
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from . import checkpoint
from .checkpoint import CheckpointError
from .errors import UserError
from .run_lock import LOCK_NAME, RunLock, RunLocked, holds_lock, lock_holder

__all__ = ["RunDir", "atomic_write", "atomic_write_text", "no_space_errors", "RunDirError", "RunExists",
           "RunLocked", "CheckpointError", "DiskFull", "METRIC_COLUMNS", "STATES"]

METRIC_COLUMNS = ("step", "loss_d", "loss_g", "gp", "emd", "lr_g", "lr_d", "sec_per_step")
STATES = ("running", "completed", "diverged", "interrupted", "failed")


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (once, at import)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


class RunDirError(UserError):
    """A run folder that cannot be used as asked (the message says why and what to do)."""


class RunExists(RunDirError):
    """The folder holds a run that has no checkpoint to resume from; it is never overwritten."""


class DiskFull(RunDirError):
    """No space left (or quota exceeded) while writing ``path``; names the filesystem and what was kept."""

    def __init__(self, path: str | Path, kept: str | None = None):
        self.path = Path(path)
        super().__init__(f"no space left on {describe_filesystem(self.path)} while writing {self.path}"
                         + (f"; {kept}" if kept else "") + ". Free some space, then run the same command to resume")


def describe_filesystem(path: str | Path) -> str:
    """``/dev/sda1 (mounted at /work, 12 MB free)`` for the filesystem holding ``path``."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    mount = p
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    device = str(mount)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 1 and parts[1] == str(mount):
                    device = parts[0]  # the last entry for a mount point is the one in effect
    except OSError:
        pass
    try:
        free = f", {shutil.disk_usage(mount).free / 1e6:.0f} MB free"
    except OSError:
        free = ""
    return f"{device} (mounted at {mount}{free})"


@contextlib.contextmanager
def no_space_errors(path: str | Path):
    """Turn ``OSError`` ENOSPC / EDQUOT raised inside into `DiskFull` naming ``path`` and its filesystem."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(path) from e
        raise


def atomic_write(path: str | Path, write, before_replace: Callable[[], None] | None = None) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it onto ``path``.

    The file gets the process's usual mode (`FILE_MODE`, 0644 under umask 022). ``before_replace()`` runs once
    the new contents are on disk, just before the rename (`RunDir.save_checkpoint` keeps the previous file
    there). A full disk raises `DiskFull`; the temporary file is removed on any error.
    """
    path = Path(path)
    with no_space_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            if before_replace is not None:
                before_replace()
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


STALE_AFTER = 1800.0  # seconds without a heartbeat after which a lock-less "running" run counts as stale
RUN_FILES = ("config.json", "data.json", "metrics.csv", "evals.csv", "status.json")
# What else a folder may hold before its run starts: the study runner's log and config hand-off, evaluations.
NOT_FOREIGN = ("samples", "checkpoints", "train.log", "request.json", "eval_best.json", "eval_last.json")


class RunDir:
    """Paths and (atomic) readers/writers of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.config_path = self.path / "config.json"
        self.data_path = self.path / "data.json"
        self.metrics_path = self.path / "metrics.csv"
        self.evals_path = self.path / "evals.csv"
        self.status_path = self.path / "status.json"
        self.samples_dir = self.path / "samples"
        self.checkpoints_dir = self.path / "checkpoints"
        self.lock_path = self.path / LOCK_NAME
        self.moved_to: Path | None = None  # where claim(restart=True) moved the old run
        self._good: dict[str, int | None] = {}  # checkpoint name -> step of the last one saved or loaded
        self._damaged: set[str] = set()  # checkpoints found damaged by load_checkpoint (not rotated into .prev)
        self._last_heartbeat = 0.0

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def check_path(self) -> "RunDir":
        """`RunDirError` when the folder path cannot be a folder (it, or a parent, is a file or a dangling symlink)."""
        if self.path.is_symlink() and not self.path.exists():
            raise RunDirError(f"run folder {self.path} is a symlink to {os.readlink(self.path)}, which does not exist: "
                              "create it, or pass another folder (--out)")
        for p in (self.path, *self.path.parents):
            if p.exists() and not p.is_dir():
                what = "is a file" if p == self.path else f"is inside {p}, which is a file"
                raise RunDirError(f"run folder {self.path} {what}; pass a folder path (--out)")
        return self

    def create(self) -> "RunDir":
        self.check_path()
        try:
            self.samples_dir.mkdir(parents=True, exist_ok=True)
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        except PermissionError as e:
            raise RunDirError(f"cannot create run folder {self.path}: permission denied ({e.filename})") from None
        return self

    # --- who may write the folder ---
    def lock(self, wait: float = 2.0) -> RunLock:
        """The folder's exclusive lock, a context manager (`gan_lib.run_lock`); `RunLocked` names the holder."""
        self.check_path()
        return RunLock(self.path, wait=wait)

    def lock_holder(self) -> dict | None:
        """The process training this folder now (pid, host, started_at, command), or ``None``."""
        return lock_holder(self.path)

    @contextlib.contextmanager
    def claim(self, restart: bool = False, wait: float = 2.0):
        """Hold the folder for a training run: ``with run.claim(restart=...):`` around the whole run.

        Takes the lock (`RunLocked` when another process trains it); with ``restart`` moves an existing run
        aside (`move_aside`, nothing deleted; `moved_to` says where) and locks the fresh folder; removes the
        temporary files of a killed writer (`clean_tmp`). Then call `check_can_start`.
        """
        if restart and holds_lock(self.path):
            raise RuntimeError(f"claim(restart=True) on {self.path}, which this process already holds")
        lock = self.lock(wait)
        lock.acquire()
        try:
            if restart and self.run_files():
                self.moved_to = self.move_aside()
                lock.release()
                lock = self.lock(wait)
                lock.acquire()
            self.clean_tmp()
            yield self
        finally:
            lock.release()

    def run_files(self) -> list[str]:
        """The run files the folder holds (relative paths; the lock, logs and temporary files do not count)."""
        found = [name for name in RUN_FILES if (self.path / name).exists()]
        for folder, pattern in ((self.samples_dir, "*.png"), (self.checkpoints_dir, "*.pt*")):
            if folder.is_dir():
                found += [f"{folder.name}/{p.name}" for p in sorted(folder.glob(pattern)) if not p.name.startswith(".")]
        return found

    def check_can_start(self, config_matches: Callable[[dict], bool] | None = None) -> str:
        """``"resume"`` (a checkpoint to resume from), ``"new"`` (nothing to lose), else `RunExists`.

        A folder that holds a run but no checkpoint is never overwritten, except a run of the same config
        (``config_matches(config.json dict)`` true) that stopped before its first checkpoint without finishing:
        starting it over recomputes what is there. Completed and diverged runs without checkpoints (committed
        run records) are always refused.
        """
        if self.has_checkpoint("last"):
            return "resume"
        files = self.run_files()
        if not files:
            foreign = sorted(p.name for p in self.path.iterdir() if not p.name.startswith(".")
                             and p.name not in NOT_FOREIGN) if self.path.is_dir() else []
            if foreign:  # a folder of other things (--out . or /tmp): a run would scatter its files among them
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise RunExists(f"{self.path} holds other files ({shown}) and no run: pass a new or empty folder, "
                                f"e.g. {self.path / 'igan'} (--out)")
            return "new"
        state = self.read_status().get("state")
        if (config_matches is not None and state not in ("completed", "diverged") and self.config_path.exists()
                and config_matches(self.load_config())):
            return "new"
        shown = ", ".join(files[:5]) + (", ..." if len(files) > 5 else "")
        why = f"{'an' if state[0] in 'aeiou' else 'a'} {state} run" if state else "a run"
        raise RunExists(f"{self.path} holds {why} ({shown}) but no checkpoint to resume from, so it is not "
                        f"overwritten. To start over, run the same command with --restart (the old folder is "
                        f"moved to {self.path.name}.old-<time>, nothing is deleted), or use another --out folder")

    def move_aside(self) -> Path:
        """Rename the folder to ``<name>.old-<YYYYmmdd-HHMMSS>`` (never deletes) and return the new path. Call it
        through ``claim(restart=True)``, which holds the lock meanwhile."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target, n = self.path.with_name(f"{self.path.name}.old-{stamp}"), 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.old-{stamp}-{n}")
        os.rename(self.path, target)
        return target

    def clean_tmp(self) -> list[Path]:
        """Remove the ``.*.tmp`` files an interrupted atomic write left (e.g. a ``kill -9`` during a checkpoint
        write); returns them. Needs the folder's lock: a live writer's temporary files are not touched."""
        if not holds_lock(self.path):
            raise RuntimeError(f"clean_tmp on {self.path} needs its lock (with run.claim() or run.lock())")
        removed = []
        for folder in (self.path, self.checkpoints_dir, self.samples_dir):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed

    # --- config and data ---
    def save_config(self, config: dict) -> None:
        atomic_write_text(self.config_path, json.dumps(config, indent=2) + "\n")

    def _read_json(self, path: Path):
        """A JSON file of the folder; `RunDirError` (one line, what to do) when it is not JSON: the folder's files
        are written atomically, so only a hand edit or a damaged disk does that."""
        try:
            return json.loads(path.read_text())
        except ValueError as e:
            raise RunDirError(f"{path} is not valid JSON ({e}): repair it, or start the run over with --restart "
                              "(the folder is moved aside, not deleted)") from None

    def load_config(self) -> dict:
        return self._read_json(self.config_path)

    def save_data_fingerprint(self, fingerprint: dict) -> None:
        """data.json: what `gan_lib.data.data_fingerprint` says about the run's training data."""
        atomic_write_text(self.data_path, json.dumps(fingerprint, indent=2) + "\n")

    def read_data_fingerprint(self) -> dict | None:
        return self._read_json(self.data_path) if self.data_path.exists() else None

    # --- per-step metrics ---
    def append_metrics(self, rows: list[dict]) -> None:
        """Append rows (dicts with METRIC_COLUMNS) to metrics.csv; writes the header on a new file."""
        if not rows:
            return
        new = not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0
        with no_space_errors(self.metrics_path), open(self.metrics_path, "a", newline="") as f:
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
        """Drop metrics/evals rows after ``step`` (a resumed run rewrites them exactly), and rows cut short by a
        crash or a full disk."""
        for path, columns in ((self.metrics_path, METRIC_COLUMNS), (self.evals_path, None)):
            if not path.exists():
                continue
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                cols = reader.fieldnames or list(columns or ["step"])
                rows = list(reader)
            keep = [r for r in rows if _row_step(r, len(cols)) is not None and _row_step(r, len(cols)) <= step]
            if len(keep) != len(rows):
                _write_csv(path, cols, keep)

    # --- status ---
    def write_status(self, **fields) -> dict:
        """Merge ``fields`` into status.json, stamp it with this process (``pid``, ``host``) and the time
        (``updated_at``, and ``heartbeat`` in epoch seconds), and return the new status."""
        status = self.read_status()
        status.update(fields)
        if status.get("state") not in STATES:
            raise ValueError(f"bad state {status.get('state')!r}; one of {STATES}")
        now = time.time()
        status.update(pid=os.getpid(), host=socket.gethostname(), updated_at=_now(), heartbeat=round(now, 3))
        atomic_write_text(self.status_path, json.dumps(status, indent=2) + "\n")
        self._last_heartbeat = now
        return status

    def try_write_status(self, **fields) -> dict | None:
        """`write_status` that never raises for the disk (for error handlers: a full disk must not hide the
        error being reported); ``None`` when it could not write."""
        try:
            return self.write_status(**fields)
        except (OSError, DiskFull):
            return None

    def heartbeat(self, min_interval: float = 30.0) -> bool:
        """Refresh status.json's heartbeat if the last write is ``min_interval`` seconds old (a running run
        calls this often; it writes at most every ``min_interval``). Returns whether it wrote."""
        if time.time() - self._last_heartbeat < min_interval:
            return False
        self.write_status()
        return True

    def read_status(self) -> dict:
        """status.json's fields ({} before the first write); `RunDirError` when the file is not JSON (it is always
        written atomically, so only a hand edit or a damaged disk does that)."""
        return self._read_json(self.status_path) if self.status_path.exists() else {}

    def liveness(self, status: dict | None = None) -> str | None:
        """For a status in state "running": ``"live"`` (a process trains the folder now), ``"stale"`` (nobody
        does: the writer crashed or was killed) or ``"unknown"``; ``None`` for any other state.

        Decided by the folder's lock when there is one (held: live; free: stale), else by the status's pid on
        this host (alive or not), else by its heartbeat (stale after `STALE_AFTER` seconds).
        """
        status = self.read_status() if status is None else status
        if status.get("state") != "running":
            return None
        try:
            if self.lock_holder() is not None:
                return "live"
            if self.lock_path.exists():
                return "stale"
        except OSError:
            pass  # no flock on this filesystem: judge by pid and heartbeat
        pid, host = status.get("pid"), status.get("host")
        if pid and host == socket.gethostname():
            return "live" if _pid_alive(int(pid)) else "stale"
        beat = status.get("heartbeat")
        if isinstance(beat, (int, float)):
            return "stale" if time.time() - beat > STALE_AFTER else "live"
        return "unknown"

    def effective_state(self, status: dict | None = None) -> str | None:
        """status.json's state, except ``"stale"`` for a "running" run that no process trains any more."""
        status = self.read_status() if status is None else status
        return "stale" if self.liveness(status) == "stale" else status.get("state")

    # --- checkpoints ---
    def checkpoint_path(self, name: str = "last") -> Path:
        return self.checkpoints_dir / f"{name}.pt"

    def previous_checkpoint_path(self, name: str = "last") -> Path:
        """The checkpoint ``name`` replaced last (``last.prev.pt``): the fallback when ``last.pt`` is damaged."""
        return self.checkpoints_dir / f"{name}.prev.pt"

    def has_checkpoint(self, name: str = "last") -> bool:
        """Whether ``name.pt`` or its previous one exists (`load_checkpoint` says whether either is usable)."""
        return self.checkpoint_path(name).exists() or self.previous_checkpoint_path(name).exists()

    def save_checkpoint(self, state: dict, name: str = "last") -> Path:
        """Write ``name.pt`` atomically with its checksum inside (`gan_lib.checkpoint`), keeping the one it
        replaces as ``name.prev.pt`` (a file `load_checkpoint` found damaged is kept as ``name.pt.damaged``
        instead). A full disk raises `DiskFull` saying which checkpoint is still good."""
        path, prev = self.checkpoint_path(name), self.previous_checkpoint_path(name)
        data = checkpoint.to_bytes(state)

        def keep_previous():
            if path.exists():
                if name in self._damaged:
                    os.replace(path, path.with_name(path.name + ".damaged"))
                else:
                    os.replace(path, prev)

        try:
            atomic_write(path, lambda f: f.write(data), before_replace=keep_previous)
        except DiskFull as e:
            raise DiskFull(path, self._last_good(name)) from e.__cause__
        self._damaged.discard(name)
        self._good[name] = state.get("step")
        return path

    def last_good_step(self, name: str = "last") -> int | None:
        """The step of the last checkpoint ``name`` this object saved or loaded (for ``last`` with neither: the
        ``checkpoint_step`` status.json records), without reading the checkpoint; None when there is none."""
        if name in self._good:
            return self._good[name]
        return self.read_status().get("checkpoint_step") if name == "last" else None

    def _last_good(self, name: str) -> str:
        step = self.last_good_step(name)
        if step is None:
            return f"no {name} checkpoint was written yet"
        return f"last good checkpoint at step {step} ({self.checkpoint_path(name)})"

    def load_checkpoint(self, name: str = "last", map_location="cpu", advice: str | None = None) -> dict:
        """The verified checkpoint ``name``; when ``name.pt`` is damaged or missing, the previous one
        (``name.prev.pt``) with a warning. `CheckpointError` naming the files when neither is usable, with
        ``advice`` (default, for ``last``: start the run over with --restart)."""
        path, prev = self.checkpoint_path(name), self.previous_checkpoint_path(name)
        problems = []
        for candidate in (path, prev):
            if not candidate.exists():
                continue
            try:
                state = checkpoint.read(candidate, map_location)
            except CheckpointError as e:
                problems.append(str(e))
                continue
            if candidate == prev:
                if path.exists():
                    self._damaged.add(name)
                why = problems[0] if problems else f"checkpoint {path} is missing"
                warnings.warn(f"{why}; using the previous checkpoint {prev} (step {state.get('step')})",
                              stacklevel=2)
            self._good[name] = state.get("step")
            return state
        if not problems:
            raise CheckpointError(f"no checkpoint {path} in {self.path}")
        if advice is None and name == "last":
            advice = "start over with --restart (the folder is moved aside, not deleted)"
        raise CheckpointError("; ".join(problems) + (f". No usable {name} checkpoint is left: {advice}"
                                                     if advice else ""))

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _row_step(row: dict, ncols: int) -> int | None:
    """The step of a CSV row, or None for a row cut short (missing fields) or unparsable."""
    if None in row or any(v is None for v in row.values()):  # too many fields, or too few
        return None
    try:
        return int(float(row["step"]))
    except (TypeError, ValueError):
        return None


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
