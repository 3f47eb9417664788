"""Datasets: CelebA and MNIST on the real files, image folders made here, the synthetic set, the cache."""
from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from gan_lib.data import DATASETS, ImageDataset, find_celeba_root, load_dataset
from gan_lib.data.celeba import celeba_files, read_partition
from gan_lib.data.mnist import read_idx
from gan_lib.data import synthetic
from gan_lib.data.synthetic import synthetic_images


def jpegs(celeba_root: Path, n: int) -> list[Path]:
    folder = celeba_root / "img_align_celeba"
    return [folder / name for name in sorted(os.listdir(folder))[:n]]


def link_celeba(dest: Path, celeba_root: Path, n: int, partition: bool = True) -> Path:
    """A CelebA copy of the first n real JPEGs (symlinks) in ``dest``, with the matching partition lines."""
    dest.mkdir(parents=True, exist_ok=True)
    files = jpegs(celeba_root, n)
    for p in files:
        os.symlink(p, dest / p.name)
    if partition:
        split_of = read_partition(celeba_root / "list_eval_partition.txt")
        (dest.parent / "list_eval_partition.txt").write_text("".join(f"{p.name} {split_of[p.name]}\n" for p in files))
    return dest


# ---------------------------------------------------------------- CelebA


def test_celeba_split_counts_follow_the_partition_file(celeba_root):
    split_of = read_partition(celeba_root / "list_eval_partition.txt")
    present = set(os.listdir(celeba_root / "img_align_celeba"))
    counts = {}
    for code, split in enumerate(("train", "val", "test")):
        _, names = celeba_files(celeba_root, split)
        assert names == sorted(n for n in present if split_of.get(n) == code)
        counts[split] = len(names)
    assert counts == {"train": 16_078, "val": 1_940, "test": 1_981}  # the 19,999-image copy in shared/
    assert len(celeba_files(celeba_root, "all")[1]) == len(present) == 19_999


def test_celeba_full_train_split_preprocesses_once_then_loads_from_cache(celeba_root, tmp_path, monkeypatch):
    data = load_dataset("celeba", celeba_root, image_size=32, split="train", cache_dir=tmp_path, progress=False)
    assert len(data) == 16_078 and data.skipped == 0
    assert data.images.shape == (16_078, 3, 32, 32) and data.images.dtype == torch.uint8

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached set must not decode JPEGs")

    monkeypatch.setattr(Image, "open", no_decoding)
    again = load_dataset("celeba", celeba_root, image_size=32, split="train", cache_dir=tmp_path, progress=False)
    assert torch.equal(again.images, data.images)


@pytest.mark.parametrize("size", [32, 64])
def test_celeba_shape_dtype_and_range(celeba_root, tmp_path, size):
    data = load_dataset("celeba", celeba_root, image_size=size, split="val", cache_dir=tmp_path,
                        max_images=16, progress=False)
    assert isinstance(data, ImageDataset) and isinstance(data, torch.utils.data.Dataset)
    assert (data.name, data.split, data.channels, data.image_size, len(data)) == ("celeba", "val", 3, size, 16)
    assert data.root == celeba_root.resolve()
    x = data[0]
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    assert torch.equal(x, data.images[0].float() / 127.5 - 1)
    b = data.batch(torch.tensor([3, 0, 5]))
    assert b.shape == (3, 3, size, size) and b.dtype == torch.float32
    assert torch.equal(b[1], x)
    assert b.min() >= -1 and b.max() <= 1
    # real photographs use (nearly) the whole range, and the images differ from each other
    all_ = data.batch(range(16))
    assert all_.min() < -0.9 and all_.max() > 0.9
    assert (all_[1:] - all_[:-1]).abs().mean() > 0.1
    assert "celeba" in repr(data) and "n=16" in repr(data) and f"({3}, {size}, {size})" in repr(data)


