"""Run folders that cannot be mixed, wiped or silently changed (issue 15), at the level of their primitives:
the folder lock (two real processes), the guard against overwriting a run, verified checkpoints with a fallback,
status liveness, a full disk, file modes, and the CLI's one-line errors. The training loop's own use of them
is tested in test_train.py."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from gan_lib import checkpoint
from gan_lib.__main__ import main
from gan_lib.config import make_config
from gan_lib.errors import EXIT_LOCKED, UserError
from gan_lib.run_dir import (FILE_MODE, CheckpointError, DiskFull, RunDir, RunDirError, RunExists, RunLocked,
                             atomic_write_text)
from gan_lib.run_lock import RunLock, holds_lock

REPO = Path(__file__).resolve().parents[1]


def holder_process(folder: Path, status: str | None = None) -> subprocess.Popen:
    """A real second process that claims ``folder`` (optionally writes a status) and sleeps until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from gan_lib.run_dir import RunDir
        run = RunDir({str(folder)!r})
        with run.claim():
            if {status!r}:
                run.write_status(state={status!r}, step=3)
            print("ready", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout.readline().strip() == "ready"
    return proc


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


# --- 1. one writer per folder -------------------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_blocks_nobody(tmp_path):
    folder = tmp_path / "run"
    proc = holder_process(folder, status="running")
    try:
        run = RunDir(folder)
        assert run.lock_holder()["pid"] == proc.pid
        t0 = time.monotonic()
        with pytest.raises(RunLocked) as e:
            with run.claim(wait=0.3):
                pass
        assert time.monotonic() - t0 < 5
        assert f"is being trained by pid {proc.pid} on host {socket.gethostname()} since " in str(e.value)
        assert e.value.exit_code == EXIT_LOCKED and isinstance(e.value, UserError)
        assert run.liveness() == "live" and run.effective_state() == "running"
    finally:
        kill9(proc)
    # kill -9 leaves the lock file and a "running" status, but no lock: the next writer is not blocked
    assert run.lock_path.exists() and run.read_status()["state"] == "running"
    assert run.lock_holder() is None
    assert run.liveness() == "stale" and run.effective_state() == "stale"
    with run.claim(wait=0):
        assert run.lock_holder()["pid"] == os.getpid()


def test_the_lock_is_reentrant_within_a_process_and_released_on_exit(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock():
        with run.claim():  # e.g. the CLI and train() both holding it
            assert holds_lock(run.path)
        assert holds_lock(run.path)
    assert not holds_lock(run.path) and run.lock_holder() is None
    with pytest.raises(ZeroDivisionError):
        with run.claim():
            1 / 0
    assert not holds_lock(run.path)


# --- 2. a folder holding a run without a checkpoint is never overwritten ------------------------------------

def fake_run(folder: Path, state: str = "interrupted", checkpoint_file: bool = False, **config) -> RunDir:
    run = RunDir(folder).create()
    run.save_config(make_config("smoke", **config).to_dict())
    run.append_metrics([{"step": 1, "loss_d": 0.5}])
    (run.samples_dir / "step_000000.png").write_bytes(b"png")
    run.write_status(state=state, step=1, steps=20)
    if checkpoint_file:
        run.save_checkpoint({"step": 1}, "last")
    return run


def test_a_run_without_checkpoint_is_refused_unless_it_is_the_same_unfinished_run(tmp_path):
    run = fake_run(tmp_path / "run")
    same = json.loads(json.dumps(make_config("smoke").to_dict()))
    with pytest.raises(RunExists, match=r"holds an interrupted run \(config.json, metrics.csv.*--restart"):
        run.check_can_start()
    with pytest.raises(RunExists):
        run.check_can_start(lambda saved: saved["model"] == "dcgan")  # another config
    assert run.check_can_start(lambda saved: saved == same) == "new"  # same run, stopped before a checkpoint
    record = fake_run(tmp_path / "record", state="completed")  # a committed run record: no checkpoints
    with pytest.raises(RunExists, match="a completed run"):
        record.check_can_start(lambda saved: True)
    assert fake_run(tmp_path / "ck", checkpoint_file=True).check_can_start() == "resume"
    empty = RunDir(tmp_path / "empty")
    (empty.path).mkdir()
    (empty.path / "train.log").write_text("$ python -m gan_lib train ...\n")  # what the study runner writes first
    assert empty.check_can_start() == "new"


def test_restart_moves_the_old_run_aside_and_deletes_nothing(tmp_path):
    run = fake_run(tmp_path / "run")
    before = {p.relative_to(run.path): p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    fresh = RunDir(run.path)
    before[Path(".lock")] = None  # claim's lock file goes along
    with fresh.claim(restart=True):
        assert fresh.moved_to.name.startswith("run.old-") and fresh.moved_to.parent == tmp_path
        assert fresh.run_files() == [] and fresh.check_can_start() == "new"
        assert fresh.lock_holder()["pid"] == os.getpid()  # the new folder is the one locked
    moved = {p.relative_to(fresh.moved_to): None if p.name == ".lock" else p.read_bytes()
             for p in fresh.moved_to.rglob("*") if p.is_file()}
    assert moved == before


# --- 6. checkpoints: verified, the previous one kept, a damaged one never used silently ----------------------

def train_like_state(step: int) -> dict:
    torch.manual_seed(step)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.0, 0.9))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.95)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    sched.step()
    gen = torch.Generator().manual_seed(step)
    return {"step": step, "config": make_config("smoke").to_dict(), "generator": model.state_dict(),
            "opt_g": opt.state_dict(), "sched_g": sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "data": gen.get_state(), "cuda": None, "device_type": "cpu"},
            "data_order": {"perm": torch.randperm(10), "pos": 3}, "best": {"metric": None, "value": None},
            "half": torch.randn(3).to(torch.bfloat16)}


