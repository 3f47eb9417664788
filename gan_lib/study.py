"""The study's experiments as lists of training runs, and a resumable runner for them.

Each experiment (one notebook) is a list of `RunSpec`: a configuration label, a seed, and the
`TrainConfig` overrides on top of a preset. A run lives in ``<runs_root>/<preset>/<dataset><size>/<name>``,
so runs shared between experiments (iGAN case 1 is Experiment 1's iGAN, Table 2's case 1 and the stability
baseline) are trained once and reused. `run_all` trains what is missing, each run in its own subprocess
(``python -m gan_lib train``): a failure is recorded and the others go on; completed or diverged runs are
reused; interrupted ones resume from their last checkpoint.

The notebooks use `experiment` (a notebook's specs with its parameters applied, as an `Experiment` with
``run()`` and ``configs()``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, TrainConfig, make_config

# Table 2 of the paper (C = 64): the seven (K, G, R) cases, the printed min(FID), #parameters and s/step.
# ``paper_params`` is what the paper prints; eq. (4) gives 544 for case 6 (the paper prints 644).
TABLE2 = (
    dict(case=1, K=3, G=4, R=2, paper_fid=61.51, paper_params=800, paper_sec_per_step=0.154),
    dict(case=2, K=7, G=4, R=8, paper_fid=76.00, paper_params=520, paper_sec_per_step=0.333),
    dict(case=3, K=7, G=4, R=2, paper_fid=112.85, paper_params=2080, paper_sec_per_step=0.342),
    dict(case=4, K=3, G=4, R=8, paper_fid=76.01, paper_params=200, paper_sec_per_step=0.152),
    dict(case=5, K=3, G=1, R=2, paper_fid=62.34, paper_params=2336, paper_sec_per_step=0.152),
    dict(case=6, K=1, G=4, R=2, paper_fid=68.73, paper_params=644, paper_sec_per_step=0.120),
    dict(case=7, K=5, G=4, R=2, paper_fid=63.37, paper_params=1312, paper_sec_per_step=0.230),
)

# Paper §5.3 failure modes, each against the stable baseline (iGAN case 1). The clip value is ours: the
# paper does not give one.
STABILITY = (
    ("baseline", {}),
    ("two_involutions", dict(num_blocks=2)),
    ("two_involutions_clip", dict(num_blocks=2, kernel_clip=1.0)),
    ("kernel_spectral_norm", dict(kernel_norm="spectral")),
    ("kernel_batch_norm", dict(kernel_norm="batch")),
)

EXPERIMENTS = ("01_gan_comparison", "02_involution_hyperparameters", "03_stability", "04_mnist",
               "05_long_training")
DEFAULT_SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0, 1, 2)}


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``label`` names the configuration (shared by its seeds)."""

    label: str
    seed: int
    overrides: tuple = ()  # sorted (key, value) pairs applied on top of the preset
    # A notebook whose runs live apart (`run_path`: <runs_root>/<subdir>/...): 05's long runs have 03's labels and
    # preset but other steps, and must not take over (resume) the 2,000-step runs of 01-03.
    subdir: str = ""

    @property
    def name(self) -> str:
        return f"{self.label}-s{self.seed}"

    def config(self, preset: str, **common) -> TrainConfig:
        return make_config(preset, **{**common, **dict(self.overrides), "seed": self.seed})


def igan_label(K: int, G: int, R: int) -> str:
    return f"igan-k{K}g{G}r{R}"


def _specs(configs, seeds) -> list[RunSpec]:
    return [RunSpec(label, seed, tuple(sorted(ov.items()))) for label, ov in configs for seed in seeds]


def _igan(K=3, G=4, R=2, **extra) -> dict:
    return dict(model="igan", kernel_size=K, groups=G, reduction_ratio=R, **extra)


def gan_comparison(seeds=(0, 1, 2)) -> list[RunSpec]:
    """Experiment 1 (§5.1): DCGAN, SAGAN and iGAN (Table 2 case 1)."""
    return _specs([("dcgan", dict(model="dcgan")), ("sagan", dict(model="sagan")),
                   (igan_label(3, 4, 2), _igan())], seeds)


