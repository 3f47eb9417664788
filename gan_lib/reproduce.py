"""``python -m gan_lib reproduce``: the whole study as executed notebooks (papermill) rendered to HTML.

For each notebook of ``notebooks/`` (`study.EXPERIMENTS`, or those picked with ``only``):

1. train its runs with `study.run_all` (a progress bar over runs; finished runs are reused, so running
   ``reproduce`` again is cheap and an interrupted study resumes);
2. execute the notebook with papermill into ``<results>/<preset>/<notebook>/<notebook>.ipynb`` (the
   notebook reuses those runs and writes its figures and tables beside it);
3. render ``<notebook>.html`` beside it with nbconvert.

The notebooks get paths relative to the repository (where they lie in or beside it) and no progress bars, so a
rendered report shows neither this machine's paths nor a bar; each notebook writes its rows of
``<results>/<preset>/claims.csv``. At the end the generated blocks of ``<results>/README.md`` (the "paper vs
ours" table and the per-configuration best / final table, between their markers) are rewritten from those files
(`report.claims.update_readme`).

A notebook's runs live in ``<runs_root>/<preset>/...``, or in ``<runs_root>/<notebook>/<preset>/...`` when that
folder exists (runs kept apart, e.g. trained on another machine: `notebook_runs_root`).

A notebook that fails is recorded and the others go on; ``<results>/<preset>/reproduce_status.json`` keeps
each notebook's status (ok | failed | skipped), time, paths and message, and a summary is printed.

Dataset: with neither ``dataset`` nor ``data_root``, CelebA when `gan_lib.data.find_celeba_root` finds it,
else the built-in ``synthetic`` set with a loud warning. The MNIST notebook uses the MNIST root
(``mnist_root``, ``$GAN_LIB_MNIST``, ``./data/MNIST``, ``../shared/data/MNIST``) and is skipped, with the
reason recorded, when there is none.
"""
from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from .config import PRESETS, ConfigError, make_config
from .report.claims import update_readme
from .report.tables import repo_relative
from .study import EXPERIMENTS, experiment, threads_for

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
MNIST_NOTEBOOK = "04_mnist"
STATUS_FILE = "reproduce_status.json"


def select_notebooks(only: str | list[str] | None) -> list[str]:
    """``None`` -> all of `EXPERIMENTS`; else the notebooks named by number or by (a part of) their name:
    ``"01,03"``, ``["02"]``, ``"03_stability"``, ``"mnist"``. ConfigError for a name that matches none or several,
    and for an empty selection."""
    if only is None:
        return list(EXPERIMENTS)
    items = [s.strip() for part in ([only] if isinstance(only, str) else only) for s in str(part).split(",")]
    if not any(items):
        raise ConfigError(f"--only is empty; name notebooks by number or name, e.g. 01,03 (of {list(EXPERIMENTS)}), "
                          "or leave it out for all of them")
    chosen = []
    for item in filter(None, items):
        match = [n for n in EXPERIMENTS if n == item or (n.startswith(item.zfill(2)) if item.isdigit() else
                                                           item in n)]
        if len(match) != 1:
            raise ConfigError(f"--only {item!r} matches {len(match)} notebooks; choose from {list(EXPERIMENTS)} "
                              f"(by number, e.g. 01,03, or name)")
        chosen.append(match[0])
    return [n for n in EXPERIMENTS if n in chosen]


def folder_arg(flag: str, path: str | Path) -> Path:
    """A folder option's value as an absolute path (``~`` expanded, relative to the current folder); `ConfigError`
    when it names a file (a missing folder is fine: it is created)."""
    path = Path(path).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder: pass a folder (it is created when missing)")
    return path