def assert_same_state(a: dict, b: dict) -> None:
    assert checkpoint.state_digest(a) == checkpoint.state_digest(b)
    assert torch.equal(a["generator"]["0.weight"], b["generator"]["0.weight"]) and a["step"] == b["step"]


def test_checkpoints_round_trip_verified_and_keep_the_previous_one(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.save_checkpoint(train_like_state(10))
    assert not run.previous_checkpoint_path().exists()
    run.save_checkpoint(train_like_state(20))
    assert_same_state(run.load_checkpoint(), train_like_state(20))
    assert checkpoint.read(run.previous_checkpoint_path())["step"] == 10
    assert "integrity" not in run.load_checkpoint()


@pytest.mark.parametrize("damage", ["truncated", "zero bytes", "garbled"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path, damage):
    run = RunDir(tmp_path / "run").create()
    run.save_checkpoint(train_like_state(10))
    run.save_checkpoint(train_like_state(20))
    path = run.checkpoint_path()
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "zero bytes": b"",
                      "garbled": data[:100] + os.urandom(len(data) - 100)}[damage])
    with pytest.warns(UserWarning, match=rf"checkpoint {path} is damaged.*using the previous checkpoint .*"
                                         rf"last.prev.pt \(step 10\)"):
        state = run.load_checkpoint()
    assert_same_state(state, train_like_state(10))
    # the next save keeps the damaged file for inspection and does not push the good one out
    run.save_checkpoint(train_like_state(11))
    assert path.with_name("last.pt.damaged").read_bytes() != data
    assert checkpoint.read(run.previous_checkpoint_path())["step"] == 10
    assert run.load_checkpoint()["step"] == 11


def test_no_usable_checkpoint_is_an_error_naming_the_files(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.save_checkpoint(train_like_state(10))
    run.save_checkpoint(train_like_state(20))
    run.checkpoint_path().write_bytes(b"")
    run.previous_checkpoint_path().write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError) as e:
        run.load_checkpoint()
    msg = str(e.value)
    assert str(run.checkpoint_path()) in msg and str(run.previous_checkpoint_path()) in msg and "--restart" in msg
    with pytest.raises(CheckpointError, match=r"no checkpoint .*best.pt"):
        run.load_checkpoint("best")


def test_a_weight_altered_inside_best_pt_is_detected(tmp_path):
    run = RunDir(tmp_path / "run").create()
    state = train_like_state(30)
    weight = state["generator"]["0.weight"]
    run.save_checkpoint(state, "best")
    path = run.checkpoint_path("best")
    data = bytearray(path.read_bytes())
    at = data.find(weight.numpy().tobytes())
    assert at > 0
    data[at:at + 4] = torch.tensor([123.0]).numpy().tobytes()  # one weight changed, same file size
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=False)["generator"]["0.weight"].flatten()[0] == 123.0  # loads silently
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} fails its checksum"):
        run.load_checkpoint("best")


def test_clean_tmp_removes_a_killed_writers_temporary_files_and_needs_the_lock(tmp_path):
    run = RunDir(tmp_path / "run").create()
    leftovers = [run.checkpoints_dir / ".last.pt.abc123.tmp", run.path / ".status.json.x.tmp",
                 run.samples_dir / ".step_000010.png.y.tmp"]
    for p in leftovers:
        p.write_bytes(b"partial")
    keep = run.checkpoints_dir / "last.pt"
    keep.write_bytes(b"x")
    with pytest.raises(RuntimeError, match="needs its lock"):
        run.clean_tmp()
    with run.claim():  # claim cleans them
        pass
    assert not any(p.exists() for p in leftovers) and keep.exists()


