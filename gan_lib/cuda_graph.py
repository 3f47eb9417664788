"""The whole WGAN-GP training step (`gan_lib.train.train_step`) captured in ONE CUDA graph and replayed.

Why: at the paper's shape on an H200 an iGAN step (batch 64, 64x64, width 64) takes 0.036 s in fp32, ~14% of the
GPU's matmul speed: the step is bound by launching its few thousand small kernels from Python. A replay submits
all of them with one ``cudaGraphLaunch``. `GraphedStep` is the lever ``benchmarks/train_step.py --cuda-graph``
measures; the training loop (`gan_lib.train._train`) does not use it.

Followed: PyTorch's "CUDA Graphs" notes (https://docs.pytorch.org/docs/stable/notes/cuda.html#cuda-graphs, in the
source docs/source/notes/cuda.md; section "Whole-network capture": warm-up
iterations on a side stream, grads set to None before capture so backward allocates them from the graph's
private pool, forward + backward + ``optimizer.step()`` captured together; section "Constraints": no CPU-GPU
sync, static shapes and control flow, non-default ``torch.Generator`` objects registered with
``CUDAGraph.register_generator_state`` before capture), the ``capturable`` flag of ``torch.optim.Adam`` (its
step counts on the device, its update computed without reading them on the host) with a tensor ``lr`` (read
by the kernels at each replay), and ``torch.cuda.graph(..., stream=s)`` with the warm-up on that same stream
``s`` (per-stream library handles and workspaces are then created before capture, not in it).

What one replay runs: everything `train_step` runs, ``cfg.n_critic`` critic steps (z and eps drawn from each
seed's generator, G without a graph, D on real / fake / interpolated batches, the gradient penalty's double
backward, ``opt_d.step()``) and the generator step (``opt_g.step()``), BatchNorm running statistics and
spectral-norm power iterations included, and the (S, 4) stats. Each replay draws fresh z / eps: the graph
advances each registered generator's offset by what the captured draws consumed, so a graphed run draws the same
numbers as an eager one from the same generator states.

What must stay static between capture and replays (else: a new `GraphedStep`):
  * the real batches' shape, dtype and layout (copied into static buffers, one per critic step), the batch size,
    ``cfg.n_critic``, the number of stacked seeds and everything else in ``cfg`` the step reads;
  * the module, parameter, buffer and optimizer-state tensors: modules and optimizers must not be rebuilt
    (`TrainState.drop` / `load_seed_state_dicts` rebuild them) and ``optimizer.load_state_dict`` must not be
    called (it replaces the state tensors); ``module.load_state_dict`` is fine (it copies in place);
  * the optimizers' hyper-parameters except the learning rate (betas and eps are baked into the kernels);
    the lr is a 0-dim device tensor, so an ``lr_scheduler`` (which fills a tensor lr in place) changes
    it between replays without a new capture. It is float32 (the capturable Adam's dtype), so a schedule's
    products are rounded to float32 (relative 1e-7) where an eager run keeps Python floats;
  * the autocast precision and the device.

The returned stats are a copy of the graph's static (S, 4) output (``clone_stats=False``: the static tensor
itself, overwritten by the next replay). Neither a warm-up step nor a replay syncs the host with the GPU (the
capture does, once: ``torch.cuda.graph`` synchronizes before it starts).

Fallback: on a device that is not CUDA, with an optimizer without a ``capturable`` mode, or when the capture
raises, `GraphedStep` warns once (one line: why) and every step is the eager ``train_step``. On the CPU that is
exactly ``train_step`` (bitwise; nothing is converted). A failed capture leaves the training state as it was
before the capture: the modules' and optimizers' state dicts are restored from copies taken right before it (a
capture records kernels without running them, so they should be untouched anyway; the copies guard against a
capture that failed half-way), each noise generator gets its pre-capture state back in a fresh state object (a
capture that fails before its end can leave the old one in capture mode, where any later draw raises), and the
optimizers get their own settings back (``capturable``, a float lr, step counts on the host). The warm-up steps
before the capture stand (they were real eager steps); the step that tried the capture runs eagerly on the
batches it was given.
"""
from __future__ import annotations

import copy
import warnings

import torch

from .train import SeedNoise, train_step

__all__ = ["GraphedStep"]

_CAPTURABLE_WARNING = r"This instance was constructed with capturable=True"


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text[:limit]}"


def _reason(error: BaseException) -> str:
    """One line: the first error of the chain (e.g. a sync inside the capture), then the last one (e.g. the
    capture_end that found the capture invalidated)."""
    first, seen = error, {id(error)}
    while first.__context__ is not None and id(first.__context__) not in seen:
        first = first.__context__
        seen.add(id(first))
    return _one_line(first) if first is error else f"{_one_line(first)}; then {_one_line(error, 120)}"


