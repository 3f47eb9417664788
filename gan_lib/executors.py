"""Where the study's jobs run: a thread pool on this machine (``local``) or tasks on a Ray cluster (``ray``).

One entry point, `map_jobs(fn, items, executor=...)`: ``fn(item)`` for every item, results in the items' order.
What a job *is* (one run, or a configuration's seeds stacked in one process) is the caller's business
(`gan_lib.study.run_all`); this module only decides where and how many at a time, with the same semantics on
both executors:

* a job's exception is that job's failure (``on_error(item, exc)`` makes its result, else the exception object
  is the result); the other jobs go on;
* ``on_done(item, result)`` is called as each job ends (local: from the pool's thread; Ray: in the driver);
* Ctrl-C (KeyboardInterrupt in the caller): no queued job starts, the running ones end, and KeyboardInterrupt
  is re-raised once they did. Locally the running runs get the terminal's SIGINT themselves (same process
  group); on Ray the queued tasks are cancelled (``ray.cancel``) and each running task forwards SIGINT to its
  training process, which saves a checkpoint and marks its run interrupted; their results still reach
  ``on_done``.

``executor="ray"``: each item is a Ray task with declared resources (``num_cpus``; ``num_gpus`` may be a
fraction, so several small runs share a GPU) that runs ``fn(item)`` on a worker, with the environment variables
``GAN_LIB_EXECUTOR=ray``, ``GAN_LIB_NODE`` (the node's host name) and ``GAN_LIB_RAY_NODE_ID`` set first (a run's
training subprocess inherits them and records them in its status.json). A task whose worker or node dies is
retried by Ray (``max_retries``); the retried run resumes from its last checkpoint, so the run folders must be
on storage every node sees at the same path (NFS, Lustre, a ReadWriteMany volume; README "Running the study on
a Ray cluster"). Without ``address`` a private local Ray instance is started on 127.0.0.1 (no dashboard, no
usage stats, a small object store, ``jobs * num_cpus`` CPUs) and stopped at the end; with one, the driver
joins that cluster (``"auto"``: the one started on this node with ``ray start``; ``"HOST:PORT"``; or
``"ray://HOST:10001"``). Ray is imported only here and only for ``executor="ray"``: the local executor needs
no Ray installed.
"""
from __future__ import annotations

import importlib.util
import math
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from .config import ConfigError

EXECUTORS = ("local", "ray")
OBJECT_STORE_BYTES = 100 * 2**20  # the local instance's object store (Ray's minimum is 75 MiB): jobs return dicts
MAX_RETRIES = 3  # Ray's default for tasks: retries after a worker or node died (not after an exception)
LOOPBACK = "127.0.0.1"

# Set before a local Ray instance starts (its processes inherit them): keep every Ray process on the loopback
# address (without the first, Ray on Linux replaces 127.0.0.1 with the machine's network address), send no
# usage statistics, and let the raylet kill a dead worker's child processes (the training subprocess of a
# task whose worker crashed must not keep writing its run folder while the retry resumes it).
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper": "true",
}


def map_jobs(fn, items, *, executor: str = "local", jobs: int = 1, address: str | None = None,
             num_cpus: float = 1, num_gpus: float = 0, max_retries: int = MAX_RETRIES, on_done=None,
             on_error=None) -> list:
    """``[fn(item) for item in items]`` run by ``executor`` (see the module docstring); results in order.

    ``jobs``: jobs at a time (local), or the local Ray instance's size in jobs (it gets ``jobs * num_cpus``
    CPUs); a cluster given by ``address`` runs as many at a time as its resources allow. ``num_cpus`` and
    ``num_gpus``: each Ray task's resources. ``fn`` and the items must be picklable for Ray (cloudpickle:
    closures are fine, open files and locks are not)."""
    items = list(items)
    check_executor(executor, jobs=jobs, num_cpus=num_cpus, num_gpus=num_gpus)
    if executor == "local":
        return _map_local(fn, items, jobs=jobs, on_done=on_done, on_error=on_error)
    return _map_ray(fn, items, jobs=jobs, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                    max_retries=max_retries, on_done=on_done, on_error=on_error)


