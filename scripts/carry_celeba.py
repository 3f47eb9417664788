"""Ship this machine's preprocessed CelebA to the device machine, which has no CelebA (scripts/gpu_check.sh).

    pack  (here):   python scripts/carry_celeba.py pack  [--root ../shared/data/celeba] [--size 32] [--out .carry]
    stage (device): python scripts/carry_celeba.py stage [--out .carry] [--root /work/shared/data/celeba]

``pack`` loads the train split through gan_lib's own loader (decoded once into the gan_lib cache), and writes
into ``--out`` (gitignored; the device tool's ``carry``, 64 MiB with the working tree):
  celeba<S>.webp   the uint8 images ``(N, 3, S, S)`` as one lossless WebP mosaic, 128 images a row (32 px: 16,078
                   images, 29 MB; WebP lossless is ~40% smaller than PNG or the .npy)
  celeba<S>.json   the file names of the image folder, the partition lines of those files, N, S and the sha256
                   of the array

``stage`` rebuilds the array, checks its sha256, and makes ``--root`` a CelebA folder in which gan_lib finds the
array as its cache entry: the partition file and one EMPTY placeholder per image name (the cache key is the
dataset, the folder's absolute path, size, split, and a hash of the files' names, sizes and mtimes; a cache hit
never opens the files). ``--root`` must be the path the runs were configured with here, so the runs' configs stay identical.
It then loads the set through ``gan_lib.data.load_dataset`` and checks the sha256 again: the device trains on
exactly the pixels this machine trains on. Nothing from ../shared is committed: ``.carry`` is ignored.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLS = 128  # images per mosaic row


def to_mosaic(array: np.ndarray) -> np.ndarray:
    """uint8 ``(N, C, S, S)`` -> ``(rows*S, COLS*S, C)``, zero-padded to whole rows."""
    n, c, s, _ = array.shape
    rows = -(-n // COLS)
    pad = np.zeros((rows * COLS, c, s, s), np.uint8)
    pad[:n] = array
    return pad.reshape(rows, COLS, c, s, s).transpose(0, 3, 1, 4, 2).reshape(rows * s, COLS * s, c)


def from_mosaic(mosaic: np.ndarray, n: int, size: int) -> np.ndarray:
    rows, c = mosaic.shape[0] // size, mosaic.shape[2]
    tiles = mosaic.reshape(rows, size, COLS, size, c).transpose(0, 2, 4, 1, 3).reshape(rows * COLS, c, size, size)
    return np.ascontiguousarray(tiles[:n])


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def pack(root: Path, size: int, out: Path) -> None:
    from PIL import Image

    from gan_lib.data import load_dataset
    from gan_lib.data.celeba import celeba_files, partition_file, read_partition

    data = load_dataset("celeba", root=root, image_size=size, split="train", progress=True)
    array = data.images.numpy()
    assert array.dtype == np.uint8 and array.shape[1:] == (3, size, size), array.shape
    digest = sha256(array)
    images, names = celeba_files(root, "all")
    split_of = read_partition(partition_file(Path(root), images))
    part = [f"{n} {split_of[n]}" for n in names if n in split_of]
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(to_mosaic(array)).save(buf, format="WEBP", lossless=True, quality=100, method=4)
    (out / f"celeba{size}.webp").write_bytes(buf.getvalue())
    (out / f"celeba{size}.json").write_text(json.dumps(dict(
        size=size, count=len(array), sha256=digest, names=names, partition=part)))
    print(f"packed {len(array)} images ({size}px, sha256 {digest[:12]}) -> {out}: "
          f"{len(buf.getvalue()) / 1e6:.1f} MB webp")


def stage(out: Path, root: Path, size: int) -> None:
    from PIL import Image

    from gan_lib.data import load_dataset
    from gan_lib.data.cache import ArrayCache
    from gan_lib.data.celeba import celeba_files, image_folder
    from gan_lib.data.fingerprint import files_fingerprint

    note = json.loads((out / f"celeba{size}.json").read_text())
    real = image_folder(root)
    if real is not None and any(f.stat().st_size for f in real.glob("*.jpg")):
        print(f"CelebA is already at {root}: nothing staged")  # never write into a real copy
        return
    mosaic = np.asarray(Image.open(out / f"celeba{size}.webp").convert("RGB"))
    array = from_mosaic(mosaic, note["count"], size)
    if sha256(array) != note["sha256"]:
        raise SystemExit("the carried images do not match the sha256 recorded when they were packed")
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    for name in note["names"]:
        (folder / name).touch()
    (root / "list_eval_partition.txt").write_text("\n".join(note["partition"]) + "\n")
    images, names = celeba_files(root, "train")
    cache = ArrayCache(None, name="celeba", root=str(images.resolve()), image_size=size, crop=None,
                       split="train", max_images=None)
    cache.save(array, files_fingerprint(images, names), skipped_files={}, staged_from=f"{out}/celeba{size}.webp")
    data = load_dataset("celeba", root=root, image_size=size, split="train", progress=False)
    got = data.images.numpy()
    if sha256(got) != note["sha256"]:
        raise SystemExit("gan_lib did not load the staged array (cache key mismatch?)")
    print(f"staged {len(got)} CelebA images ({size}px) at {root} (sha256 {note['sha256'][:12]} checked)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("pack", "stage"))
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=REPO / ".carry")
    a = ap.parse_args(argv)
    if a.action == "pack":
        pack(a.root or REPO.parent / "shared" / "data" / "celeba", a.size, a.out)
    else:
        stage(a.out, a.root or Path("/work/shared/data/celeba"), a.size)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