def test_celeba_default_crop_is_the_centred_square(celeba_root, tmp_path):
    path = jpegs(celeba_root, 1)[0]
    data = load_dataset("celeba", celeba_root, image_size=64, split="train", cache_dir=tmp_path, max_images=1,
                        progress=False)
    with Image.open(path) as im:  # reference without draft mode: centred 178x178, bicubic to 64
        ref = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC, box=(0, 20, 178, 198)))
    diff = np.abs(data.images[0].permute(1, 2, 0).numpy().astype(int) - ref.astype(int))
    assert diff.mean() < 2.5  # draft (DCT-scaled) decoding differs by about one grey level on average
    tight = load_dataset("celeba", celeba_root, image_size=64, split="train", cache_dir=tmp_path, max_images=1,
                         progress=False, crop=108)
    assert (tight.images.float() - data.images.float()).abs().mean() > 10


def test_cache_key_differs_by_size_split_crop_and_count(celeba_root, tmp_path):
    args = dict(root=celeba_root, cache_dir=tmp_path, progress=False)
    a = load_dataset("celeba", image_size=32, split="train", max_images=4, **args)
    load_dataset("celeba", image_size=64, split="train", max_images=4, **args)
    c = load_dataset("celeba", image_size=32, split="test", max_images=4, **args)
    load_dataset("celeba", image_size=32, split="train", max_images=4, crop=140, **args)
    load_dataset("celeba", image_size=32, split="train", max_images=5, **args)
    assert len(list((tmp_path / "data").glob("*.npy"))) == 5
    assert len(list((tmp_path / "data").glob("*.json"))) == 5
    assert not list((tmp_path / "data").glob("*.tmp"))
    assert not torch.equal(a.images, c.images)  # different splits, different faces


def test_a_damaged_cache_is_rebuilt(celeba_root, tmp_path):
    args = dict(root=celeba_root, image_size=32, cache_dir=tmp_path, max_images=3, progress=False)
    first = load_dataset("celeba", **args)
    (npy,) = (tmp_path / "data").glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:100])  # as if cut off mid-write
    assert torch.equal(load_dataset("celeba", **args).images, first.images)
    (note,) = (tmp_path / "data").glob("*.json")
    note.unlink()  # an array without its note is never used
    assert torch.equal(load_dataset("celeba", **args).images, first.images)


def test_celeba_accepts_torchvision_and_image_folder_layouts(celeba_root, tmp_path):
    link_celeba(tmp_path / "tv" / "celeba" / "img_align_celeba", celeba_root, 6)
    tv = load_dataset("celeba", tmp_path / "tv", image_size=32, split="all", cache_dir=tmp_path / "c",
                      progress=False)
    assert len(tv) == 6
    train = load_dataset("celeba", tmp_path / "tv", image_size=32, split="train", cache_dir=tmp_path / "c",
                         progress=False)
    _, real_train = celeba_files(celeba_root, "train")
    assert len(train) == len(set(real_train) & {p.name for p in jpegs(celeba_root, 6)}) > 0
    inner = load_dataset("celeba", celeba_root / "img_align_celeba", image_size=32, split="all",
                         cache_dir=tmp_path / "c", max_images=6, progress=False)
    assert torch.equal(inner.images, tv.images)


def test_celeba_without_partition_file_has_only_split_all(celeba_root, tmp_path):
    link_celeba(tmp_path / "c" / "img_align_celeba", celeba_root, 3, partition=False)
    data = load_dataset("celeba", tmp_path / "c", image_size=32, split="all", cache_dir=tmp_path, progress=False)
    assert len(data) == 3
    with pytest.raises(ValueError, match="list_eval_partition.txt.*only split='all'"):
        load_dataset("celeba", tmp_path / "c", split="train", cache_dir=tmp_path, progress=False)