def check_executor(executor: str, *, jobs: int = 1, num_cpus: float = 1, num_gpus: float = 0,
                   address: str | None = None) -> None:
    """ConfigError (one line, what to do) for a bad executor or resource request, Ray missing for ``ray``, or
    a cluster ``address`` that cannot be reached (checked before anything starts)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if executor == "ray":
        if not num_cpus > 0:
            raise ConfigError(f"CPUs per run must be > 0 for Ray tasks, got {num_cpus}")
        if num_gpus < 0 or (num_gpus > 1 and num_gpus != int(num_gpus)):
            raise ConfigError(f"GPUs per run must be a fraction in [0, 1] or a whole number, got {num_gpus}")
        if not ray_installed():
            raise ConfigError(NO_RAY)
        if address is not None:
            _check_reachable(address)


def ray_installed() -> bool:
    """Whether Ray can be imported (found, not imported: see `import_ray`)."""
    return importlib.util.find_spec("ray") is not None


NO_RAY = ("--executor ray needs Ray: install it with `pip install -e '.[ray]'` (bash scripts/setup.sh does), "
          "or use --executor local")


def import_ray(loopback: bool = False):
    """``import ray``; ``loopback``: keep this process's Ray on 127.0.0.1. Ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it is first imported (``0``: single-machine mode, where a loopback
    address is not replaced by the machine's network address), so it is set before; when Ray was imported
    earlier without it, its flag is cleared the same way."""
    if loopback:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        raise ConfigError(NO_RAY) from None
    if loopback and getattr(ray_constants, "ENABLE_RAY_CLUSTER", False):
        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


# --- local: a thread pool, each job typically waiting on its own subprocess ---

def _call(fn, item, on_error):
    try:
        return fn(item)
    except Exception as e:  # this job's failure; the others go on
        return on_error(item, e) if on_error is not None else e


def _map_local(fn, items, *, jobs, on_done, on_error) -> list:
    def work(item):
        result = _call(fn, item, on_error)
        if on_done is not None:
            on_done(item, result)
        return result

    # On KeyboardInterrupt in this thread the map's iterator cancels the jobs not started yet, and leaving the
    # `with` waits for the running ones; then it propagates.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(work, items))


# --- ray: one task per item ---

def ray_task(fn, item):
    """The body of every Ray task: mark the environment, then ``fn(item)`` in a helper thread.

    Ray's ``ray.cancel`` raises KeyboardInterrupt in the task's main thread; the job itself (typically waiting
    on its training subprocess) runs in a helper thread so that the interrupt does not kill that subprocess:
    the main thread forwards SIGINT to this worker's child processes (the training saves a checkpoint, marks
    the run interrupted and exits) and still returns the job's result. Ray workers block SIGINT in their
    threads, and a blocked signal stays blocked across exec, so the helper thread unblocks it before the job
    starts its subprocess."""
    import signal

    import ray

    ctx = ray.get_runtime_context()
    os.environ.update(GAN_LIB_EXECUTOR="ray", GAN_LIB_NODE=socket.gethostname(),
                      GAN_LIB_RAY_NODE_ID=ctx.get_node_id())
    box: dict = {}
    done = threading.Event()

    def run():
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            box["result"] = fn(item)
        except BaseException as e:  # re-raised in the task's thread, so Ray reports it as this task's error
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name="gan_lib-job", daemon=True).start()
    while not done.is_set():
        try:
            done.wait(0.2)
        except KeyboardInterrupt:  # ray.cancel: stop the job's subprocesses cleanly, keep waiting for them
            _signal_children(signal.SIGINT)
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _signal_children(sig) -> None:
    import psutil  # a dependency of Ray

    for child in psutil.Process().children(recursive=False):
        try:
            child.send_signal(sig)
        except psutil.Error:
            pass


def _host_port(address: str) -> tuple[str, int | None]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host:
        return rest, None
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return rest, None


def _is_loopback(address: str | None) -> bool:
    return address is None or _host_port(address)[0] in (LOOPBACK, "localhost")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable cluster for minutes: fail fast, with what to do (only ``address`` is
    contacted; ``auto`` is Ray's own look-up of the cluster started on this node)."""
    host, port = _host_port(address)
    if port is None:
        if address != "auto":
            raise ConfigError(f"--address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start it with `ray start "
                          "--head --port PORT` and pass its address, or leave out --address for a local "
                          "instance") from None


