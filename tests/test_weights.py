"""`python -m gan_lib weights fetch|check` without network: downloads from local ``file://`` URLs into a temporary
torch hub cache; a file with the wrong hash, a file that is not the Inception state dict and a failed download
each give a clear error and leave nothing where the metrics would pick it up."""
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from gan_lib import weights
from gan_lib.__main__ import main
from gan_lib.metrics import inception


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
    with pytest.raises(weights.WeightsError, match="not the FID Inception network's state dict"):
        weights.fetch_weights(path.as_uri(), hub / "w.pth", progress=False, log=lambda *_: None)
    assert not (hub / "w.pth").exists()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(weights.WeightsError, match="is not a torch state dict"):
        weights.check_weights(junk, hash_prefix=None)


def test_a_failed_download_says_what_to_do(hub, tmp_path, capsys):
    url = (tmp_path / "nowhere" / inception.FID_WEIGHTS_FILE).as_uri()
    with pytest.raises(weights.WeightsError, match="could not download .*copy the file to") as err:
        weights.fetch_weights(url, progress=False, log=lambda *_: None)
    assert str(hub / inception.FID_WEIGHTS_FILE) in str(err.value) and inception.WEIGHTS_ENV in str(err.value)
    assert not hub.exists() or not any(hub.iterdir())
    assert main(["weights", "fetch", "--url", url, "--no-progress"]) == 1
    assert "error: could not download" in capsys.readouterr().err


def test_cli_fetch_and_check(inception_like, hub, capsys):
    assert main(["weights", "check"]) == 2  # nothing there yet: where it looked and what to do
    assert "not found" in capsys.readouterr().err
    assert main(["weights", "fetch", "--url", inception_like.as_uri(), "--no-progress"]) == 0
    dest = hub / inception.FID_WEIGHTS_FILE
    assert dest.read_bytes() == inception_like.read_bytes()
    capsys.readouterr()
    # check: the file found by the metrics' search; its name's hash is pytorch-fid's, the content is not
    assert main(["weights", "check"]) == 1
    assert "does not start with 6726825d" in capsys.readouterr().err
    assert main(["weights", "check", str(inception_like)]) == 1  # an explicit path is checked the same way
