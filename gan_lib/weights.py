"""FID for users with internet: fetch pytorch-fid's Inception weights into the torch hub cache and check them.

    python -m gan_lib weights fetch     # download pt_inception-2015-12-05-6726825d.pth (~92 MB) and check it
    python -m gan_lib weights check     # where the weights are looked for, and whether the file there is good

The file goes where `gan_lib.metrics.inception` looks for it (and where pytorch-fid itself would download it):
``torch.hub.get_dir()/checkpoints/pt_inception-2015-12-05-6726825d.pth`` (``$TORCH_HOME/hub/checkpoints``), or
``--dest``. Checks: the SHA-256 of the file starts with the hash in its name (``6726825d``, torch hub's naming
convention), and the file loads as the FID Inception network's state dict (every key, every shape). A download
is held in memory and checked, then written with `gan_lib.run_dir.atomic_write`, so a failed or partial download
never leaves a file behind. Once the file is there, the training and evaluation metrics include ``fid`` (and
``kid`` on the Inception features) whenever asked for. A mistake (a bad ``--url`` or ``--dest``, a failed download,
a wrong file) raises `WeightsError`, which the CLI prints as one ``error:`` line (exit code 2).
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from .errors import UserError

__all__ = ["WeightsError", "FID_HASH_PREFIX", "hash_prefix_of", "check_weights", "fetch_weights", "add_weights"]


class WeightsError(UserError):
    """The weights could not be downloaded or written, or the file is not pytorch-fid's FID Inception weights."""


def hash_prefix_of(filename: str) -> str | None:
    """The SHA-256 prefix in a torch hub file name (``name-<hex>.pth``), None when it has none."""
    m = re.search(r"-([0-9a-f]{6,})\.[^.]+$", filename)
    return m.group(1) if m else None


def _fid_file() -> str:
    from .metrics.inception import FID_WEIGHTS_FILE

    return FID_WEIGHTS_FILE


FID_HASH_PREFIX = "6726825d"  # = hash_prefix_of(FID_WEIGHTS_FILE); checked in the tests


def _one_line(e: BaseException, limit: int = 200) -> str:
    """``Type: message`` of ``e`` on one line (torch's messages span several), cut to ``limit`` characters."""
    text = " ".join(f"{type(e).__name__}: {e}".split()).rstrip(":")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_data(data: bytes, name: str, hash_prefix: str | None, load: bool) -> str:
    """`check_weights` on the bytes of a file (``name`` in the messages); returns their SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    if hash_prefix is not None and not digest.startswith(hash_prefix):
        raise WeightsError(f"{name}: SHA-256 {digest} does not start with {hash_prefix} (a partial download or "
                           f"another file)")
    if load:
        import torch

        from .metrics.inception import build_fid_inception

        try:
            with warnings.catch_warnings():  # e.g. torch's pickle-protocol warning on a file that is no checkpoint
                warnings.simplefilter("ignore")
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsError(f"{name} is not a torch state dict ({_one_line(e)})") from e
        if not isinstance(state, dict):
            raise WeightsError(f"{name} holds a {type(state).__name__}, not a state dict")
        try:
            build_fid_inception().load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise WeightsError(f"{name} is not the FID Inception network's state dict ({_one_line(e, 400)})") from e
    return digest


def check_weights(path: str | Path, hash_prefix: str | None = FID_HASH_PREFIX, load: bool = True) -> dict:
    """Check a weights file: its SHA-256 starts with ``hash_prefix`` (None: not checked), and with ``load`` it is a
    state dict that loads into `metrics.inception.build_fid_inception` with every key and shape. Returns
    {path, sha256, bytes}; raises `WeightsError` saying what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a folder: pass the weights file, e.g. {path / _fid_file()}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path} does not exist: pass the weights file's path, or get the file with "
                           f"`python -m gan_lib weights fetch`") from None
    except OSError as e:
        raise WeightsError(f"cannot read {path} ({e.strerror or e}): pass a readable weights file") from None
    return dict(path=str(path), sha256=_check_data(data, str(path), hash_prefix, load), bytes=len(data))


