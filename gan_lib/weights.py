"""FID for users with internet: fetch pytorch-fid's Inception weights into the torch hub cache and check them.

    python -m gan_lib weights fetch     # download pt_inception-2015-12-05-6726825d.pth (~92 MB) and check it
    python -m gan_lib weights check     # where the weights are looked for, and whether the file there is good

The file goes where `gan_lib.metrics.inception` looks for it (and where pytorch-fid itself would download it):
``torch.hub.get_dir()/checkpoints/pt_inception-2015-12-05-6726825d.pth`` (``$TORCH_HOME/hub/checkpoints``), or
``--dest``. Checks: the SHA-256 of the file starts with the hash in its name (``6726825d``, torch hub's naming
convention), and the file loads as the FID Inception network's state dict (every key, every shape). A download
goes to a temporary file that is renamed only once it passed, so a failed or partial download never leaves a
file where the metrics would pick it up. Once the file is there, the training and evaluation metrics include
``fid`` (and ``kid`` on the Inception features) whenever asked for.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["WeightsError", "FID_HASH_PREFIX", "hash_prefix_of", "sha256_of", "check_weights", "fetch_weights",
           "add_weights"]


class WeightsError(RuntimeError):
    """The weights could not be downloaded, or the file is not pytorch-fid's FID Inception weights."""


def hash_prefix_of(filename: str) -> str | None:
    """The SHA-256 prefix in a torch hub file name (``name-<hex>.pth``), None when it has none."""
    m = re.search(r"-([0-9a-f]{6,})\.[^.]+$", filename)
    return m.group(1) if m else None


def _fid_file() -> str:
    from .metrics.inception import FID_WEIGHTS_FILE

    return FID_WEIGHTS_FILE


FID_HASH_PREFIX = "6726825d"  # = hash_prefix_of(FID_WEIGHTS_FILE); checked in the tests


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def check_weights(path: str | Path, hash_prefix: str | None = FID_HASH_PREFIX, load: bool = True) -> dict:
    """Check a weights file: its SHA-256 starts with ``hash_prefix`` (None: not checked), and with ``load`` it is a
    state dict that loads into `metrics.inception.build_fid_inception` with every key and shape. Returns
    {path, sha256, bytes}; raises `WeightsError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} does not exist")
    digest = sha256_of(path)
    if hash_prefix is not None and not digest.startswith(hash_prefix):
        raise WeightsError(f"{path}: SHA-256 {digest} does not start with {hash_prefix} (a partial download or "
                           f"another file)")
    if load:
        import torch

        from .metrics.inception import build_fid_inception

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsError(f"{path} is not a torch state dict: {type(e).__name__}: {e}") from e
        if not isinstance(state, dict):
            raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
        try:
            build_fid_inception().load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise WeightsError(f"{path} is not the FID Inception network's state dict: {str(e)[:500]}") from e
    return dict(path=str(path), sha256=digest, bytes=path.stat().st_size)


def fetch_weights(url: str | None = None, dest: str | Path | None = None, hash_prefix: str | None = None,
                  force: bool = False, load: bool = True, progress: bool = True, log=print) -> Path:
    """Download pytorch-fid's FID Inception weights (``url``, default `metrics.inception.FID_WEIGHTS_URL`; any
    URL urllib opens, e.g. ``file:///path`` for a copy already on this machine) to ``dest`` (default: the torch hub
    cache, `metrics.inception.default_weights_path`), checked by `check_weights` with ``hash_prefix`` (default: the
    one in the URL's file name) before it is put in place. A good file already at ``dest`` is kept unless
    ``force``. `WeightsError` with the reason and what to do when the download or the check fails."""
    import torch.hub

    from .metrics.inception import FID_WEIGHTS_URL, WEIGHTS_ENV, default_weights_path

    url = url or FID_WEIGHTS_URL
    dest = Path(dest).expanduser() if dest is not None else default_weights_path()
    if hash_prefix is None:
        hash_prefix = hash_prefix_of(url.rsplit("/", 1)[-1])
    if dest.exists() and not force:
        try:
            info = check_weights(dest, hash_prefix, load)
        except WeightsError as e:
            log(f"{dest} is there but fails its check ({e}); downloading it again")
        else:
            log(f"{dest} is already there and good (sha256 {info['sha256'][:12]}..., {info['bytes'] / 1e6:.1f} MB)")
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    os.close(fd)
    try:
        log(f"downloading {url}\n         -> {dest}")
        try:
            torch.hub.download_url_to_file(url, tmp, hash_prefix=None, progress=progress)
        except Exception as e:  # URLError, HTTPError, timeouts, a proxy, ...
            raise WeightsError(
                f"could not download {url}: {type(e).__name__}: {e}. Without internet here: download that URL on "
                f"a machine that has it and copy the file to {dest} (or set {WEIGHTS_ENV}=/path/to/"
                f"{_fid_file()}), then run `python -m gan_lib weights check`") from e
        info = check_weights(tmp, hash_prefix, load)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log(f"ok: {dest} (sha256 {info['sha256'][:12]}..., {info['bytes'] / 1e6:.1f} MB); FID is available")
    return dest


# --- command line: python -m gan_lib weights {fetch,check} ---

def add_weights(sub) -> None:
    """The ``weights`` subcommand of ``python -m gan_lib`` (see the module docstring)."""
    p = sub.add_parser("weights", help="get / check pytorch-fid's Inception weights (FID needs them)",
                       description="Fetch pytorch-fid's FID Inception weights into the torch hub cache (where "
                                   "gan_lib looks for them), or check the file there.")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    f = wsub.add_parser("fetch", help="download the weights and check them")
    f.add_argument("--url", help="where to download from (default: pytorch-fid's release; file:///... works)")
    f.add_argument("--dest", help="the file to write (default: the torch hub cache, $TORCH_HOME/hub/checkpoints)")
    f.add_argument("--force", action="store_true", help="download even when a good file is there")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    c = wsub.add_parser("check", help="where the weights are looked for, and whether the file found is good")
    c.add_argument("path", nargs="?", help="a weights file (default: the one gan_lib would use)")
    p.set_defaults(func=cmd_weights)


def cmd_weights(args) -> int:
    import sys

    from .metrics.inception import find_inception_weights, resolve_inception_weights

    try:
        if args.weights_command == "fetch":
            fetch_weights(args.url, args.dest, force=args.force, progress=not args.no_progress)
            return 0
        path = args.path or find_inception_weights()
        if path is None:
            resolve_inception_weights()  # raises MissingWeightsError saying where it looked and what to do
        info = check_weights(path)
        print(f"ok: {info['path']} (sha256 {info['sha256'][:12]}..., {info['bytes'] / 1e6:.1f} MB)")
        return 0
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