def involution_cases(seeds=(0, 1, 2)) -> list[RunSpec]:
    """Experiment 2 (§5.2): the seven (K, G, R) cases of Table 2."""
    return _specs([(igan_label(c["K"], c["G"], c["R"]), _igan(c["K"], c["G"], c["R"])) for c in TABLE2], seeds)


def stability(seeds=(0, 1, 2)) -> list[RunSpec]:
    """§5.3: two successive involutions (with and without kernel clipping), spectral / batch norm on the kernel."""
    configs = []
    for name, extra in STABILITY:
        label = igan_label(3, 4, 2) + ("" if name == "baseline" else "-" + name.replace("_", "-"))
        configs.append((label, _igan(**extra)))
    return _specs(configs, seeds)


def mnist(seeds=(0, 1, 2)) -> list[RunSpec]:
    """Appendix: the three GANs on MNIST (1 channel); same specs as Experiment 1, another dataset."""
    return gan_comparison(seeds)


LONG_TRAINING = "05_long_training"


def long_training(seeds=(0, 1, 2)) -> list[RunSpec]:
    """Notebook 05 (issue 12): the paper's late-training claims, with runs longer than the short study (the
    schedule: `long_training_schedule`). iGAN case 1 (the baseline), two successive involutions (without and with
    clipping), Table 2's case 3 (K7 G4 R2) and batch norm on the kernel, named as in notebooks 02 and 03; their
    folders live under ``<runs_root>/05_long_training/`` (``RunSpec.subdir``)."""
    from dataclasses import replace

    keep = [igan_label(3, 4, 2) + s for s in ("", "-two-involutions", "-two-involutions-clip")]
    case3 = next(c for c in TABLE2 if c["case"] == 3)
    specs = ([s for s in stability(seeds) if s.label in keep]
             + [s for s in involution_cases(seeds) if s.label == igan_label(case3["K"], case3["G"], case3["R"])]
             + [s for s in stability(seeds) if s.label == igan_label(3, 4, 2) + "-kernel-batch-norm"])
    return [replace(s, subdir=LONG_TRAINING) for s in specs]


# The long runs' schedule: LONG_FACTOR times the short study (the cpu preset's 2,000 steps; the smoke preset's 20),
# with the paper's shape: 50 lr decays over the run whatever its length (decay every steps // 50: 160 for 8,000
# steps, as the cpu preset's 40 for 2,000 and the paper's 1,000 for 50,000), an evaluation every quarter of the
# short study (500 at cpu) so that its end (2,000) is one, a sample grid at every multiple of it (2k, 4k, 6k, 8k)
# and a checkpoint at every evaluation.
LONG_FACTOR, LR_DECAYS, SHORT_STUDY_STEPS = 4, 50, 2000