def _snapshot(modules, optimizers, generators) -> dict:
    """Copies of the modules' and optimizers' state dicts and of the generators' states (see `_restore`)."""
    return {"modules": [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules],
            "optimizers": [copy.deepcopy(opt.state_dict()) for opt in optimizers],
            "generators": [g.get_state() for g in generators]}


def _restore(snapshot: dict, modules, optimizers, generators) -> None:
    """Back to `_snapshot`'s copies: modules in place (the parameter tensors keep their identity, so the
    optimizers still hold them), optimizers through ``load_state_dict``, CUDA generators in fresh state objects
    (``graphsafe_set_state``: the ``Generator`` objects the caller holds stay the same)."""
    for m, state in zip(modules, snapshot["modules"]):
        m.load_state_dict(state)
    for opt, state in zip(optimizers, snapshot["optimizers"]):
        opt.load_state_dict(state)
    for g, state in zip(generators, snapshot["generators"]):
        if g.device.type == "cuda":
            fresh = torch.Generator(g.device)
            fresh.set_state(state)
            g.graphsafe_set_state(fresh)
        else:
            g.set_state(state)


class _Capturable:
    """An optimizer switched to ``capturable=True`` with a 0-dim device tensor lr and its step counts on the
    parameters' device; `undo` gives its param groups their own settings back (a float lr: the original float
    itself while the tensor still holds it, else the tensor's value)."""

    def __init__(self, opt: torch.optim.Optimizer, device: torch.device):
        self.opt, self.saved = opt, []
        for group in opt.param_groups:
            saved = {"capturable": group["capturable"], "lr": group["lr"], "lr_tensor": None}
            if not group["capturable"]:
                group["capturable"] = True
                for p in group["params"]:
                    state = opt.state.get(p, {})
                    if torch.is_tensor(state.get("step")):
                        state["step"] = state["step"].to(p.device)
            if not torch.is_tensor(group["lr"]):
                lr = float(group["lr"])
                saved["lr_tensor"] = float(torch.tensor(lr))  # its value as the tensor holds it (host-side)
                group["lr"] = torch.tensor(lr, device=device)
            self.saved.append(saved)

    def undo(self) -> None:
        for group, saved in zip(self.opt.param_groups, self.saved):
            if saved["lr_tensor"] is not None and torch.is_tensor(group["lr"]):
                now = float(group["lr"])  # (one host sync, once)
                group["lr"] = saved["lr"] if now == saved["lr_tensor"] else now
            if not saved["capturable"]:
                group["capturable"] = False
                for p in group["params"]:
                    state = self.opt.state.get(p, {})
                    if torch.is_tensor(state.get("step")):
                        state["step"] = state["step"].cpu()