# --- 7. status: who writes it and whether they are alive ----------------------------------------------------

def test_status_records_pid_host_and_heartbeat(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run").create()
    st = run.write_status(state="running", step=0)
    assert (st["pid"], st["host"]) == (os.getpid(), socket.gethostname())
    assert abs(st["heartbeat"] - time.time()) < 5
    assert run.heartbeat(min_interval=60) is False  # just written
    monkeypatch.setattr(time, "time", lambda: st["heartbeat"] + 61)
    assert run.heartbeat(min_interval=60) is True and run.read_status()["heartbeat"] == st["heartbeat"] + 61


def test_liveness_without_a_lock_file_uses_pid_then_heartbeat(tmp_path):
    run = RunDir(tmp_path / "run").create()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    status = {"state": "running", "pid": dead.pid, "host": socket.gethostname(), "heartbeat": time.time()}
    assert run.liveness(status) == "stale"
    assert run.liveness({**status, "pid": os.getpid()}) == "live"
    other = {"state": "running", "pid": 1, "host": "elsewhere"}
    assert run.liveness({**other, "heartbeat": time.time() - 7200}) == "stale"
    assert run.liveness({**other, "heartbeat": time.time()}) == "live"
    assert run.liveness({"state": "running"}) == "unknown"
    assert run.liveness({"state": "completed"}) is None
    assert run.effective_state({"state": "completed", "pid": dead.pid}) == "completed"


# --- 8. a full disk, file modes, a bad out path -------------------------------------------------------------

def test_enospc_during_a_checkpoint_write_names_the_device_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run").create()
    run.save_checkpoint(train_like_state(10))
    good = run.checkpoint_path().read_bytes()
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFull) as e:
        run.save_checkpoint(train_like_state(20))
    monkeypatch.setattr(os, "fsync", real_fsync)
    msg = str(e.value)
    assert msg.startswith("no space left on ") and "(mounted at " in msg
    assert f"last good checkpoint at step 10 ({run.checkpoint_path()})" in msg and "run the same command" in msg
    assert run.checkpoint_path().read_bytes() == good and not run.previous_checkpoint_path().exists()
    assert not list(run.checkpoints_dir.glob(".*.tmp"))
    assert run.try_write_status(state="failed") is not None


def test_enospc_on_a_real_small_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected ENOSPC test covers the message")
    try:
        run = RunDir(mnt / "run").create()
        state = {"step": 1, "w": torch.zeros(24_000)}  # 96 KB: a checkpoint, its previous and a third do not fit
        run.save_checkpoint(state)
        run.save_checkpoint({**state, "step": 2})
        with pytest.raises(DiskFull, match=rf"no space left on tmpfs \(mounted at {mnt}.*last good checkpoint at "
                                           rf"step 2"):
            run.save_checkpoint({**state, "step": 3, "w": torch.ones(24_000)})
        assert run.load_checkpoint()["step"] == 2
        assert not list(run.checkpoints_dir.glob(".*.tmp"))
        with pytest.raises(DiskFull):
            run.append_metrics([{"step": i, "loss_d": 0.1} for i in range(20_000)])
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_run_and_cache_files_get_the_usual_mode(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    assert FILE_MODE == 0o666 & ~umask  # what open() gives, not mkstemp's 0600
    if umask == 0o022:
        assert FILE_MODE == 0o644
    run = RunDir(tmp_path / "run").create()
    run.write_status(state="running")
    run.save_checkpoint({"step": 1})
    run.save_samples(torch.zeros(4, 3, 8, 8), 0)
    atomic_write_text(tmp_path / "x.json", "{}")
    from gan_lib.data.cache import ArrayCache
    from gan_lib.metrics.cache import ReferenceCache
    ArrayCache(tmp_path / "cache", name="t").save(torch.zeros(2, 3, 4, 4, dtype=torch.uint8).numpy())
    ReferenceCache(tmp_path / "cache").save({"dataset": "t"}, {"mu": torch.zeros(2)})
    files = [run.status_path, run.checkpoint_path(), run.sample_path(0), tmp_path / "x.json",
             *(tmp_path / "cache").rglob("*.*")]
    assert len(files) == 7
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(FILE_MODE) for p in files}


def test_an_out_path_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match="is a file; pass a folder path"):
        RunDir(tmp_path / "f").create()
    with pytest.raises(RunDirError, match=r"is inside .*f, which is a file"):
        RunDir(tmp_path / "f" / "run").lock()


