"""The study's runs as Ray tasks (gan_lib.executors, issue 14), against real Ray on this machine.

One Ray head node is started for the module as a separate process (``ray start --head --block`` on 127.0.0.1, a
free port, 2 CPUs, no dashboard, a small object store, its own temp dir) and stopped at the end, even on failure,
by signalling that process (which stops its raylet, GCS and workers); no ``ray stop``, which would stop every Ray
on the machine. The runs are smoke runs on the synthetic set (20 steps, a checkpoint every 2) with one torch
thread, so the same config and seed give the same metrics.csv whatever process or node trains them: the Ray runs
are compared with the same runs trained by the local executor. About 2-3 minutes on 2 busy cores, most of it
Ray starting processes (the head node, a worker per driver) and each run's ``python -m gan_lib train``. Skipped only when Ray is not installed
(``bash scripts/setup.sh`` installs it).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gan_lib import executors, study
from gan_lib.config import ConfigError

pytestmark = pytest.mark.skipif(not executors.ray_installed(),
                                reason="Ray is not installed (pip install -e '.[ray]'; scripts/setup.sh does)")

QUICK = dict(dataset="synthetic", steps=20, eval_every=10, ckpt_every=2, max_images=64, threads=1, progress=False)
SPECS = study.gan_comparison((0,))  # dcgan-s0, sagan-s0, igan-k3g4r2-s0
DCGAN, SAGAN, IGAN = SPECS
TIMING = {"sec_per_step", "eval_sec"}  # the only columns that differ between identical runs
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows(path: Path, name: str) -> list[dict]:
    with open(path / name, newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
    """The same training: config, every metrics.csv value but the timings, the evaluations."""
    assert json.loads((a / "config.json").read_text()) == json.loads((b / "config.json").read_text())
    assert rows(a, "metrics.csv") == rows(b, "metrics.csv") and len(rows(a, "metrics.csv")) == QUICK["steps"]
    assert rows(a, "evals.csv") == rows(b, "evals.csv")


def folder(root: Path, spec) -> Path:
    return study.run_path(root, "smoke", "synthetic", 32, spec)


def status(path: Path) -> dict:
    return json.loads((path / "status.json").read_text())


def ran_on(path: Path) -> tuple:
    """(executor, node) as the run's status.json records them."""
    st = status(path)
    return st.get("executor"), st.get("node")


