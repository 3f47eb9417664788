"""`python -m gan_lib weights fetch|check` without network: downloads from local ``file://`` URLs into a temporary
torch hub cache; a file with the wrong hash, a file that is not the Inception state dict and a failed download
each give a clear error and leave nothing where the metrics would pick it up. Every user mistake (a bad --url or
--dest, a missing file, a folder, a failed download) is one ``error:`` line with exit code 2 and leaves no
partial file."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_lib import weights
from gan_lib.__main__ import main
from gan_lib.metrics import inception


REPO = Path(__file__).resolve().parents[1]


def _one_error_line(err: str, *named: object) -> str:
    """The stderr of a user mistake: one ``error:`` line, no traceback, naming each of ``named``."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for thing in named:
        assert str(thing) in lines[0], (thing, err)
    return lines[0]


def _no_partials(folder: Path) -> None:
    assert not [p.name for p in folder.rglob("*") if p.name.startswith(".") or "partial" in p.name]


def _named_by_hash(path: Path) -> Path:
    """Rename ``path`` to ``<stem>-<first 8 hex of its sha256>.pth`` (torch hub's convention)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    target = path.with_name(f"{path.stem}-{digest[:8]}.pth")
    path.rename(target)
    return target


@pytest.fixture(scope="module")
def inception_like(tmp_path_factory) -> Path:
    """A state dict with every key and shape of the FID Inception (random values), named by its hash."""
    path = tmp_path_factory.mktemp("src") / "pt_inception-random.pth"
    torch.save(inception.build_fid_inception().state_dict(), path)
    return _named_by_hash(path)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """A torch hub cache of its own ($TORCH_HOME), empty, and no $GAN_LIB_INCEPTION_WEIGHTS."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_the_hash_in_pytorch_fids_file_name():
    assert inception.FID_WEIGHTS_URL.endswith("/" + inception.FID_WEIGHTS_FILE)
    assert weights.hash_prefix_of(inception.FID_WEIGHTS_FILE) == weights.FID_HASH_PREFIX == "6726825d"
    assert weights.hash_prefix_of("no_hash.pth") is None


def test_fetch_into_the_hub_cache_where_the_metrics_find_it(inception_like, hub, tmp_path):
    dest = hub / inception.FID_WEIGHTS_FILE
    assert inception.default_weights_path() == dest and inception.find_inception_weights() is None
    lines = []
    got = weights.fetch_weights(inception_like.as_uri(), dest, progress=False, log=lines.append)
    assert got == dest and dest.read_bytes() == inception_like.read_bytes()
    assert inception.find_inception_weights() == dest  # what FID will use
    assert lines[-1].startswith(f"ok: {dest}") and not list(hub.glob("*.partial"))
    # a good file is kept (no download: the URL does not even exist)
    weights.fetch_weights((tmp_path / "gone.pth").as_uri(), dest, progress=False, log=lines.append)
    assert "already there and good" in lines[-1]


def test_a_wrong_hash_leaves_nothing_behind(inception_like, hub, tmp_path):
    wrong = tmp_path / f"{inception_like.stem.rsplit('-', 1)[0]}-00000000.pth"
    shutil.copy(inception_like, wrong)
    with pytest.raises(weights.WeightsError, match="does not start with 00000000"):
        weights.fetch_weights(wrong.as_uri(), hub / "w.pth", progress=False, log=lambda *_: None)
    assert not hub.exists() or not any(hub.iterdir())


def test_a_file_that_is_not_the_inception_state_dict_is_refused(hub, tmp_path):
    path = tmp_path / "small.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    path = _named_by_hash(path)  # its hash is right: the load check is what refuses it
    with pytest.raises(weights.WeightsError, match="not the FID Inception network's state dict") as err:
        weights.fetch_weights(path.as_uri(), hub / "w.pth", progress=False, log=lambda *_: None)
    assert "\n" not in str(err.value)  # torch's message spans lines; the error is one
    assert not (hub / "w.pth").exists()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(weights.WeightsError, match="is not a torch state dict") as err:
        weights.check_weights(junk, hash_prefix=None)
    assert "\n" not in str(err.value)