def connect_ray(address: str | None = None, *, num_cpus: float | None = None):
    """Join the cluster at ``address``, or start a private local instance on 127.0.0.1 (see the module
    docstring); returns ``(ray, connected_here)``: a connection made here is closed by the caller (for the
    local instance that stops it); one that already existed is reused as it is."""
    loopback = _is_loopback(address)
    ray = import_ray(loopback=loopback)
    if ray.is_initialized():
        return ray, False
    if address is not None:
        _check_reachable(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, configure_logging=False, log_to_driver=False)
    if loopback:
        kwargs["_node_ip_address"] = LOOPBACK
    if address is None:
        os.environ.update(LOCAL_RAY_ENV)
        kwargs.update(address="local", object_store_memory=OBJECT_STORE_BYTES,
                      num_cpus=max(1, math.ceil(num_cpus or 1)))
    elif address.startswith("ray://"):  # Ray Client: the cluster's settings, none of a local node's
        kwargs = dict(address=address, log_to_driver=False)
    else:
        kwargs.pop("include_dashboard")  # the cluster's own setting
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except Exception as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        causes = f"{e} {e.__cause__ or ''}"
        if "InvalidAuthToken" in causes or "AuthenticationError" in causes:
            raise ConfigError(f"cannot connect to {where}: it uses token authentication; set RAY_AUTH_MODE=token "
                              "and give its token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)") from None
        if not isinstance(e, (ConnectionError, TimeoutError, ValueError, RuntimeError)):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot connect to {where}: {first}; start one with `ray start --head` and pass its "
                          "address, or leave out --address for a local instance") from None
    return ray, True


def _map_ray(fn, items, *, jobs, address, num_cpus, num_gpus, max_retries, on_done, on_error) -> list:
    ray, connected_here = connect_ray(address, num_cpus=jobs * num_cpus)
    try:
        _check_resources(ray, num_cpus, num_gpus, local=connected_here and address is None)
        remote = ray.remote(ray_task).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)
        fn_ref = ray.put(fn)
        refs = [remote.remote(fn_ref, item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results = [None] * len(items)

        def finish(ref):
            i = index[ref]
            try:
                result = ray.get(ref)
            except ray.exceptions.TaskCancelledError:  # cancelled before it started: no result
                return
            except ray.exceptions.RayTaskError as e:  # fn raised: the original exception
                exc = e.as_instanceof_cause() if hasattr(e, "as_instanceof_cause") else e
                result = on_error(items[i], exc) if on_error is not None else exc
            except ray.exceptions.RayError as e:  # its worker/node died more often than max_retries, ...
                result = on_error(items[i], e) if on_error is not None else e
            results[i] = result
            if on_done is not None:
                on_done(items[i], result)

        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.5)  # Ctrl-C is seen between waits
                for ref in done:
                    finish(ref)
        except KeyboardInterrupt:
            for ref in pending:  # queued: never start; running: KeyboardInterrupt in ray_task -> SIGINT
                ray.cancel(ref)
            for ref in pending:
                finish(ref)
            raise
        return results
    finally:
        if connected_here:  # the local instance stops; a cluster stays up, this driver leaves it
            shutdown_ray(ray)


def shutdown_ray(ray) -> None:
    """``ray.shutdown()``, then SIGCHLD back to its default: Ray's driver leaves it ignored at the C level, and a
    process that ignores SIGCHLD cannot read its children's exit codes (``subprocess`` then reports 0 for every
    child: a later `python -m gan_lib train` that failed would look successful)."""
    import signal
    import threading

    ray.shutdown()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _check_resources(ray, num_cpus, num_gpus, *, local: bool) -> None:
    """A task no node can ever hold would wait forever: say so (an error on the local instance; on a cluster
    that may still grow, e.g. KubeRay's autoscaler, a warning)."""
    total = ray.cluster_resources()
    short = [f"{need:g} {name} per run but the cluster has {total.get(name, 0):g}"
             for name, need in (("CPU", num_cpus), ("GPU", num_gpus)) if need > total.get(name, 0)]
    if not short:
        return
    msg = "Ray tasks cannot be scheduled: " + "; ".join(short) + " (lower --cpus-per-run / --gpus-per-run)"
    if local:
        raise ConfigError(msg)
    import warnings
    warnings.warn(msg + "; waiting for nodes to join", stacklevel=3)


def describe(executor: str, address: str | None = None) -> str:
    """A short label for logs and status files: ``local``, ``ray (local instance)`` or ``ray (ADDR)``."""
    if executor != "ray":
        return executor
    return f"ray ({address})" if address else "ray (local instance)"


__all__ = ["EXECUTORS", "map_jobs", "check_executor", "connect_ray", "ray_task", "describe"]