class GraphedStep:
    """`train_step(G, D, opt_g, opt_d, next_batch, noise, cfg, amp)` as a CUDA graph: ``step(next_batch)``.

    The first ``warmup`` calls are eager steps on a side stream (real training steps: they count); the next call
    captures the step into a graph and replays it once; every later call copies ``cfg.n_critic`` batches from
    ``next_batch()`` into the static input buffers and replays. ``noise`` is a `SeedNoise` (or one
    ``torch.Generator``); its generators are registered with the graph. The optimizers are switched to
    ``capturable=True`` with a tensor lr for the graph's lifetime (`close` switches them back).

    ``graphed`` says whether a graph is in use, ``fallback_reason`` why not (None while warming up or graphed);
    ``steps`` counts the steps taken. ``capture_error_mode`` goes to ``torch.cuda.graph`` (the docs' default
    "global": any capture-unsafe CUDA call from any thread fails the capture; "thread_local" only from this one).
    See the module docstring for what must stay static and for the fallback.
    """

    def __init__(self, G, D, opt_g, opt_d, noise, cfg, amp, *, warmup: int = 3, clone_stats: bool = True,
                 capture_error_mode: str = "global"):
        if warmup < 1:
            raise ValueError("warmup must be >= 1: the optimizers' states must exist before the capture")
        self.G, self.D, self.opt_g, self.opt_d, self.cfg, self.amp = G, D, opt_g, opt_d, cfg, amp
        self.device = next(D.parameters()).device
        noise = SeedNoise.of(noise, cfg.z_dim, next(D.parameters()).dtype)
        self.noise, self.warmup, self.clone_stats = noise, warmup, clone_stats
        self.capture_error_mode = capture_error_mode
        self.steps, self.graph, self.fallback_reason = 0, None, None
        self._inputs, self._stats, self._capturable, self._stream = None, None, [], None
        if self.device.type != "cuda":
            self._fall_back(f"device {self.device.type}: CUDA graphs need a CUDA device")
            return
        for opt in (opt_g, opt_d):
            if not all("capturable" in group for group in opt.param_groups):
                self._fall_back(f"{type(opt).__name__} has no capturable mode")
                return
        self._capturable = [_Capturable(opt, self.device) for opt in (opt_g, opt_d)]
        self._stream = torch.cuda.Stream(device=self.device)

    @property
    def graphed(self) -> bool:
        return self.graph is not None

    def step(self, next_batch) -> torch.Tensor:
        """One training step; returns the (S, 4) stats ``[loss_d, loss_g, gp, emd]`` (see `train_step`)."""
        self.steps += 1
        if self.graph is not None:
            self._fill(next_batch)
            return self._replay()
        if self.fallback_reason is not None:
            return self._eager(next_batch)
        if self._inputs is None:
            batches = [next_batch() for _ in range(self.cfg.n_critic)]
            self._inputs = [torch.empty_like(b, device=self.device) for b in batches]
            self._fill(iter(batches).__next__)
        else:
            self._fill(next_batch)
        if self.steps <= self.warmup:
            return self._warmup_step()
        if self._capture():
            return self._replay()
        return self._eager(iter(self._inputs).__next__)  # the batches this step was given

    def close(self) -> None:
        """Drop the graph and give the optimizers their own settings back; later steps are eager."""
        self.graph, self._stats = None, None
        for c in self._capturable:
            c.undo()
        self._capturable = []
        if self.fallback_reason is None:
            self.fallback_reason = "closed"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- internals ---

    def _eager(self, next_batch) -> torch.Tensor:
        return train_step(self.G, self.D, self.opt_g, self.opt_d, next_batch, self.noise, self.cfg, self.amp)

    def _fill(self, next_batch) -> None:
        for buf in self._inputs:
            x = next_batch()
            if x.shape != buf.shape or x.dtype != buf.dtype:
                raise ValueError(f"a CUDA graph needs static inputs: batch {tuple(x.shape)} {x.dtype}, captured "
                                 f"with {tuple(buf.shape)} {buf.dtype}")
            buf.copy_(x, non_blocking=True)

    def _replay(self) -> torch.Tensor:
        self.graph.replay()
        return self._stats.clone() if self.clone_stats else self._stats

    def _warmup_step(self) -> torch.Tensor:
        s, current = self._stream, torch.cuda.current_stream(self.device)
        s.wait_stream(current)
        with torch.cuda.stream(s), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CAPTURABLE_WARNING)  # (uncaptured steps of capturable Adam)
            stats = self._eager(iter(self._inputs).__next__)
        current.wait_stream(s)
        stats.record_stream(current)  # the caller reads it on its own stream
        return stats

    def _capture(self) -> bool:
        modules, optimizers = (self.G, self.D), (self.opt_g, self.opt_d)
        snapshot = _snapshot(modules, optimizers, self.noise.generators)
        for opt in optimizers:  # backward then allocates the grads from the graph's private pool
            opt.zero_grad(set_to_none=True)
        graph, error = torch.cuda.CUDAGraph(), None
        try:
            for g in self.noise.generators:
                graph.register_generator_state(g)
            inputs = iter(self._inputs)
            # the outer stream context gives the caller's stream back even when graph.__exit__ fails in
            # capture_end (it then skips its own stream restore)
            with torch.cuda.stream(self._stream):
                with torch.cuda.graph(graph, stream=self._stream, capture_error_mode=self.capture_error_mode):
                    stats = self._eager(inputs.__next__)
        except Exception as e:  # noqa: BLE001 - any failure: eager from here on
            error = _reason(e)
        if error is not None:
            with warnings.catch_warnings():  # (the failed graph's clean-up may warn: the reason line says it all)
                warnings.simplefilter("ignore")
                del graph
                try:
                    torch.cuda.synchronize(self.device)
                except Exception:  # noqa: BLE001 - an error the capture left behind is raised (and cleared) here
                    pass
            _restore(snapshot, modules, optimizers, self.noise.generators)
            for c in self._capturable:
                c.undo()
            self._capturable = []
            self._fall_back(f"capture failed: {error}")
            return False
        self.graph, self._stats = graph, stats
        return True

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        warnings.warn(f"CUDA graph not used ({reason}); train_step runs eagerly", stacklevel=3)