def test_a_failed_download_says_what_to_do(hub, tmp_path, capsys):
    url = (tmp_path / "nowhere" / inception.FID_WEIGHTS_FILE).as_uri()
    with pytest.raises(weights.WeightsError, match="could not download .*copy the file to") as err:
        weights.fetch_weights(url, progress=False, log=lambda *_: None)
    assert str(hub / inception.FID_WEIGHTS_FILE) in str(err.value) and inception.WEIGHTS_ENV in str(err.value)
    assert not hub.exists() or not any(hub.iterdir())
    assert main(["weights", "fetch", "--url", url, "--no-progress"]) == 2
    assert "could not download" in _one_error_line(capsys.readouterr().err, url)


def test_cli_fetch_and_check(inception_like, hub, capsys):
    assert main(["weights", "check"]) == 2  # nothing there yet: where it looked and what to do
    assert "not found" in capsys.readouterr().err
    assert main(["weights", "fetch", "--url", inception_like.as_uri(), "--no-progress"]) == 0
    dest = hub / inception.FID_WEIGHTS_FILE
    assert dest.read_bytes() == inception_like.read_bytes()
    capsys.readouterr()
    # check: the file found by the metrics' search; its name's hash is pytorch-fid's, the content is not
    assert main(["weights", "check"]) == 2
    assert "does not start with 6726825d" in _one_error_line(capsys.readouterr().err, dest)
    assert main(["weights", "check", str(inception_like)]) == 2  # an explicit path is checked the same way
    _one_error_line(capsys.readouterr().err, inception_like)
    assert main(["weights", "check", str(hub / "nowhere.pth")]) == 2
    assert "does not exist" in _one_error_line(capsys.readouterr().err, hub / "nowhere.pth")


@pytest.mark.parametrize("where", ["under_a_file", "sys"])
def test_an_unwritable_dest_is_one_line(inception_like, hub, tmp_path, where):
    """Finding 1: ``--dest`` where nothing can be written (run as a command: no traceback reaches the user)."""
    if where == "sys":
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys here")
        dest = Path("/sys/gan_lib_weights_test/x.pth")
    else:
        (tmp_path / "a_file").write_text("")
        dest = tmp_path / "a_file" / "x.pth"
    proc = subprocess.run([sys.executable, "-m", "gan_lib", "weights", "fetch", "--url", inception_like.as_uri(),
                           "--dest", str(dest), "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "pass a writable --dest" in _one_error_line(proc.stderr, f"cannot write {dest}")
    assert not dest.exists()
    _no_partials(tmp_path)


def test_a_folder_as_path_or_dest(inception_like, hub, tmp_path, capsys):
    """Finding 3: ``check FOLDER`` says it is a folder; ``fetch --dest FOLDER`` writes the standard file name into
    it, and a failed one names the user's URL (not a temporary file) and leaves the folder as it was."""
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["weights", "check", str(folder)]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err, folder)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle")
    assert main(["weights", "fetch", "--url", junk.as_uri(), "--dest", str(folder), "--no-progress"]) == 2
    assert "is not a torch state dict" in _one_error_line(capsys.readouterr().err, junk.as_uri())
    assert not any(folder.iterdir())
    assert main(["weights", "fetch", "--url", inception_like.as_uri(), "--dest", str(folder), "--no-progress"]) == 0
    assert [p.name for p in folder.iterdir()] == [inception.FID_WEIGHTS_FILE]
    assert (folder / inception.FID_WEIGHTS_FILE).read_bytes() == inception_like.read_bytes()


@pytest.mark.parametrize("url", ["notaurl", "htp://host/w.pth", "https:///w.pth", "local"])
def test_a_malformed_url_says_so(inception_like, hub, tmp_path, capsys, url):
    """Finding 4: a malformed ``--url`` is not a failed download (no advice about internet); a local path gets its
    file:// URL. It used to leave torch hub's ``.partial`` file in the --dest folder."""
    url = str(inception_like) if url == "local" else url
    dest = tmp_path / "d" / "x.pth"
    assert main(["weights", "fetch", "--url", url, "--dest", str(dest), "--no-progress"]) == 2
    line = _one_error_line(capsys.readouterr().err, repr(url), "file://")
    assert "is not a valid" in line and "internet" not in line
    if url == str(inception_like):
        assert inception_like.as_uri() in line
    assert not dest.exists()
    _no_partials(tmp_path)