def test_truncate_drops_a_row_cut_short_by_a_crash(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.append_metrics([{"step": s, "loss_d": 0.1, "loss_g": 0.2} for s in (1, 2)])
    with open(run.metrics_path, "a") as f:
        f.write("1")  # the start of row 12, cut short
    run.truncate(5)
    assert [r["step"] for r in run.read_metrics()] == ["1", "2"]


# --- the CLI: one line, the right exit code, nothing touched -------------------------------------------------

def cli(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_cli_refuses_a_run_without_checkpoint_and_touches_nothing(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    code, err = cli(capsys, "train", "--preset", "smoke", "--model", "dcgan", "--set", "lr_g=0.001",
                    "--steps", "5", "--out", str(run.path))
    assert code == 2 and err.startswith("error: ") and "--restart" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before


def test_cli_refuses_a_locked_folder_with_exit_75(tmp_path, capsys):
    proc = holder_process(tmp_path / "run")
    try:
        code, err = cli(capsys, "train", "--preset", "smoke", "--out", str(tmp_path / "run"))
    finally:
        kill9(proc)
    assert code == EXIT_LOCKED and f"is being trained by pid {proc.pid}" in err


def test_cli_refuses_to_shorten_a_run_and_passes_restart(tmp_path, capsys, monkeypatch):
    run = fake_run(tmp_path / "run", state="completed", checkpoint_file=True)
    run.write_status(checkpoint_step=40)
    code, err = cli(capsys, "train", "--preset", "smoke", "--steps", "10", "--out", str(run.path))
    assert code == 2 and "is at step 40; steps=10 cannot shorten it" in err
    calls = []

    def fake_train(cfg, out, **kw):
        calls.append(kw)
        return {"state": "completed"}

    def fake_train_seeds(cfgs, outs, **kw):
        return [fake_train(c, o, **kw) for c, o in zip(cfgs, outs)]

    import gan_lib.train
    monkeypatch.setattr(gan_lib.train, "train", fake_train)
    monkeypatch.setattr(gan_lib.train, "train_seeds", fake_train_seeds)
    assert main(["train", "--preset", "smoke", "--steps", "40", "--out", str(run.path), "--no-progress"]) == 0
    assert "already completed at step 40/40" in capsys.readouterr().out
    assert main(["train", "--preset", "smoke", "--steps", "10", "--out", str(run.path), "--restart"]) == 0
    assert "restarting (the old run is moved aside)" in capsys.readouterr().out
    assert [c["restart"] for c in calls] == [False, True]


def test_cli_eval_errors_name_the_metric_or_the_file(tmp_path, capsys):
    run = fake_run(tmp_path / "run", state="completed")
    code, err = cli(capsys, "eval", str(run.path), "--metrics", "swd,bogus")
    assert code == 2 and "unknown metric 'bogus' in --metrics" in err
    run.checkpoint_path("best").write_bytes(b"PK\x03\x04" + b"\0" * 100)  # a truncated best.pt
    code, err = cli(capsys, "eval", str(run.path))
    assert code == 2 and f"checkpoint {run.checkpoint_path('best')} is damaged" in err


def test_cli_eval_says_when_a_run_crashed(tmp_path, capsys, monkeypatch):
    import gan_lib.train
    run = fake_run(tmp_path / "run", state="running")
    with run.lock():  # trained by a lock-aware writer that then died
        pass
    monkeypatch.setattr(gan_lib.train, "evaluate_run", lambda *a, **k: {"checkpoint": "last", "step": 1,
                                                                        "num_samples": 16, "eval_sec": 0.0,
                                                                        "metrics": {"swd": 1.0}})
    assert main(["eval", str(run.path)]) == 0
    assert "says 'running' (step 1) but no process trains it" in capsys.readouterr().out


def test_ctrl_c_anywhere_exits_130_saying_how_to_resume(capsys, monkeypatch):
    import gan_lib.reproduce

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(gan_lib.reproduce, "reproduce", interrupted)
    code, err = cli(capsys, "reproduce", "--preset", "smoke", "--only", "01")
    assert code == 130 and "interrupted; run the same command to resume" in err


def test_last_good_step_follows_saves_and_loads_and_else_the_status(tmp_path):
    run = RunDir(tmp_path / "run").create()
    assert run.last_good_step() is None and run.last_good_step("best") is None
    run.write_status(state="interrupted", step=30, checkpoint_step=30)
    assert run.last_good_step() == 30 and run.last_good_step("best") is None  # only "last" is in status.json
    run.save_checkpoint({"step": 40, "x": torch.zeros(2)})
    assert run.last_good_step() == 40  # the save, not the (older) status
    fresh = RunDir(run.path)
    assert fresh.last_good_step() == 30
    fresh.load_checkpoint("last")
    assert fresh.last_good_step() == 40