def check_threads(threads: int | None) -> None:
    """`ConfigError` unless ``--threads`` is unset or >= 1."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")


def boxed(lines: list[str], width: int = 78) -> str:
    """The lines in a box of '#' (a warning that cannot be missed in a log)."""
    import textwrap

    wrapped = [w for line in lines for w in (textwrap.wrap(line, width - 4) or [""])]
    bar = "#" * width
    return "\n".join([bar, *(f"# {w:<{width - 4}} #" for w in wrapped), bar])


def choose_dataset(dataset: str | None = None, data_root: str | None = None) -> tuple[str, str | None, str | None]:
    """(dataset, data_root, warning or None) for notebooks 01-03 (see the module docstring)."""
    from .data import find_celeba_root
    from .data.celeba import HOW_TO_GET

    if dataset is None and data_root is None:
        root = find_celeba_root()
        if root is not None:
            return "celeba", str(root), None
        warning = boxed([
            "WARNING: CelebA NOT FOUND - using the built-in 'synthetic' dataset instead.",
            "",
            "The notebooks will run end to end, but their numbers say NOTHING about the paper's claims "
            "(which are about CelebA faces).",
            "",
            "To use CelebA: put img_align_celeba/ (the 202,599 JPEGs of img_align_celeba.zip) and "
            "list_eval_partition.txt in ./data/celeba/ (or ../shared/data/celeba/), or set "
            "GAN_LIB_CELEBA=/path/to/celeba, or pass --data-root PATH. " + HOW_TO_GET,
            "Then run the same command again (finished runs are reused; the CelebA runs go to their own "
            "folders).",
        ])
        return "synthetic", None, warning
    dataset = dataset or "celeba"
    if dataset == "synthetic" and data_root is not None:
        raise ConfigError("--dataset synthetic is built in and reads no folder: drop --data-root")
    if data_root is not None:
        data_root = str(Path(data_root).expanduser().resolve())
        if not Path(data_root).is_dir():
            raise ConfigError(f"--data-root {data_root} is not a folder: pass the folder that holds the {dataset} data")
    elif dataset == "folder":
        raise ConfigError("--dataset folder needs --data-root PATH (a folder of images)")
    elif dataset == "celeba":
        root = find_celeba_root()
        if root is None:
            raise ConfigError("--dataset celeba but CelebA was not found in the usual places; pass --data-root "
                              "PATH or set GAN_LIB_CELEBA. " + HOW_TO_GET)
        data_root = str(root)
    return dataset, data_root, None


def find_mnist_root(mnist_root: str | None = None) -> tuple[str | None, str]:
    """(the MNIST folder or None, a message saying where it was found or looked for)."""
    from .data.mnist import mnist_files
    from .data.paths import describe_search, find_root

    if mnist_root is not None:
        try:
            mnist_files(mnist_root)
        except FileNotFoundError as e:
            return None, str(e)
        root = Path(mnist_root).expanduser().resolve()
        return str(root), f"MNIST at {repo_relative(root)}"

    def ok(p):
        try:
            return bool(mnist_files(p))
        except FileNotFoundError:
            return False

    root = find_root("GAN_LIB_MNIST", "MNIST", ok)
    if root is None:
        return None, "MNIST not found; " + describe_search("GAN_LIB_MNIST", "MNIST", flag="--mnist-root")
    return str(root), f"MNIST at {repo_relative(root)}"


def render_html(notebook: str | Path) -> Path:
    """``<notebook>.html`` beside the executed notebook (nbconvert's HTMLExporter, images embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    html = notebook.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def _relative_papermill_paths(notebook: Path) -> None:
    """papermill records its input and output paths in the notebook's metadata as given (absolute here): store
    them relative to the repository, as the parameters are (`report.repo_relative`)."""
    import nbformat

    from .run_dir import atomic_write_text

    nb = nbformat.read(notebook, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = repo_relative(meta[key])
    atomic_write_text(notebook, nbformat.writes(nb))


def execute_notebook(name: str, parameters: dict, out_dir: Path, progress: bool = True) -> dict:
    """papermill ``notebooks/<name>.ipynb`` -> ``out_dir/<name>.ipynb`` (kernel python3, cwd the repository),
    then its HTML. Returns {status: ok | failed, notebook, html, error}; never raises for a failing cell."""
    import papermill as pm

    src, dst = NOTEBOOK_DIR / f"{name}.ipynb", out_dir / f"{name}.ipynb"
    if not src.exists():
        return dict(status="failed", notebook=None, html=None, error=f"notebook {src} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = dict(status="ok", notebook=str(dst), html=None, error=None)
    try:
        # The kernel's own log is silenced: its cell errors reach us through papermill, and on Ctrl-C it
        # would print a ZMQError traceback while being shut down mid-reply.
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name="python3", cwd=str(REPO),
                            progress_bar=progress, log_output=False,
                            extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except pm.PapermillExecutionError as e:
        result.update(status="failed", error=f"cell {e.exec_count}: {e.ename}: {e.evalue}")
    except Exception as e:  # kernel died, bad parameters, ...
        result.update(status="failed", error=f"{type(e).__name__}: {e}")
    if dst.exists():
        try:
            _relative_papermill_paths(dst)
            result["html"] = str(render_html(dst))
        except Exception as e:
            result["error"] = (result["error"] + "; " if result["error"] else "") + f"HTML: {type(e).__name__}: {e}"
            result["status"] = "failed"
    return result


def _count(outcomes: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["state"]] = counts.get(o["state"], 0) + 1
    return counts


def _save_status(path: Path, status: dict) -> None:
    from .run_dir import atomic_write_text

    status["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_text(path, json.dumps(status, indent=2) + "\n")


def notebook_runs_root(runs_root: Path, name: str, preset: str) -> Path:
    """``<runs_root>/<notebook>`` when it holds runs of ``preset`` (a notebook whose runs live apart, e.g. trained
    on another machine: notebook 02's in results/runs), else ``runs_root``. A notebook whose specs have its name
    as their subdir (05: `study.RunSpec.subdir`) always gets ``<runs_root>/<notebook>``; a ``runs_root`` that
    already is that folder is kept."""
    from .study import SPECS

    if Path(runs_root).name == name:
        return Path(runs_root)
    own = Path(runs_root) / name
    apart = name in SPECS and any(s.subdir == name for s in SPECS[name]((0,)))
    return own if apart or (own / preset).is_dir() else Path(runs_root)


def reproduce(preset: str = "cpu", *, only=None, dataset: str | None = None, data_root: str | None = None,
              mnist_root: str | None = None, jobs: int = 1, threads: int | None = None,
              runs_root: str | Path = "runs", results: str | Path = "results", steps: int | None = None,
              eval_every: int | None = None, seeds=None, progress: bool = True, train: bool = True,
              executor: str = "local", address: str | None = None, cpus_per_run: float = 1,
              gpus_per_run: float = 0, log=print) -> dict:
    """Train, execute and render the notebooks (see the module docstring); returns the status dict that is
    also written to ``<results>/<preset>/reproduce_status.json``. ``steps``, ``eval_every`` and ``seeds``
    override the preset (quick checks). ``train=False`` renders the notebooks from the runs already finished
    (nothing is trained; unfinished runs are listed and left out). ``executor="ray"`` trains each notebook's
    runs as Ray tasks (``address``, ``cpus_per_run``, ``gpus_per_run``: `study.run_all`); the notebooks then
    reuse them."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    from .executors import check_executor, describe

    check_executor(executor, jobs=jobs, num_cpus=cpus_per_run, num_gpus=gpus_per_run, address=address)
    names = select_notebooks(only)
    dataset, data_root, warning = choose_dataset(dataset, data_root)
    overrides = {k: v for k, v in dict(steps=steps, eval_every=eval_every).items() if v is not None}
    make_config(preset, dataset=dataset, data_root=data_root, **overrides)  # bad values: one error, up front
    check_threads(threads)
    threads = threads or (None if executor == "ray" else threads_for(jobs))  # Ray: OMP_NUM_THREADS = its CPUs
    runs_root, results = folder_arg("--runs-root", runs_root), folder_arg("--results", results)
    if MNIST_NOTEBOOK in names and mnist_root is not None:
        found, message = find_mnist_root(mnist_root)
        if found is None:
            raise ConfigError(f"--mnist-root: {message}")
    base = results / preset
    base.mkdir(parents=True, exist_ok=True)
    status_path = base / STATUS_FILE
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError):
        status = {}
    status.update(preset=preset, dataset=dataset, data_root=repo_relative(data_root), dataset_warning=warning,
                  runs_root=repo_relative(runs_root), jobs=jobs, threads=threads, executor=describe(executor, address))
    status.setdefault("notebooks", {})
    if warning:
        log(warning)
    log(f"reproduce: preset {preset}, dataset {dataset}" + (f" ({data_root})" if data_root else "")
        + f", notebooks {', '.join(names)}, runs in {runs_root}, results in {base}, jobs {jobs}"
        + (f", executor {describe(executor, address)}" if executor != "local" else "")
        + (f", {threads} threads per run" if threads else ""))

    for i, name in enumerate(names, 1):
        head = f"[{i}/{len(names)}] {name}"
        entry = dict(started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        t0 = time.time()
        nb_runs_root = notebook_runs_root(runs_root, name, preset)
        if nb_runs_root != runs_root:
            entry["runs_root"] = repo_relative(nb_runs_root)
            log(f"{head}: its own runs root {nb_runs_root}")
        # paths as the notebook shows them: relative to the repository where they lie in or beside it (the notebook
        # runs there); its own progress bars off (a rendered report shows none; this log has the runs' bar)
        params = dict(preset=preset, dataset=dataset, data_root=repo_relative(data_root),
                      runs_root=repo_relative(nb_runs_root), out_dir=repo_relative(base / name), jobs=jobs,
                      threads=threads, steps=steps, eval_every=eval_every, seeds=None if seeds is None else list(seeds),
                      train=train, progress=False)
        if name == MNIST_NOTEBOOK:
            root, message = find_mnist_root(mnist_root)
            if root is None:
                entry.update(status="skipped", message=f"skipped: {message}", seconds=0.0)
                status["notebooks"][name] = entry
                _save_status(status_path, status)
                log(f"{head}: SKIPPED - {message}")
                continue
            params.update(dataset="mnist", data_root=repo_relative(root))
            entry["message"] = message
        try:
            kwargs = {k: params[k] for k in ("dataset", "data_root", "steps", "eval_every", "seeds")}
            extra = dict(split="all") if name == MNIST_NOTEBOOK else {}
            exp = experiment(name, preset, **kwargs, **extra)
            log(f"{head}: " + (f"training {len(exp.specs)} runs (finished ones are reused)" if train
                               else f"collecting the finished runs of {len(exp.specs)} (train=False)"))
            outcomes = exp.run(runs_root=nb_runs_root, jobs=jobs, threads=threads, progress=progress, train=train,
                               executor=executor, address=address, cpus_per_run=cpus_per_run,
                               gpus_per_run=gpus_per_run)
            if not train and not outcomes:
                raise ConfigError(f"no finished run of {name} in {nb_runs_root}: train them first (drop --no-train) "
                                  "or pass the --runs-root that holds them")
            entry["runs"] = _count(outcomes)
            bad = [f"{o['name']}: {o['reason']}" for o in outcomes if o["state"] == "failed"]
            if bad:
                log(f"{head}: {len(bad)} run(s) failed:\n  " + "\n  ".join(bad))
            log(f"{head}: executing the notebook")
            result = execute_notebook(name, params, base / name, progress=progress)
            entry.update(result, notebook=repo_relative(result.get("notebook")), html=repo_relative(result.get("html")))
        except ConfigError as e:
            entry.update(status="failed", error=f"ConfigError: {e}")
        except KeyboardInterrupt:
            entry.update(status="interrupted", error="KeyboardInterrupt", seconds=round(time.time() - t0, 1))
            status["notebooks"][name] = entry
            _save_status(status_path, status)
            raise
        except Exception as e:  # record and go on with the next notebook
            entry.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        entry["seconds"] = round(time.time() - t0, 1)
        status["notebooks"][name] = entry
        _save_status(status_path, status)
        log(f"{head}: {entry['status'].upper()} in {entry['seconds']:.0f} s"
            + (f" - {entry['error']}" if entry.get("error") else "")
            + (f"\n  -> {entry['html']}" if entry.get("html") else ""))

    readme = results / "README.md"
    if readme.exists():
        try:
            written = update_readme(readme, base, preset)
        except Exception as e:  # the notebooks are rendered; a README that cannot be written is reported
            written, status["readme"] = [], f"failed: {type(e).__name__}: {e}"
            log(f"README: FAILED to write its generated blocks - {e}")
        else:
            status["readme"] = f"wrote {', '.join(written)}" if written else "no generated blocks for this preset"
            log(f"README: {status['readme']} ({repo_relative(readme)})")
        _save_status(status_path, status)
    log(summary(status, names))
    return status


def summary(status: dict, names: list[str] | None = None) -> str:
    """A table of the notebooks' status, time and message."""
    names = names or list(status.get("notebooks", {}))
    lines = [f"reproduce summary ({status.get('preset')}, {status.get('dataset')}):"]
    for name in names:
        e = status["notebooks"].get(name, {})
        runs = ", ".join(f"{v} {k}" for k, v in (e.get("runs") or {}).items())
        note = e.get("error") or (e.get("message") if e.get("status") == "skipped" else "") or ""
        lines.append(f"  {name:32s} {e.get('status', '?'):8s} {e.get('seconds', 0):8.0f} s"
                     + (f"  runs: {runs}" if runs else "") + (f"  {note}" if note else ""))
    if status.get("dataset_warning"):
        lines.append("  NOTE: synthetic data (CelebA not found); see the warning above.")
    return "\n".join(lines)


def exit_code(status: dict, names: list[str] | None = None) -> int:
    """1 when a notebook failed (or was interrupted), else 0 (skipped ones do not fail)."""
    names = names or list(status.get("notebooks", {}))
    return int(any(status["notebooks"].get(n, {}).get("status") in ("failed", "interrupted") for n in names))
