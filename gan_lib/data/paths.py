"""Where datasets are looked for when no ``root`` is given."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


def candidate_roots(env_var: str, folder: str) -> list[Path]:
    """The places searched for a dataset, in order: ``$env_var`` if set (and then only it), else
    ``./data/<folder>`` and ``../shared/data/<folder>`` relative to the current directory, then the same two
    relative to the repository checkout."""
    env = os.environ.get(env_var)
    if env:
        return [Path(env).expanduser()]
    places = []
    for base in (Path.cwd(), REPO):
        for p in (base / "data" / folder, base.parent / "shared" / "data" / folder):
            if p not in places:
                places.append(p)
    return places


def find_root(env_var: str, folder: str, accepts: Callable[[Path], bool]) -> Path | None:
    """The first of `candidate_roots` that ``accepts``, as an absolute path, or ``None``."""
    for p in candidate_roots(env_var, folder):
        if p.is_dir() and accepts(p):
            return p.resolve()
    return None


def describe_search(env_var: str, folder: str, flag: str = "--data-root") -> str:
    """One line for a 'not found' error: the places searched and how to point at the data (``flag``: the CLI
    option that does it)."""
    places = ", ".join(str(p) for p in candidate_roots(env_var, folder))
    return f"looked in {places}; pass {flag} PATH (root=PATH in Python) or set {env_var}=/path/to/{folder}."