def test_missing_celeba_root_says_where_to_put_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"(?s)nowhere.*does not exist.*img_align_celeba.*GAN_LIB_CELEBA"):
        load_dataset("celeba", tmp_path / "nowhere", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no img_align_celeba"):
        load_dataset("celeba", tmp_path / "empty", cache_dir=tmp_path)
    monkeypatch.setenv("GAN_LIB_CELEBA", str(tmp_path / "empty"))
    assert find_celeba_root() is None
    with pytest.raises(FileNotFoundError, match=r"CelebA not found.*empty.*--data-root PATH.*GAN_LIB_CELEBA.*img_al"):
        load_dataset("celeba", cache_dir=tmp_path)


def test_find_celeba_root_checks_env_then_data_folders(celeba_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_LIB_CELEBA", str(celeba_root))
    assert find_celeba_root() == celeba_root.resolve()
    monkeypatch.delenv("GAN_LIB_CELEBA")
    link_celeba(tmp_path / "data" / "celeba" / "img_align_celeba", celeba_root, 1)
    monkeypatch.chdir(tmp_path)
    assert find_celeba_root() == (tmp_path / "data" / "celeba").resolve()
    data = load_dataset("celeba", image_size=32, split="all", cache_dir=tmp_path, progress=False)
    assert len(data) == 1 and data.root == (tmp_path / "data" / "celeba").resolve()


# ---------------------------------------------------------------- names and splits


def test_unknown_dataset_and_split_list_the_choices(celeba_root, tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*celeba, mnist, folder, synthetic"):
        load_dataset("imagenet")
    assert set(DATASETS) == {"celeba", "mnist", "folder", "synthetic"}
    with pytest.raises(ValueError, match="unknown CelebA split 'valid'.*'val'"):
        load_dataset("celeba", celeba_root, split="valid", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown MNIST split 'val'.*'test'"):
        load_dataset("mnist", tmp_path, split="val")
    with pytest.raises(ValueError, match="unknown split 'val' for 'synthetic'"):
        load_dataset("synthetic", split="val", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no official split"):
        load_dataset("folder", tmp_path, split="test", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="crop= does not apply to the 'mnist'"):
        load_dataset("mnist", tmp_path, crop=100)


# ---------------------------------------------------------------- MNIST


@pytest.mark.parametrize("size", [32, 64])
def test_mnist_test_split(mnist_root, size):
    data = load_dataset("mnist", mnist_root, image_size=size, split="test")
    assert len(data) == 10_000 and data.images.shape == (10_000, 1, size, size)
    assert (data.name, data.channels, data.image_size) == ("mnist", 1, size)
    x = data.batch(torch.arange(100))
    assert x.min() == -1 and x.max() > 0.9  # black background, white strokes
    border = size // 16  # the 2-pixel zero padding of 28 -> 32, scaled
    assert (x[..., :border, :] == -1).all() and (x[..., :, -border:] == -1).all()
    assert len(load_dataset("mnist", mnist_root, image_size=size, split="all")) == 10_000  # all = what exists


def test_mnist_train_split_missing_says_only_test_is_present(mnist_root):
    with pytest.raises(FileNotFoundError, match=r"'train' is not present.*only 'test'.*train-images-idx3-ubyte"):
        load_dataset("mnist", mnist_root, split="train")


def test_mnist_reads_raw_idx_and_rejects_corrupt_files(mnist_root, tmp_path):
    digits = read_idx(next((mnist_root / "raw").glob("t10k-images*")))
    assert digits.shape == (10_000, 28, 28) and digits.dtype == np.uint8
    header = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (5, 28, 28))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + digits[:5].tobytes())
    data = load_dataset("mnist", tmp_path, split="test", image_size=32, max_images=3)
    assert len(data) == 3 and torch.equal(data.images[:, 0, 2:30, 2:30], torch.tensor(digits[:3]))

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t10k-images-idx3-ubyte").write_bytes((1234).to_bytes(4, "big") + header[4:] + digits[:5].tobytes())
    with pytest.raises(ValueError, match="magic number"):
        load_dataset("mnist", bad, split="test")
    (bad / "t10k-images-idx3-ubyte").write_bytes(header + digits[:4].tobytes())
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("mnist", bad, split="test")
    (bad / "t10k-images-idx3-ubyte").unlink()
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + digits[:5].tobytes())[:60])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", bad, split="test")


# ---------------------------------------------------------------- image folders


def make_odd_images(folder: Path) -> dict[str, str]:
    """Images in every awkward mode, one in a subfolder; -> {relative name: mode}."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    (folder / "sub" / "deeper").mkdir(parents=True)
    made = {}

    def save(name, im, **kw):
        im.save(folder / name, **kw)
        made[name] = im.mode

    save("gray.png", Image.fromarray(rgb[..., 0]))
    save("gray.jpg", Image.fromarray(rgb[..., 0]))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    rgba = np.dstack([rgb, np.zeros((40, 50), np.uint8)])  # fully transparent
    save("clear.png", Image.fromarray(rgba))
    save("sub/palette.png", Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE))
    save("sub/deeper/wide.bmp", Image.fromarray(np.ascontiguousarray(rgb[:20])))
    save("sub/photo.webp", Image.fromarray(rgb))
    save("sixteen.png", Image.fromarray(rgb[..., 1].astype(np.uint16) * 257))
    (folder / "notes.txt").write_text("not an image")
    return made


def test_folder_converts_every_mode_to_rgb(tmp_path):
    made = make_odd_images(tmp_path / "imgs")
    assert set(made.values()) >= {"L", "CMYK", "RGBA", "P", "RGB", "I;16"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is skipped
        data = load_dataset("folder", tmp_path / "imgs", image_size=16, cache_dir=tmp_path / "c", progress=False)
    assert len(data) == len(made) and data.skipped == 0
    assert data.images.shape == (len(made), 3, 16, 16)
    by_name = dict(zip(sorted(made), data.images))
    for name in ("gray.png", "gray.jpg", "sixteen.png"):
        img = by_name[name]
        assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2]), name
        assert img.float().std() > 20, name  # real content, not a flat image
    assert (by_name["clear.png"] == 255).all()  # transparent -> composited on white
    for name in ("cmyk.jpg", "sub/palette.png", "sub/photo.webp", "sub/deeper/wide.bmp"):
        assert by_name[name].float().std() > 20, name


def test_corrupt_and_truncated_files_are_skipped_warned_and_counted(celeba_root, tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = jpegs(celeba_root, 3)
    for p in good:
        os.symlink(p, folder / p.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    data = good[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    for attempt in range(2):  # decoding, then from the cache: same count, same single warning
        with pytest.warns(UserWarning) as record:
            ds = load_dataset("folder", folder, image_size=32, cache_dir=tmp_path / "c", progress=False)
        messages = [str(w.message) for w in record if "unreadable" in str(w.message)]
        assert len(messages) == 1, messages
        assert "skipped 2" in messages[0] and "broken.png" in messages[0] and "truncated.jpg" in messages[0]
        assert len(ds) == 3 and ds.skipped == 2
        assert set(ds.skipped_files) == {"broken.png", "truncated.jpg"}
        assert (ds.images.float().flatten(1).std(1) > 10).all()  # no blank stand-ins
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # would hide truncation: refused
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        load_dataset("folder", folder, image_size=16, cache_dir=tmp_path / "c", progress=False)


def test_empty_or_missing_folders_say_what_to_do(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"no image files found under .*empty.*recursively"):
        load_dataset("folder", tmp_path / "empty", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("folder", tmp_path / "missing", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="needs its folder of images.*--data-root PATH"):
        load_dataset("folder", cache_dir=tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="none of the 1 image files"):
        load_dataset("folder", tmp_path / "junk", cache_dir=tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="holds no MNIST image files"):
        load_dataset("mnist", tmp_path / "empty")


def test_folder_cache_notices_changed_files(celeba_root, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in jpegs(celeba_root, 3):
        os.symlink(p, folder / p.name)
    assert len(load_dataset("folder", folder, image_size=16, cache_dir=tmp_path / "c", progress=False)) == 3
    os.symlink(jpegs(celeba_root, 4)[3], folder / "zzz.jpg")
    assert len(load_dataset("folder", folder, image_size=16, cache_dir=tmp_path / "c", progress=False)) == 4


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_per_seed(tmp_path):
    a = load_dataset("synthetic", image_size=32, max_images=32, seed=1, cache_dir=tmp_path / "a")
    b = load_dataset("synthetic", image_size=32, max_images=32, seed=1, cache_dir=tmp_path / "b")
    c = load_dataset("synthetic", image_size=32, max_images=32, seed=2, cache_dir=tmp_path / "a")
    test = load_dataset("synthetic", image_size=32, max_images=32, seed=1, split="test", cache_dir=tmp_path / "a")
    assert torch.equal(a.images, b.images)
    assert (a.images.float() - c.images.float()).abs().mean() > 20
    assert (a.images.float() - test.images.float()).abs().mean() > 20
    assert torch.equal(synthetic_images(10, 32, seed=1), a.images[:10])  # max_images takes a prefix
    assert (a.name, a.channels, a.image_size, a.root, len(a)) == ("synthetic", 3, 32, None, 32)


def test_synthetic_has_variety_and_sharp_edges(tmp_path):
    data = load_dataset("synthetic", image_size=64, max_images=100, cache_dir=tmp_path)
    x = data.batch(torch.arange(100))
    assert x.shape == (100, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert (x.flatten(1).std(1) > 0.05).all()  # no flat images
    flat = x[:100].flatten(1)
    pairwise = torch.cdist(flat, flat, p=1) / flat.shape[1]  # mean absolute difference of each pair
    off_diagonal = pairwise[~torch.eye(100, dtype=torch.bool)]
    assert off_diagonal.min() > 0.05 and off_diagonal.mean() > 0.2
    colours = x.mean((2, 3))
    assert colours.std(0).min() > 0.1  # mean colour varies across images in every channel
    # shapes give strong local edges that a blur removes: metrics can tell sharp from blurred
    grad = (x[..., 1:] - x[..., :-1]).abs().amax((1, 2, 3))
    assert grad.median() > 0.5


def test_synthetic_default_size(tmp_path, monkeypatch):
    assert synthetic.DEFAULT_SIZE == 10_000
    monkeypatch.setattr(synthetic, "DEFAULT_SIZE", 37)  # max_images=None means DEFAULT_SIZE images
    assert len(load_dataset("synthetic", image_size=8, cache_dir=tmp_path)) == 37


# ---------------------------------------------------------------- issue 15: content-keyed cache, fingerprint, errors

from gan_lib.data import DataError, DataMismatch, check_same_data, data_fingerprint  # noqa: E402
from gan_lib.errors import UserError  # noqa: E402


def copy_jpegs(celeba_root: Path, dest: Path, n: int) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for p in jpegs(celeba_root, n):
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


def test_cache_is_rebuilt_when_images_are_overwritten_in_place(celeba_root, tmp_path):
    folder = copy_jpegs(celeba_root, tmp_path / "imgs", 3)
    args = dict(image_size=16, cache_dir=tmp_path / "c", progress=False)
    before = load_dataset("folder", folder, **args)
    assert before.images.float().mean() > 40
    for p in folder.iterdir():  # same names, black pixels
        Image.new("RGB", (178, 218)).save(p, format="JPEG")
    after = load_dataset("folder", folder, **args)
    assert after.images.float().mean() < 2  # not the cached faces
    assert data_fingerprint(after)["pixels"] != data_fingerprint(before)["pixels"]


def test_a_repaired_file_is_no_longer_reported_unreadable(celeba_root, tmp_path):
    folder = copy_jpegs(celeba_root, tmp_path / "imgs", 3)
    good = (folder / sorted(os.listdir(folder))[0]).read_bytes()
    (folder / "broken.jpg").write_bytes(good[:200])
    args = dict(image_size=16, cache_dir=tmp_path / "c", progress=False)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert load_dataset("folder", folder, **args).skipped == 1
    (folder / "broken.jpg").write_bytes(good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repaired = load_dataset("folder", folder, **args)
    assert (len(repaired), repaired.skipped) == (4, 0)


def test_fingerprint_accepts_a_copy_and_refuses_other_data(celeba_root, tmp_path):
    args = dict(image_size=16, cache_dir=tmp_path / "c", progress=False)
    a = copy_jpegs(celeba_root, tmp_path / "a", 4)
    fp = data_fingerprint(load_dataset("folder", a, **args))
    assert {"dataset", "split", "image_size", "channels", "num_images", "crop", "num_files", "files",
            "pixels"} <= set(fp)
    assert (fp["dataset"], fp["num_images"], fp["image_size"], fp["channels"]) == ("folder", 4, 16, 3)
    copy = copy_jpegs(celeba_root, tmp_path / "copy", 4)  # same images elsewhere, other mtimes
    fp_copy = data_fingerprint(load_dataset("folder", copy, **args))
    assert fp_copy["files"] != fp["files"]
    check_same_data(fp, fp_copy)  # the pixels decide: same data
    check_same_data(None, fp_copy)  # a run from before fingerprints
    more = copy_jpegs(celeba_root, tmp_path / "more", 5)
    with pytest.raises(DataMismatch, match=r"num_images: run has 4, now 5.*--data-root") as e:
        check_same_data(fp, data_fingerprint(load_dataset("folder", more, **args)))
    assert isinstance(e.value, UserError)
    Image.new("RGB", (178, 218), "white").save(copy / sorted(os.listdir(copy))[0], format="JPEG")
    with pytest.raises(DataMismatch, match=r"pixels \(sha256 of the decoded images\)"):
        check_same_data(fp, data_fingerprint(load_dataset("folder", copy, **args)))
    with pytest.raises(DataMismatch, match="crop"):
        check_same_data(fp, data_fingerprint(load_dataset("folder", a, crop=100, **args)))


def test_fingerprint_of_uncached_and_built_in_sets(mnist_root, tmp_path):
    m = load_dataset("mnist", mnist_root, split="test", image_size=32, max_images=20)
    fp = data_fingerprint(m)
    assert (fp["dataset"], fp["channels"], fp["num_images"]) == ("mnist", 1, 20) and len(fp["pixels"]) == 64
    s1 = data_fingerprint(load_dataset("synthetic", image_size=16, max_images=20, seed=1, cache_dir=tmp_path))
    again = data_fingerprint(load_dataset("synthetic", image_size=16, max_images=20, seed=1, cache_dir=tmp_path))
    assert s1 == again  # the second load reads the pixel hash from the cache note
    with pytest.raises(DataMismatch):
        check_same_data(s1, data_fingerprint(load_dataset("synthetic", image_size=16, max_images=20, seed=2,
                                                          cache_dir=tmp_path)))


def test_bad_data_folders_and_partition_files_are_data_errors(celeba_root, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_dataset("folder", tmp_path / "junk", cache_dir=tmp_path, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files found"):
        load_dataset("folder", tmp_path / "empty", cache_dir=tmp_path)
    root = tmp_path / "celeba"
    images = link_celeba(root / "img_align_celeba", celeba_root, 3)
    part = root / "list_eval_partition.txt"
    part.write_bytes(os.urandom(300))  # garbage
    with pytest.raises(DataError, match=r"partition file .*list_eval_partition.txt holds no 'name split' lines"):
        load_dataset("celeba", root, split="train", cache_dir=tmp_path, progress=False)
    part.unlink()
    with pytest.raises(DataError, match="needs list_eval_partition.txt"):
        load_dataset("celeba", root, split="train", cache_dir=tmp_path, progress=False)
    part.write_text("".join(f"{n} 2\n" for n in os.listdir(images)))  # every file in test: train is empty
    with pytest.raises(DataError, match="split 'train' is empty"):
        load_dataset("celeba", root, split="train", cache_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet", cache_dir=tmp_path)
