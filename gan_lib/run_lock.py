"""An exclusive lock on a run folder, held by the process that trains it for the run's whole life.

The lock is an OS lock (``flock``, through `filelock.lock_descriptor`) on ``<run>/.lock``: the kernel releases
it when the process ends in any way (exit, exception, ``kill -9``), so a crashed run never leaves a lock that
blocks the next attempt, and no pid guessing is needed to break one. While held, the file records who holds it
(pid, host, start time, command line), so a second writer's error names the holder::

    RunLocked: runs/x is being trained by pid 123 on host h since 2024-05-01T10:00:00+0000 (python -m gan_lib
    train ...); wait for it to finish or stop it, then run the command again

The lock is re-entrant within a process (a process that already holds a folder's lock may take it again:
``train`` called from the CLI, several seeds trained by one process), and is not inherited across ``exec``
(the descriptor is close-on-exec). `lock_holder` tells, without disturbing the holder, whether a folder is
being trained right now; it is what tells a crashed run (status "running", lock free) from a live one.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

import filelock

from .errors import EXIT_LOCKED, UserError

LOCK_NAME = ".lock"
_POLL = 0.05


class RunLocked(UserError):
    """Another process holds the run folder's lock; the message names it (pid, host, since when)."""

    exit_code = EXIT_LOCKED

    def __init__(self, folder: Path, holder: dict):
        self.folder, self.holder = Path(folder), dict(holder)
        super().__init__(f"{folder} is being trained by {describe_holder(holder)}; wait for it to finish or stop "
                         f"it, then run the command again")


def describe_holder(holder: dict) -> str:
    """``pid 123 on host h since <time> (<command>)``, or a vaguer phrase when the holder did not record itself
    yet (it has just taken the lock)."""
    if not holder.get("pid"):
        return "another process (which has not recorded its pid yet)"
    text = f"pid {holder['pid']} on host {holder.get('host', '?')} since {holder.get('started_at', '?')}"
    return text + (f" ({holder['command']})" if holder.get("command") else "")


def this_holder() -> dict:
    """What the lock file records about the current process."""
    command = " ".join([Path(sys.executable).name, *sys.argv])
    return {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "started": time.time(), "command": command[:300]}


# realpath of a lock file -> [descriptor, count] for the locks this process holds
_held: dict[str, list] = {}
_held_guard = threading.Lock()


class RunLock:
    """``with RunLock(folder): ...`` holds ``folder/.lock`` exclusively (folder created if missing).

    ``wait``: seconds to keep trying while another process holds it (default 2 s: long enough to ride out a
    `lock_holder` probe, short enough that a second ``train`` on a busy folder fails at once).
    """

    def __init__(self, folder: str | Path, wait: float = 2.0):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.wait = wait
        self._key: str | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        with _held_guard:
            if key in _held:  # re-entrant within this process
                _held[key][1] += 1
                self._key = key
                return
            fd = self._open_locked()
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(this_holder()).encode(), 0)
            _held[key] = [fd, 1]
            self._key = key

    def _open_locked(self) -> int:
        """Open and lock the lock file; `RunLocked` when another process keeps it past ``wait``."""
        deadline = time.monotonic() + self.wait
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                locked = self._try_lock(fd)
                if locked and _same_file(fd, self.path):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # held by another process, or locked a file since moved away (a restart): again
            if time.monotonic() >= deadline:
                raise RunLocked(self.folder, read_holder(self.path))
            time.sleep(_POLL)

    def _try_lock(self, fd: int) -> bool:
        try:
            return filelock.lock_descriptor(fd, blocking=False)
        except OSError as e:  # a filesystem without flock (some network mounts): run unprotected
            warnings.warn(f"cannot lock {self.path} ({e}); this filesystem does not support flock, so a second "
                          f"process training the same folder would not be stopped", stacklevel=5)
            return True

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _held_guard:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                try:
                    filelock.unlock_descriptor(entry[0])
                except OSError:
                    pass  # never locked (no flock here) or already gone: closing releases anyway
                os.close(entry[0])


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (the folder was not moved aside while we waited)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def holds_lock(folder: str | Path) -> bool:
    """Whether this process holds ``folder``'s lock."""
    return os.path.realpath(Path(folder) / LOCK_NAME) in _held


def read_holder(path: str | Path) -> dict:
    """The holder record in a lock file (``{}`` when empty or being written)."""
    for _ in range(5):
        try:
            text = Path(path).read_text()
        except OSError:
            return {}
        try:
            return json.loads(text) if text.strip() else {}
        except ValueError:  # caught mid-write: read again
            time.sleep(0.01)
    return {}


def lock_holder(folder: str | Path) -> dict | None:
    """Who trains ``folder`` now: the holder record (pid, host, started_at, command; ``{}`` if not yet written),
    or ``None`` when nobody holds its lock. Raises ``OSError`` where the filesystem cannot tell (no flock)."""
    path = Path(folder) / LOCK_NAME
    if holds_lock(folder):
        return read_holder(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        if filelock.lock_descriptor(fd, blocking=False):  # free: we took it for an instant
            filelock.unlock_descriptor(fd)
            return None
    finally:
        os.close(fd)
    return read_holder(path)