def long_training_reference_step(preset: str, steps: int | None = None, eval_every: int | None = None) -> int:
    """The step of the long runs that is the short study's end (2,000 at cpu and paper, 20 at smoke); for runs not
    longer than that (a quick check), a quarter of the run, on an evaluation step."""
    short = min(make_config(preset).steps, SHORT_STUDY_STEPS)
    steps = steps or LONG_FACTOR * short
    if short < steps:
        return short
    every = eval_every or max(1, steps // (4 * LONG_FACTOR))
    return max(every, steps // LONG_FACTOR // every * every)


def long_training_schedule(preset: str, steps: int | None = None, eval_every: int | None = None) -> dict:
    """The TrainConfig overrides of the long runs (see `LONG_FACTOR`): steps, eval_every, lr_decay_every,
    sample_every, ckpt_every; ``steps`` / ``eval_every`` given: kept, the rest follows from them."""
    short = min(make_config(preset).steps, SHORT_STUDY_STEPS)
    steps = steps or LONG_FACTOR * short
    reference = long_training_reference_step(preset, steps, eval_every)
    eval_every = eval_every or max(1, reference // 4)
    return dict(steps=steps, eval_every=eval_every, lr_decay_every=max(1, steps // LR_DECAYS),
                sample_every=reference, ckpt_every=eval_every)


SPECS = {"01_gan_comparison": gan_comparison, "02_involution_hyperparameters": involution_cases,
         "03_stability": stability, "04_mnist": mnist, LONG_TRAINING: long_training}
# Notebooks whose run length is their own (applied by `experiment` when no steps are given).
SCHEDULES = {LONG_TRAINING: long_training_schedule}


def run_path(runs_root: str | Path, preset: str, dataset: str, image_size: int, spec: RunSpec) -> Path:
    """``<runs_root>/<preset>/<dataset><size>/<name>``; a spec with a ``subdir`` lives under
    ``<runs_root>/<subdir>/`` (not added again when ``runs_root`` already is that folder)."""
    root = Path(runs_root)
    if spec.subdir and root.name != spec.subdir:
        root = root / spec.subdir
    return root / preset / f"{dataset}{image_size}" / spec.name


def stack_default(device: str = "auto") -> bool:
    """Whether a configuration's seeds train stacked (`gan_lib.stacking`) by default on ``device`` (the environment
    variable ``GAN_LIB_STACK=on|off`` overrides it, as ``reproduce --stack`` does): yes on a CUDA
    GPU, whose small-batch GAN step is bound by kernel launches (one stacked launch replaces S); no on a CPU, where
    a grouped convolution runs at 0.5-1.1x of S separate ones per layer (``benchmarks/stacked_conv.py``, 2-core
    AMD EPYC Zen 4, fp32 and bf16; in channels_last 0.9-2.2x, the gains on the smallest layers; as im2col and
    one batched matmul 0.2-0.7x) and a whole cpu-shape step of 4 stacked seeds ran at 0.85-1.01x the
    run-steps/s of one, channels_last included
    (``benchmarks/train_step.py --seeds 4 --image-size 32 --width 32``); even one model at 4x the batch gains
    only 1.09-1.21x there (``--batch-ceiling``), the most any stacked layout could."""
    from .train import resolve_device

    choice = os.environ.get("GAN_LIB_STACK", "auto")  # what `reproduce --stack` sets for its notebooks
    if choice not in ("auto", "on", "off"):
        raise ConfigError(f"GAN_LIB_STACK={choice!r}: choose auto, on or off")
    return resolve_device(device).type == "cuda" if choice == "auto" else choice == "on"


def run_one(spec: RunSpec, preset: str, path: Path, **kw) -> dict:
    """`run_group` of one run."""
    return run_group([spec], preset, [path], **kw)[0]


def run_group(specs: list[RunSpec], preset: str, paths: list[Path], *, threads: int | None = None,
              train: bool = True, data_fingerprint: dict | None = None, **common) -> list[dict]:
    """Train the seeds of one configuration (``specs`` share their label) in ONE subprocess, stacked
    (``python -m gan_lib train --config FILE --seeds a,b --out '<dir>/<label>-s{seed}'``), reusing the seeds that
    are already completed/diverged with this config; returns one outcome per spec. The config travels as a file
    (``request.json`` in the first trained seed's folder), not as ``--set`` pairs. A folder another process is
    training is left alone (state ``"busy"``). ``train=False``: unfinished runs are ``"not_trained"``.
    ``data_fingerprint``: the data the runs should train on (`gan_lib.data.data_fingerprint`); a finished run
    whose data.json names other data is not reused (state ``"failed"``, `DataMismatch`'s message)."""
    from .data.fingerprint import DataMismatch, check_same_data
    from .run_dir import RunDir
    from .train import config_differences

    outcomes: list[dict | None] = [None] * len(specs)
    todo = []
    for i, (spec, path) in enumerate(zip(specs, paths)):
        cfg = spec.config(preset, **common)
        outcome = dict(label=spec.label, seed=spec.seed, name=spec.name, path=str(path))
        run = RunDir(path)
        status = run.read_status()
        if status.get("state") in ("completed", "diverged") and status.get("steps") == cfg.steps:
            saved = run.load_config()
            if not config_differences(saved, cfg, ignore=("data_root",)):
                try:
                    if data_fingerprint is not None:
                        check_same_data(run.read_data_fingerprint(), data_fingerprint)
                except DataMismatch as e:
                    outcomes[i] = {**outcome, "state": "failed", "step": status.get("step"), "reason": str(e),
                                   "reused": False, "wall_sec": 0.0}
                    continue
                outcomes[i] = {**outcome, "state": status["state"], "step": status.get("step"),
                               "reason": status.get("reason"), "reused": True, "wall_sec": 0.0}
                continue
        if not train:
            outcomes[i] = {**outcome, "state": "not_trained", "step": status.get("step"), "reused": False,
                           "wall_sec": 0.0,
                           "reason": f"not finished ({run.effective_state(status) or 'no run folder'}); train=False"}
            continue
        try:
            holder = run.lock_holder() if path.exists() else None
        except OSError:
            holder = None
        if holder is not None:
            outcomes[i] = {**outcome, "state": "busy", "step": status.get("step"), "reused": False, "wall_sec": 0.0,
                           "reason": f"being trained by pid {holder.get('pid')} on {holder.get('host')}; left alone"}
            continue
        todo.append(i)
    if not todo:
        return outcomes
    first = paths[todo[0]]
    first.mkdir(parents=True, exist_ok=True)
    request = first / "request.json"
    specs[todo[0]].config(preset, **common).save(request)  # the one hand-off: the whole config, as a file
    seeds = ",".join(str(specs[i].seed) for i in todo)
    out = str(first.parent / f"{specs[todo[0]].label}-s{{seed}}") if len(todo) > 1 else str(first)
    cmd = [sys.executable, "-m", "gan_lib", "train", "--config", str(request), "--seeds", seeds, "--out", out,
           "--no-progress"]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.time()
    for i in todo[1:]:  # one log for the stack, in the first seed's folder
        paths[i].mkdir(parents=True, exist_ok=True)
        with open(paths[i] / "train.log", "a") as log:
            log.write(f"trained stacked with seeds {seeds}: see {first / 'train.log'}\n")
    with open(first / "train.log", "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = round(time.time() - t0, 1)
    for i in todo:
        status = RunDir(paths[i]).read_status()
        state, reason = status.get("state", "failed"), status.get("reason")
        if proc.returncode != 0 and state in ("running", "completed"):
            state = "failed"
        if state == "failed" and not reason:
            reason = f"exit code {proc.returncode}; see {first / 'train.log'}"
        outcomes[i] = dict(label=specs[i].label, seed=specs[i].seed, name=specs[i].name, path=str(paths[i]),
                           state=state, step=status.get("step"), reason=reason, reused=False, wall_sec=wall,
                           stacked=len(todo))
    return outcomes


def run_all(specs: list[RunSpec], preset: str, *, dataset: str = "celeba", data_root: str | None = None,
            runs_root: str | Path = "runs", jobs: int = 1, threads: int | None = None, progress: bool = True,
            train: bool = True, on_done=None, executor: str = "local", address: str | None = None,
            cpus_per_run: float = 1, gpus_per_run: float = 0, stack=None, **overrides) -> list[dict]:
    """Train every spec not yet done; returns one outcome dict per spec (state, step, reason, path, reused).

    ``stack``: train each configuration's seeds as one stacked model (`run_group`), one job per configuration;
    None / ``"auto"``: `stack_default` (on a GPU); False: one job per run.
    ``on_done(outcome)`` is called as each run ends (from a worker thread, or the driver with Ray).

    ``executor``: ``"local"`` (a pool of ``jobs`` threads, each waiting on its run's subprocess) or ``"ray"``
    (each run a Ray task needing ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs, on the cluster at ``address``
    or a local instance of ``jobs`` runs): `gan_lib.executors.map_jobs`. With Ray the run folders must be on
    storage every node sees (``runs_root`` is made absolute); ``train=False`` never needs Ray. A relative
    ``data_root`` is relative to the repository root (`repo_path`), wherever the caller runs.

    Ctrl-C / SIGINT: the running runs stop themselves (same process group), no queued run starts (the
    executor's map cancels the pending ones), and KeyboardInterrupt is re-raised once the running ones ended.

    ``train=False`` only collects: finished runs are returned, unfinished ones get state ``"not_trained"``
    (render the notebooks from what a long study has finished so far).

    ``overrides`` (e.g. ``steps``, ``image_size``, ``split``) apply to every run. With ``jobs > 1`` runs train
    in parallel subprocesses (give each ``threads = cores // jobs``). Progress: a bar over runs.
    """
    from tqdm.auto import tqdm

    from .executors import check_executor, map_jobs

    executor = executor if train else "local"  # collecting finished runs needs no cluster
    check_executor(executor, jobs=jobs, num_cpus=cpus_per_run, num_gpus=gpus_per_run, address=address)
    if executor == "ray":  # a worker's cwd is not ours: every path it gets is absolute
        runs_root = Path(runs_root).absolute()
    if data_root is not None:  # a relative one is relative to the repository, as the notebooks give it (whatever
        data_root = str(repo_path(data_root).absolute())  # folder the runs are started from: `reproduce`'s caller's)
    common = dict(dataset=dataset, data_root=data_root, **overrides)
    cfg0 = make_config(preset, **common)  # validate once, before anything starts
    fingerprint = None
    if train:  # decode the dataset once (into the gan_lib cache) before the runs read it; its fingerprint
        from .data.fingerprint import data_fingerprint  # keeps runs trained on other data from being reused
        from .train import load_data
        fingerprint = data_fingerprint(load_data(cfg0, progress=progress))
    paths = [run_path(runs_root, preset, dataset, cfg0.image_size, s) for s in specs]
    bar = tqdm(total=len(specs), desc=f"runs ({preset}, {dataset})", unit="run", disable=not progress)
    outcomes: list[dict | None] = [None] * len(specs)

    if stack is None or stack == "auto":  # Ray tasks given GPUs train on GPUs, whatever the driver has
        stack = stack_default(cfg0.device) or (executor == "ray" and gpus_per_run > 0
                                               and os.environ.get("GAN_LIB_STACK", "auto") == "auto")
    groups: dict = {}  # a job: one run, or with stacking the seeds of one configuration
    for i, spec in enumerate(specs):
        groups.setdefault(spec.label if stack else i, []).append(i)
    jobs_list = list(groups.values())

    def failed(g, e):
        return [dict(label=specs[i].label, seed=specs[i].seed, name=specs[i].name, path=str(paths[i]),
                     state="failed", step=None, reason=f"{type(e).__name__}: {e}", reused=False, wall_sec=0.0)
                for i in g]

    def work(g):  # runs where the executor puts the job (a thread here, or a Ray worker): no driver state
        try:
            kw = dict(threads=threads, train=train, data_fingerprint=fingerprint, **common)
            if len(g) == 1:  # (one spec: also what tests replace)
                return [run_one(specs[g[0]], preset, paths[g[0]], **kw)]
            return run_group([specs[i] for i in g], preset, [paths[i] for i in g], **kw)
        except (ConfigError, OSError, ValueError) as e:
            return failed(g, e)

    def done(g, outs):  # in this process, as each job ends
        for i, out in zip(g, outs):
            outcomes[i] = out
            if on_done is not None:
                on_done(out)
            bar.set_postfix_str(f"{out['name']}: {out['state']}" + (" (reused)" if out["reused"] else ""))
            bar.update(1)

    try:
        map_jobs(work, jobs_list, executor=executor, jobs=jobs, address=address, num_cpus=cpus_per_run,
                 num_gpus=gpus_per_run, on_done=done, on_error=failed)
    finally:
        bar.close()
    return outcomes


# --- the notebooks' entry point (added for the papermill study; the definitions above are unchanged) ---

REPO = Path(__file__).resolve().parents[1]


def repo_path(path: str | Path) -> Path:
    """``path`` if absolute, else relative to the repository root (where papermill runs the notebooks), so a
    notebook opened from ``notebooks/`` finds the same ``runs/`` and ``results/``."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO / path


def cpu_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_for(jobs: int, cores: int | None = None) -> int | None:
    """Torch threads per run: ``max(1, cores // jobs)`` when runs train in parallel, else None (torch's default)."""
    if jobs <= 1:
        return None
    return max(1, (cores or cpu_cores()) // jobs)


# What §5.3 reports for each stability configuration (label -> claim), for the notebooks' comparison.
STABILITY_CLAIMS = {
    igan_label(3, 4, 2): "stable (the baseline, Table 2 case 1)",
    igan_label(3, 4, 2) + "-two-involutions": "diverges: the gradient penalty keeps increasing",
    igan_label(3, 4, 2) + "-two-involutions-clip": "diverges too: clipping in the involution does not help",
    igan_label(3, 4, 2) + "-kernel-spectral-norm": "model collapse or instability",
    igan_label(3, 4, 2) + "-kernel-batch-norm": "model collapse or instability",
}


@dataclass
class Experiment:
    """One notebook's runs: its specs, the preset and the settings common to every run."""

    name: str
    preset: str
    specs: list
    common: dict  # dataset, data_root and the TrainConfig overrides applied to every run

    def run(self, runs_root: str | Path = "runs", jobs: int = 1, threads: int | None = None,
            progress: bool = True, train: bool = True, executor: str = "local", address: str | None = None,
            cpus_per_run: float = 1, gpus_per_run: float = 0, stack=None) -> list[dict]:
        """`run_all` over the specs: trains what is missing, reuses what is done; one outcome per spec.
        ``stack``: seeds of a configuration as one stacked model (None: `stack_default`).
        A relative ``runs_root`` is relative to the repository root (`repo_path`); ``threads`` None with
        ``jobs > 1``: `threads_for(jobs)` (with Ray: ``cpus_per_run``, Ray's OMP_NUM_THREADS). ``executor``,
        ``address``, ``cpus_per_run``, ``gpus_per_run``: see `run_all`. ``train=False``: only the finished runs
        (the others are listed)."""
        if executor != "ray":
            threads = threads or threads_for(jobs)
        outcomes = run_all(self.specs, self.preset, runs_root=repo_path(runs_root), jobs=jobs, threads=threads,
                           progress=progress, train=train, executor=executor, address=address,
                           cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run, stack=stack, **self.common)
        missing = [o["name"] for o in outcomes if o["state"] == "not_trained"]
        if missing:
            print(f"train=False: {len(missing)} of {len(outcomes)} runs not finished yet, left out: "
                  + ", ".join(missing))
        return [o for o in outcomes if o["state"] != "not_trained"]

    def configs(self) -> dict[str, TrainConfig]:
        """{label: TrainConfig} of each configuration (its first seed)."""
        out = {}
        for s in self.specs:
            out.setdefault(s.label, s.config(self.preset, **self.common))
        return out

    @property
    def seeds(self) -> tuple:
        return tuple(dict.fromkeys(s.seed for s in self.specs))

    def describe(self) -> str:
        cfg = next(iter(self.configs().values()))
        labels = list(self.configs())
        return (f"{self.name}: {len(labels)} configurations x {len(self.seeds)} seeds {list(self.seeds)} = "
                f"{len(self.specs)} runs ({self.preset} preset: {cfg.dataset} {cfg.image_size}px, width "
                f"{cfg.width}, batch {cfg.batch_size}, {cfg.steps} steps, {cfg.precision}, evaluated every "
                f"{cfg.eval_every} steps on {', '.join(cfg.metrics)})\n  configurations: {', '.join(labels)}")


def experiment(name: str, preset: str = "smoke", *, dataset: str = "celeba", data_root: str | None = None,
               seeds=None, image_size: int | None = None, steps: int | None = None, eval_every: int | None = None,
               device: str | None = None, precision: str | None = None, **extra) -> Experiment:
    """The `Experiment` of notebook ``name`` (a key of `SPECS`), with the notebook's parameters: ``seeds``
    None -> `DEFAULT_SEEDS[preset]`; ``image_size``, ``steps``, ``eval_every``, ``device``, ``precision`` and
    ``extra`` (e.g. ``split="all"``) override the preset when not None. The config is validated here."""
    if name not in SPECS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {list(SPECS)}")
    if preset not in DEFAULT_SEEDS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {list(DEFAULT_SEEDS)}")
    seeds = tuple(DEFAULT_SEEDS[preset] if seeds is None else ([seeds] if isinstance(seeds, int) else seeds))
    overrides = dict(image_size=image_size, steps=steps, eval_every=eval_every, device=device, precision=precision,
                     **extra)
    if name in SCHEDULES:  # its own run length (05's long runs); what is given explicitly wins
        overrides = {**SCHEDULES[name](preset, steps, eval_every),
                     **{k: v for k, v in overrides.items() if v is not None}}
    common = dict(dataset=dataset, data_root=None if data_root is None else str(data_root),
                  **{k: v for k, v in overrides.items() if v is not None})
    make_config(preset, **common)  # a bad value fails here, before any run starts
    return Experiment(name, preset, SPECS[name](seeds), common)