@pytest.fixture(scope="module", autouse=True)
def ray_token(tmp_path_factory):
    """Token authentication with this module's own token (what the README asks of a cluster), for the head node
    and every driver and local instance here: ~/.ray is neither read nor written."""
    import secrets

    token = tmp_path_factory.mktemp("ray_auth") / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    yield token
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """DCGAN and iGAN trained by the local executor: what every Ray run must equal."""
    root = tmp_path_factory.mktemp("local")
    outcomes = study.run_all([DCGAN, IGAN], "smoke", runs_root=root, jobs=2, **QUICK)
    assert [o["state"] for o in outcomes] == ["completed", "completed"]
    return root


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head node in its own process on 127.0.0.1; yields its address, pids and node ids."""
    import psutil

    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    port = free_port()
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
    ray_bin = Path(sys.executable).with_name("ray")
    log_path = Path(tmp) / "head.log"
    cmd = [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
           "--object-store-memory=100000000", f"--temp-dir={tmp}"]
    with open(log_path, "w") as log:
        head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    pids = {head.pid}
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log_path.read_text():
            assert head.poll() is None, f"ray start --head failed:\n{log_path.read_text()[-3000:]}"
            assert time.time() < deadline, f"ray start --head not up in 120 s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.2)
        address = f"127.0.0.1:{port}"
        ray, connected = executors.connect_ray(address)
        try:
            nodes = ray.nodes()
        finally:
            executors.shutdown_ray(ray)
        pids |= {p.pid for p in psutil.Process(head.pid).children(recursive=True)}
        yield dict(address=address, pid=head.pid, pids=pids, nodes=nodes, temp_dir=tmp)
    finally:
        try:
            pids |= {p.pid for p in psutil.Process(head.pid).children(recursive=True)}
        except psutil.Error:
            pass
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(10)
        for pid in pids:  # anything of ours still alive (by pid, never by name)
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
            except psutil.Error:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


# --- no Ray needed ---

def test_local_executor_keeps_order_reports_failures_and_needs_no_ray():
    code = (
        "import sys\n"
        "from gan_lib.executors import map_jobs\n"
        "done = []\n"
        "out = map_jobs(lambda x: 1 / x, [1, 0, 4], jobs=2, on_done=lambda i, r: done.append(i),\n"
        "               on_error=lambda i, e: type(e).__name__)\n"
        "assert out == [1.0, 'ZeroDivisionError', 0.25], out\n"
        "assert sorted(done) == [0, 1, 4], done\n"
        "assert isinstance(map_jobs(lambda x: 1 / x, [0])[0], ZeroDivisionError)\n"
        "assert 'ray' not in sys.modules\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_bad_executor_or_address_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from gan_lib.__main__ import main

    with pytest.raises(ConfigError, match="choose one of"):
        executors.map_jobs(abs, [1], executor="spark")
    with pytest.raises(ConfigError, match="GPUs per run"):
        executors.check_executor("ray", num_gpus=1.5)
    base = ["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--only", "01", "--runs-root",
            str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--no-progress", "--executor", "ray"]
    assert main(base + ["--address", f"127.0.0.1:{free_port()}"]) == 2  # nothing listens there
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach the Ray cluster at 127.0.0.1:") and "\n" not in err
    monkeypatch.setattr(executors, "ray_installed", lambda: False)
    assert main(base) == 2
    assert "--executor ray needs Ray" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing started


# --- a Ray cluster on this machine ---

def test_head_node_stays_on_the_loopback_address(ray_head):
    import psutil

    assert [n["NodeManagerAddress"] for n in ray_head["nodes"]] == ["127.0.0.1"]
    listening = [(c.laddr.ip, c.laddr.port) for pid in ray_head["pids"] if psutil.pid_exists(pid)
                 for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening and {ip for ip, _ in listening} <= LOOPBACK, listening


def test_cluster_runs_equal_the_local_executors_runs(ray_head, reference, tmp_path):
    t0 = time.time()
    reported = []
    outcomes = study.run_all([DCGAN, IGAN], "smoke", runs_root=tmp_path, executor="ray",
                             address=ray_head["address"], on_done=reported.append, **QUICK)
    assert [(o["name"], o["state"], o["reused"]) for o in outcomes] == [
        (DCGAN.name, "completed", False), (IGAN.name, "completed", False)]
    assert sorted(o["name"] for o in reported) == sorted([DCGAN.name, IGAN.name])  # on_done in the driver
    for spec in (DCGAN, IGAN):
        assert_same_run(folder(tmp_path, spec), folder(reference, spec))
        assert ran_on(folder(tmp_path, spec)) == ("ray", socket.gethostname())
        assert ran_on(folder(reference, spec)) == ("local", socket.gethostname())
    print(f"2 runs on the Ray head node: {time.time() - t0:.1f} s")


def test_a_task_marks_its_environment_for_the_training_subprocess(ray_head):
    """GAN_LIB_EXECUTOR / GAN_LIB_NODE / GAN_LIB_RAY_NODE_ID reach the subprocess a job starts (the training
    records them in status.json), and SIGINT is not blocked there (Ray's worker threads block it)."""
    probe = ("import json, os\n"
             "blocked = int([l for l in open('/proc/self/status') if l.startswith('SigBlk')][0].split()[1], 16)\n"
             "print(json.dumps({k: os.environ.get(k) for k in ('GAN_LIB_EXECUTOR', 'GAN_LIB_NODE', "
             "'GAN_LIB_RAY_NODE_ID')} | {'sigint_blocked': bool(blocked & (1 << (2 - 1)))}))\n")

    def job(i):
        import subprocess as sp
        import sys as _sys
        return json.loads(sp.run([_sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)

    out = executors.map_jobs(job, range(2), executor="ray", address=ray_head["address"])
    node_ids = {n["NodeID"] for n in ray_head["nodes"]}
    for env in out:
        assert env["GAN_LIB_EXECUTOR"] == "ray" and env["GAN_LIB_NODE"] == socket.gethostname()
        assert env["GAN_LIB_RAY_NODE_ID"] in node_ids and not env["sigint_blocked"]
    assert "GAN_LIB_EXECUTOR" not in os.environ  # set in the task, not in the driver


def test_local_ray_instance_runs_equal_the_local_executors_runs(reference, tmp_path):
    import ray

    seen = {}

    def watch():  # the instance map_jobs starts: its node address, while it is up
        deadline = time.time() + 120
        while time.time() < deadline and "nodes" not in seen:
            if ray.is_initialized():
                try:
                    seen["nodes"] = [n["NodeManagerAddress"] for n in ray.nodes()]
                except Exception:
                    pass
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.time()
    (outcome,) = study.run_all([DCGAN], "smoke", runs_root=tmp_path, executor="ray", **QUICK)
    watcher.join(5)
    assert outcome["state"] == "completed"
    assert_same_run(folder(tmp_path, DCGAN), folder(reference, DCGAN))
    assert ran_on(folder(tmp_path, DCGAN)) == ("ray", socket.gethostname())
    assert seen.get("nodes") == ["127.0.0.1"]
    assert not ray.is_initialized()  # the private instance was stopped
    print(f"1 run on a local Ray instance (start and stop included): {time.time() - t0:.1f} s")


def _kill_mid_run(path: Path, killed: dict, stop: threading.Event) -> None:
    """As soon as the run has a checkpoint: SIGKILL its training process and the Ray worker running it (what a
    node that disappears does to them)."""
    import psutil

    while not stop.is_set():
        if (path / "checkpoints" / "last.pt").exists():
            for proc in psutil.process_iter(["cmdline"]):
                cmd = proc.info["cmdline"] or []
                if "train" in cmd and str(path) in cmd:
                    worker = proc.parent()
                    killed.update(train=proc.pid, worker=worker.pid, worker_cmd=" ".join(worker.cmdline()),
                                  checkpoint_step=status(path).get("checkpoint_step"))
                    worker.kill()
                    proc.kill()
                    return
        time.sleep(0.01)


def test_a_run_whose_worker_dies_is_retried_and_resumes(ray_head, reference, tmp_path):
    path = folder(tmp_path, DCGAN)
    killed, stop = {}, threading.Event()
    killer = threading.Thread(target=_kill_mid_run, args=(path, killed, stop), daemon=True)
    killer.start()
    try:
        (outcome,) = study.run_all([DCGAN], "smoke", runs_root=tmp_path, executor="ray",
                                   address=ray_head["address"], **QUICK)
    finally:
        stop.set()
        killer.join(5)
    assert killed, "the run ended before its first checkpoint could be killed"
    assert killed["worker_cmd"].startswith("ray::")  # the training's parent was the Ray worker
    st = status(path)
    assert outcome["state"] == "completed" and st["state"] == "completed" and st["step"] == QUICK["steps"]
    assert st["resumed_at_step"] is not None and QUICK["ckpt_every"] <= st["resumed_at_step"] < QUICK["steps"]
    assert (path / "train.log").read_text().count("$ ") == 2  # the first attempt and Ray's retry
    assert_same_run(path, folder(reference, DCGAN))  # resumed exactly where the checkpoint was


def test_ctrl_c_cancels_queued_tasks_and_interrupts_the_running_one(ray_head, tmp_path):
    specs = [DCGAN, SAGAN, IGAN]
    reported = []

    def interrupt_when_training():  # Ctrl-C in the driver once one run has logged a step
        deadline = time.time() + 120
        while time.time() < deadline:
            if any((folder(tmp_path, s) / "metrics.csv").exists() and rows(folder(tmp_path, s), "metrics.csv")
                   for s in specs):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    threading.Thread(target=interrupt_when_training, daemon=True).start()
    long = dict(QUICK, steps=1000)  # interrupted long before its end
    with pytest.raises(KeyboardInterrupt):  # 2 CPUs per run on a 2-CPU node: one run at a time
        study.run_all(specs, "smoke", runs_root=tmp_path, executor="ray", address=ray_head["address"],
                      cpus_per_run=2, on_done=reported.append, **long)
    started = [s for s in specs if folder(tmp_path, s).exists()]
    assert len(started) == 1 and [o["name"] for o in reported] == [started[0].name]  # queued ones never ran
    assert reported[0]["state"] == "interrupted"
    st = status(folder(tmp_path, started[0]))
    # a consistent folder: the checkpoint is the last step logged (the next call resumes from it, as the
    # worker-death test shows)
    assert st["state"] == "interrupted" and st["checkpoint_step"] == st["step"] < long["steps"]
    assert len(rows(folder(tmp_path, started[0]), "metrics.csv")) == st["step"]
    assert (folder(tmp_path, started[0]) / "checkpoints" / "last.pt").exists()


def test_reproduce_trains_every_run_as_a_ray_task(ray_head, tmp_path, monkeypatch):
    """``python -m gan_lib reproduce --executor ray --address``: the notebook's runs are trained on the cluster
    (each status.json says so) before its notebook is executed; the execution itself is test_notebooks' (here
    it is recorded, not run, to keep this short)."""
    from gan_lib import reproduce
    from gan_lib.__main__ import main

    executed = []
    monkeypatch.setattr(reproduce, "execute_notebook",
                        lambda name, params, out_dir, progress=True: executed.append(name) or dict(status="ok"))
    code = main(["reproduce", "--preset", "smoke", "--dataset", "synthetic", "--only", "01", "--steps", "2",
                 "--eval-every", "2", "--threads", "1", "--runs-root", str(tmp_path / "runs"), "--results",
                 str(tmp_path / "results"), "--no-progress", "--executor", "ray", "--address", ray_head["address"]])
    assert code == 0 and executed == ["01_gan_comparison"]
    folders = sorted((tmp_path / "runs" / "smoke" / "synthetic32").iterdir())
    assert [f.name for f in folders] == sorted(s.name for s in SPECS)
    assert {ran_on(f) for f in folders} == {("ray", socket.gethostname())}
    st = json.loads((tmp_path / "results" / "smoke" / "reproduce_status.json").read_text())
    assert st["executor"] == f"ray ({ray_head['address']})" and st["notebooks"]["01_gan_comparison"]["runs"] == {
        "completed": 3}


def test_child_exit_codes_survive_a_ray_driver():
    """After the Ray runs above (in this process), a child's exit code still reads as it is (Ray's driver leaves
    SIGCHLD ignored; `executors.shutdown_ray` restores it: without that, subprocess reports 0 for every child)."""
    import subprocess
    import sys

    assert subprocess.run([sys.executable, "-c", "import sys; sys.exit(75)"]).returncode == 75
