"""Ship this machine's preprocessed CelebA to the device machine, which has no CelebA (scripts/gpu_check.sh).

    pack   (here):   python scripts/carry_celeba.py pack  [--size 32|64] [--root ../shared/data/celeba] [--out .carry]
                         [--format auto|webp|jpeg] [--quality 95]
    stage  (device): python scripts/carry_celeba.py stage [--size 64] [--out .carry] [--root /work/shared/data/celeba]
    budget (here):   python scripts/carry_celeba.py budget [--out .carry] [--without results/runs,results/cpu]
                         # does the call's 64 MiB hold the working tree and the carry (without those folders)?

``pack`` loads the train split through gan_lib's own loader (decoded once into the gan_lib cache) and writes into
``--out`` (gitignored; the device tool's ``carry``, 64 MiB together with the working tree):
  celeba<S>.webp|.jpg  the uint8 images ``(N, 3, S, S)`` as one mosaic, 128 images a row
  celeba<S>.json       the file names of the image folder, the partition lines of those files, N, S, the format,
                       the sha256 of the carried file's bytes, the sha256 of the pixels that staging produces
                       (``sha256``: raw bytes; ``pixels``: gan_lib's data fingerprint, what each run's data.json
                       records) and, when lossy, the sha256 and PSNR against the pixels gan_lib decodes here

Formats (``--format auto``: lossless WebP up to 32 px, JPEG quality 95 with 4:4:4 chroma above), chosen by
measurement on this machine's CelebA train split (16,078 images of the 19,999 in ../shared; the whole set,
not a sample; per image, mosaic of 2,048 images):
  32 px  lossless WebP    29 MB   (~40% smaller than PNG or the .npy): exact pixels.
  64 px  lossless WebP    5.9 KB/image -> 91 MiB for the split (PNG 116 MiB): over the 64 MiB of a call, so a
                          lossless carry would be a subset of ~10,000 images (62%; 64 epochs of it in 10,000
                          steps of batch 64 instead of 40 of all, and other images than the cpu study's).
         JPEG q95 4:4:4   41.6 MiB for all 16,078 (Huffman-optimised; 2.7 KB/image): PSNR 41.1 dB against
                          gan_lib's 64 px pixels, largest error 23/255 (from the 2,048-image mosaic, not
                          optimised: q90 31 MiB 37.7 dB; q97 56 MiB 43.8 dB, too close to the limit with the tree;
                          4:2:0 chroma 35 MiB but 36.3 dB and errors up to 99/255 on edges; lossy WebP q95, always
                          4:2:0, 27 MiB 36.9 dB).
  Chosen for 64 px: JPEG q95 4:4:4 of the whole split. A GAN trained for 10,000 steps of 64 images sees each of
  16,078 images 40 times, and discriminator over-fitting grows as the set shrinks (Karras et al. 2020, ADA), so
  every image matters more than the last 1-2 levels of 8-bit precision, which a 64 px generator does not
  reproduce at this stage of training; the images are the cpu study's, so both shapes train on the same faces.
  The mosaic's tiles are 64 px, a multiple of JPEG's 8x8 blocks, and 4:4:4 has no chroma upsampling across
  blocks: each image is coded on its own, as if it were a separate file.

``stage`` first checks the sha256 of the carried file's bytes, decodes the mosaic and makes ``--root`` a CelebA
folder in which gan_lib finds the decoded array as its cache entry for ``image_size=S``: the partition file and
one EMPTY placeholder per image name (the cache key is the dataset, the folder's absolute path, size, split, and
a hash of the files' names, sizes and mtimes; a cache hit never opens the files). Placeholders that exist are
not touched, so a 32 px and a 64 px carry staged at the same root both stay valid. ``--root`` must be the path
the runs are configured with (the committed runs record /work/shared/data/celeba). It then loads the set through
``gan_lib.data.load_dataset`` and checks the pixels again. Lossless: the staged pixels must be exactly those
packed. Lossy (JPEG): the staged entry IS the data the device trains on; its pixel sha256 is printed (and each
run's data.json records it), and compared with the decode made here at pack time: a different JPEG decoder on the
device would show there as a warning, not an error. It never writes into a real copy of CelebA (a folder with
non-empty JPEGs). Nothing from ../shared is committed: ``.carry`` is ignored.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLS = 128  # images per mosaic row
CALL_LIMIT = 64 * 2**20  # what one device call carries: the working tree and the carried paths together
JPEG_QUALITY = 95


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


def choose_format(size: int, fmt: str = "auto") -> str:
    """``auto``: lossless WebP up to 32 px (exact, small enough), JPEG above (see the module docstring)."""
    if fmt == "auto":
        return "webp" if size <= 32 else "jpeg"
    if fmt not in ("webp", "jpeg"):
        raise SystemExit(f"--format {fmt!r}: choose auto, webp or jpeg")
    return fmt


def encode(array: np.ndarray, fmt: str, quality: int = JPEG_QUALITY) -> bytes:
    """The mosaic of ``array`` as lossless WebP or as JPEG of ``quality`` with 4:4:4 chroma."""
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(to_mosaic(array))
    if fmt == "webp":
        image.save(buf, format="WEBP", lossless=True, quality=100, method=4)
    else:
        image.save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
    return buf.getvalue()


def decode(data: bytes, n: int, size: int) -> np.ndarray:
    from PIL import Image

    return from_mosaic(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), n, size)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def pack(root: Path, size: int, out: Path, fmt: str = "auto", quality: int = JPEG_QUALITY) -> dict:
    from gan_lib.data import load_dataset
    from gan_lib.data.celeba import celeba_files, partition_file, read_partition
    from gan_lib.data.fingerprint import pixels_digest

    fmt = choose_format(size, fmt)
    data = load_dataset("celeba", root=root, image_size=size, split="train", progress=True)
    array = data.images.numpy()
    assert array.dtype == np.uint8 and array.shape[1:] == (3, size, size), array.shape
    images, names = celeba_files(root, "all")
    split_of = read_partition(partition_file(Path(root), images))
    part = [f"{n} {split_of[n]}" for n in names if n in split_of]
    blob = encode(array, fmt, quality)
    staged = decode(blob, len(array), size)  # what `stage` will produce (lossless: the array itself)
    if fmt == "webp" and not np.array_equal(staged, array):
        raise SystemExit("lossless WebP did not round-trip the pixels")
    suffix = "webp" if fmt == "webp" else "jpg"
    note = dict(size=size, count=len(array), format=fmt, file=f"celeba{size}.{suffix}",
                file_sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob),
                sha256=sha256(staged), pixels=pixels_digest(staged), names=names, partition=part)
    if fmt == "jpeg":
        note.update(quality=quality, chroma="4:4:4", source_sha256=sha256(array), source_pixels=pixels_digest(array),
                    psnr_db=round(psnr(staged, array), 3),
                    max_abs_error=int(np.abs(staged.astype(np.int16) - array.astype(np.int16)).max()))
    out.mkdir(parents=True, exist_ok=True)
    (out / note["file"]).write_bytes(blob)
    (out / f"celeba{size}.json").write_text(json.dumps(note))
    lossy = f", PSNR {note['psnr_db']:.1f} dB against the pixels here" if fmt == "jpeg" else ", lossless"
    print(f"packed {len(array)} images ({size}px, {fmt}{lossy}; pixels sha256 {note['sha256'][:12]}) -> "
          f"{out / note['file']}: {len(blob) / 2**20:.1f} MiB")
    return note


def stage(out: Path, root: Path, size: int) -> dict | None:
    """Stage the carry of ``size`` at ``root`` (see the module docstring); returns what was staged (None: a real
    copy is there). Raises SystemExit when the carried bytes or the staged pixels are not what was packed."""
    from gan_lib.data import load_dataset
    from gan_lib.data.cache import ArrayCache
    from gan_lib.data.celeba import celeba_files, image_folder
    from gan_lib.data.fingerprint import files_fingerprint, pixels_digest

    note = json.loads((out / f"celeba{size}.json").read_text())
    real = image_folder(root)
    if real is not None and any(f.stat().st_size for f in real.glob("*.jpg")):
        print(f"CelebA is already at {root}: nothing staged")  # never write into a real copy
        return None
    carried = out / note.get("file", f"celeba{size}.webp")  # (a note from before file= was lossless WebP)
    blob = carried.read_bytes()
    if "file_sha256" in note and hashlib.sha256(blob).hexdigest() != note["file_sha256"]:
        raise SystemExit(f"{carried}: its bytes do not match the sha256 recorded when it was packed "
                         "(a damaged or partial carry)")
    array = decode(blob, note["count"], size)
    lossy = note.get("format", "webp") == "jpeg"
    same = sha256(array) == note["sha256"]
    if not same and not lossy:
        raise SystemExit("the carried images do not match the sha256 recorded when they were packed")
    if not same:
        print(f"warning: this machine's JPEG decoder gives other pixels than the one that packed the carry "
              f"(sha256 {sha256(array)[:12]}, packed {note['sha256'][:12]}); the runs train on these and record them")
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    for name in note["names"]:
        placeholder = folder / name
        if not placeholder.exists():  # an existing one keeps its mtime: another size's staged entry stays valid
            placeholder.touch()
    partition = root / "list_eval_partition.txt"
    text = "\n".join(note["partition"]) + "\n"
    if not partition.is_file() or partition.read_text() != text:
        partition.write_text(text)
    images, names = celeba_files(root, "train")
    cache = ArrayCache(None, name="celeba", root=str(images.resolve()), image_size=size, crop=None,
                       split="train", max_images=None)
    cache.save(array, files_fingerprint(images, names), skipped_files={}, staged_from=str(carried),
               carried_file_sha256=note.get("file_sha256"), carried_format=note.get("format", "webp"))
    got = load_dataset("celeba", root=root, image_size=size, split="train", progress=False).images.numpy()
    if sha256(got) != sha256(array):
        raise SystemExit("gan_lib did not load the staged array (cache key mismatch?)")
    staged = dict(size=size, count=len(got), format=note.get("format", "webp"), root=str(root),
                  file_sha256=note.get("file_sha256"), sha256=sha256(got), pixels=pixels_digest(got),
                  same_as_packed=same, psnr_db=note.get("psnr_db"))
    checks = "carried bytes and pixels" if "file_sha256" in note else "pixels"
    print(f"staged {len(got)} CelebA images ({size}px, {staged['format']}) at {root}: {checks} sha256 checked; "
          f"pixels sha256 {staged['sha256'][:12]} ({'as packed' if same else 'NOT as decoded when packed'}; "
          f"data fingerprint {staged['pixels'][:12]})")
    print("staged " + json.dumps(staged), flush=True)
    return staged


def tree_bytes(repo: Path = REPO, without: tuple = ()) -> tuple[int, dict]:
    """Bytes of what a device call sends besides its carry (tracked files present on disk, and untracked files
    git does not ignore) and the top-level folders' shares; ``without``: folders to leave out (moved aside for
    the call)."""
    without = tuple(w.strip("/") + "/" for w in without if w.strip("/"))
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    total, by_top = 0, {}
    for rel in dict.fromkeys(p.decode("utf-8", "surrogateescape") for p in listed if p):
        path = repo / rel
        if rel.startswith(without):
            continue
        if path.is_file() and not path.is_symlink():
            n = path.stat().st_size
            total += n
            top = rel.split("/", 2)[0] if "/" in rel else "."
            top = "/".join(rel.split("/")[:2]) if top == "results" and rel.count("/") >= 2 else top
            by_top[top] = by_top.get(top, 0) + n
    return total, by_top


def budget(carry: Path, without: tuple = (), repo: Path = REPO) -> int:
    """Print whether the working tree (less ``without``) and ``carry`` fit one call's 64 MiB; exit status 1 when
    not."""
    tree, by_top = tree_bytes(repo, without)
    carried = sum(f.stat().st_size for f in Path(carry).rglob("*") if f.is_file()) if Path(carry).is_dir() else 0
    total = tree + carried
    less = f" without {', '.join(without)}" if without else ""
    print(f"working tree{less} {tree / 2**20:.1f} MiB + {carry} {carried / 2**20:.1f} MiB = {total / 2**20:.1f} MiB "
          f"of {CALL_LIMIT / 2**20:.0f} MiB: {'fits' if total <= CALL_LIMIT else 'TOO LARGE'}")
    for top, n in sorted(by_top.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {n / 2**20:7.1f} MiB  {top}")
    return 0 if total <= CALL_LIMIT else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("pack", "stage", "budget"))
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=REPO / ".carry")
    ap.add_argument("--format", default="auto", choices=("auto", "webp", "jpeg"),
                    help="auto: lossless WebP up to 32 px, JPEG above")
    ap.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality (default 95)")
    ap.add_argument("--without", default="", help="budget: comma-separated folders to leave out of the tree")
    a = ap.parse_args(argv)
    if a.action == "pack":
        pack(a.root or REPO.parent / "shared" / "data" / "celeba", a.size, a.out, a.format, a.quality)
    elif a.action == "stage":
        stage(a.out, a.root or Path("/work/shared/data/celeba"), a.size)
    else:
        return budget(a.out, tuple(w for w in a.without.split(",") if w))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
