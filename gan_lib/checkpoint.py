"""Checkpoint files that carry their own checksum, and a reader that verifies it.

A checkpoint is a ``torch.save`` of a dict (models, optimizers, RNG states, step, ...). `to_bytes` adds one
entry, ``"integrity": {"sha256": ...}``, a SHA-256 over everything else in the dict: every tensor's dtype,
shape and raw bytes and every other value's ``repr``, walked in order. `read` loads a file and recomputes it, so
a truncated, zero-byte or garbled file (unreadable) and a file whose numbers were altered (a weight changed
inside ``best.pt`` loads silently with ``torch.load``: its zip records carry no verified checksum) both raise
`CheckpointError` naming the file. A file written before checksums existed has no ``integrity`` entry and is
read unverified.

The checksum is inside the file rather than in a sidecar, so a checkpoint and its checksum are replaced by one
``os.replace`` and can never disagree after a crash. Keeping the previous file and falling back to it is
`gan_lib.run_dir.RunDir`'s job.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from .errors import UserError

INTEGRITY_KEY = "integrity"


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or fails its checksum; the message names the file."""


def state_digest(state: dict) -> str:
    """SHA-256 (hex) of a checkpoint dict, leaving out its ``integrity`` entry."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != INTEGRITY_KEY})
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for k, v in obj.items():  # insertion order survives torch.save / torch.load
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
    else:  # numbers, strings, None, bools, dtypes: their repr round-trips
        h.update(f"V{type(obj).__name__}:{obj!r};".encode())


def to_bytes(state: dict) -> bytes:
    """``torch.save`` of ``state`` plus its ``integrity`` checksum, as bytes (the caller writes them atomically)."""
    buf = io.BytesIO()
    torch.save({**state, INTEGRITY_KEY: {"sha256": state_digest(state)}}, buf)
    return buf.getvalue()


def read(path: str | Path, map_location="cpu") -> dict:
    """Load and verify a checkpoint file; `CheckpointError` naming it when it is missing, unreadable or altered.
    The returned dict has no ``integrity`` entry."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, zero bytes, garbage: RuntimeError, EOFError, UnpicklingError, OSError
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"checkpoint {path} is damaged and cannot be read ({path.stat().st_size} bytes; "
                              f"{type(e).__name__}{': ' + first[:160] if first else ''})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a gan_lib checkpoint (it holds a {type(state).__name__})")
    integrity = state.pop(INTEGRITY_KEY, None)
    if integrity is not None and integrity.get("sha256") != state_digest(state):
        raise CheckpointError(f"checkpoint {path} fails its checksum: its contents were altered or corrupted "
                              f"after it was written")
    return state