def _check_url(url: str) -> None:
    """`WeightsError` showing the expected form unless ``url`` is an http(s) (or ftp) URL with a host or a
    ``file:///path`` URL (a malformed URL would otherwise read as a failed download)."""
    parts = urlsplit(url)
    if (parts.scheme in ("http", "https", "ftp") and parts.netloc) or (parts.scheme == "file" and parts.path):
        return
    from .metrics.inception import FID_WEIGHTS_URL

    local = Path(url).expanduser()
    example = local.resolve().as_uri() if local.is_file() else f"file:///path/to/{_fid_file()}"
    raise WeightsError(f"--url {url!r} is not a valid http(s) or file:// URL: expected e.g. {FID_WEIGHTS_URL} "
                       f"or, for a file on this machine, {example}")


def _download(url: str, progress: bool) -> bytes:
    """The bytes at ``url`` (any URL urllib opens), with a progress bar on stderr."""
    from urllib.request import urlopen

    from tqdm.auto import tqdm

    buf = io.BytesIO()
    with urlopen(url, timeout=60) as u, tqdm(total=int(u.headers.get("Content-Length") or 0) or None, unit="B",
                                             unit_scale=True, unit_divisor=1024, disable=not progress) as bar:
        for block in iter(lambda: u.read(1 << 20), b""):
            buf.write(block)
            bar.update(len(block))
    return buf.getvalue()


def fetch_weights(url: str | None = None, dest: str | Path | None = None, hash_prefix: str | None = None,
                  force: bool = False, load: bool = True, progress: bool = True, log=print) -> Path:
    """Download pytorch-fid's FID Inception weights (``url``, default `metrics.inception.FID_WEIGHTS_URL`; any
    http(s) or ``file:///path`` URL, the latter for a copy already on this machine) to ``dest`` (default: the torch
    hub cache, `metrics.inception.default_weights_path`; a folder: the standard file name in it), checked by
    `check_weights` with ``hash_prefix`` (default: the one in the URL's file name) before it is written. A good
    file already at ``dest`` is kept unless ``force``. `WeightsError` with the reason and what to do when the URL,
    the destination, the download or the check fails; nothing is written then."""
    from .metrics.inception import FID_WEIGHTS_URL, WEIGHTS_ENV, default_weights_path
    from .run_dir import atomic_write

    url = url or FID_WEIGHTS_URL
    _check_url(url)
    dest = Path(dest).expanduser() if dest is not None else default_weights_path()
    if dest.is_dir():
        dest = dest / _fid_file()
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

    def cannot_write(e: OSError) -> WeightsError:
        return WeightsError(f"cannot write {dest} ({e.strerror or e}): pass a writable --dest")

    try:  # before the download, not after it
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(dest.parent, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as e:
        raise cannot_write(e) from e
    log(f"downloading {url}\n         -> {dest}")
    try:
        data = _download(url, progress)
    except Exception as e:  # URLError, HTTPError, timeouts, a proxy, ...
        raise WeightsError(
            f"could not download {url} ({_one_line(e)}). Without internet here: download that URL on a machine "
            f"that has it and copy the file to {dest} (or set {WEIGHTS_ENV}=/path/to/{_fid_file()}), then run "
            f"`python -m gan_lib weights check`") from e
    digest = _check_data(data, url, hash_prefix, load)
    try:
        atomic_write(dest, lambda f: f.write(data))  # a full disk: DiskFull, a UserError too
    except OSError as e:
        raise cannot_write(e) from e
    log(f"ok: {dest} (sha256 {digest[:12]}..., {len(data) / 1e6:.1f} MB); FID is available")
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
    f.add_argument("--dest", help="the file to write, or a folder to write the standard file name into (default: "
                   "the torch hub cache, $TORCH_HOME/hub/checkpoints)")
    f.add_argument("--force", action="store_true", help="download even when a good file is there")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    c = wsub.add_parser("check", help="where the weights are looked for, and whether the file found is good")
    c.add_argument("path", nargs="?", help="a weights file (default: the one gan_lib would use)")
    p.set_defaults(func=cmd_weights)


def cmd_weights(args) -> int:
    """A `WeightsError` (or `MissingWeightsError`) goes up to ``main``, which prints it as one line (exit 2)."""
    from .metrics.inception import find_inception_weights, resolve_inception_weights

    if args.weights_command == "fetch":
        fetch_weights(args.url, args.dest, force=args.force, progress=not args.no_progress)
        return 0
    path = args.path or find_inception_weights()
    if path is None:
        resolve_inception_weights()  # raises MissingWeightsError saying where it looked and what to do
    info = check_weights(path)
    print(f"ok: {info['path']} (sha256 {info['sha256'][:12]}..., {info['bytes'] / 1e6:.1f} MB)")
    return 0
