"""Training configuration: one plain dataclass with the paper's Table 1 defaults, and three presets.

Choices the paper leaves open (documented here, overridable with ``--set key=value``):

* ``n_critic = 1``: Table 1 is the SAGAN/TTUR recipe (Adam betas (0, 0.9), lr 1e-4 for G and 4e-4 for D).
  TTUR (Heusel et al. 2017) and SAGAN (Zhang et al. 2019) use the faster critic learning rate *instead of*
  several critic steps per generator step, and the authors' code also takes one critic step. WGAN-GP's
  original 5 is one ``--set n_critic=5`` away.
* ``lr_decay = 0.95`` every ``lr_decay_every = 1000`` steps (an exponential step schedule applied to both
  learning rates): 50 decays over the 50,000 steps, ending at 0.95**50 = 7.7% of the initial rates, which is
  the "loss keeps slowly descending due to the decay of learning rate" of Fig. 4. The reduced ``cpu``
  preset keeps the same shape (decay every steps / 50); change ``lr_decay_every`` with ``steps`` to keep it.
* Divergence (paper §5.3, "the gradient penalty keeps increasing"): a run stops as ``diverged`` when a loss
  is NaN/inf, or when the gradient penalty (before lambda) stays above ``gp_explode_threshold`` for
  ``gp_explode_window`` consecutive steps. A healthy WGAN-GP critic keeps it well below 1.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError


class ConfigError(UserError, ValueError):
    """A bad preset, key or value; the CLI prints it without a traceback and exits with code 2."""


CHOICES = {
    "model": ("dcgan", "sagan", "igan"),
    "kernel_norm": ("none", "spectral", "batch"),
    "critic_sigma_norm": ("batch", "layer", "none"),
    "precision": ("fp32", "bf16", "auto", "fp64"),
    "device": ("auto", "cpu", "cuda"),
    "image_size": (32, 64),
}

# The fewest generated images an evaluation may use. KID's unbiased MMD and FID's covariance need at least 2;
# with fewer than 16 images (16 x 128 SWD patches per level) every metric is mostly sampling noise.
MIN_EVAL_SAMPLES = 16

# Fields that may change when a run is resumed (everything else must match the run's config.json).
RESUMABLE_FIELDS = ("steps", "log_every", "eval_every", "sample_every", "ckpt_every", "device", "compile",
                    "data_root")


@dataclass
class TrainConfig:
    # --- model (paper §4.2; involution hyper-parameters of Table 2, case 1 by default) ---
    model: str = "igan"                 # dcgan | sagan | igan
    image_size: int = 64
    width: int = 64                     # channels of the widest-resolution layer (the attention/involution layer)
    num_blocks: int = 1                 # 2: conv-inv-conv-inv-conv variant of §5.3
    kernel_size: int = 3
    groups: int = 4
    reduction_ratio: int = 2
    kernel_norm: str = "none"           # normalisation of the involution kernel: none | spectral | batch (§5.3)
    kernel_clip: float | None = None    # clip of the involution kernel (§5.3); None = off
    critic_sigma_norm: str = "batch"    # norm inside the critic's involution sigma (eq. 1): batch | layer | none
    # --- data (§4.1) ---
    dataset: str = "celeba"
    data_root: str | None = None
    split: str = "train"
    max_images: int | None = None
    # --- optimisation (Table 1) ---
    batch_size: int = 64
    steps: int = 50_000                 # generator steps
    z_dim: int = 128
    gp_lambda: float = 10.0
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    lr_decay: float = 0.95
    lr_decay_every: int = 1000          # paper silent; see module docstring
    n_critic: int = 1                   # paper silent; see module docstring
    # --- execution ---
    seed: int = 0
    device: str = "auto"                # auto = cuda when available, else cpu
    precision: str = "fp32"             # fp32 | bf16 (autocast) | auto (bf16 where native: AMX/AVX512-BF16, CUDA) | fp64 (exactness tests)
    channels_last: bool = False
    compile: bool = False               # torch.compile the generator (the critic needs double backward)
    deterministic: bool = False         # deterministic algorithms; CPU runs are then bitwise reproducible
    # --- intervals (in generator steps) ---
    log_every: int = 10                 # every step gets a metrics.csv row; rows are written/checked this often
    eval_every: int = 2500
    sample_every: int = 1000
    ckpt_every: int = 1000
    # --- evaluation ---
    metrics: tuple[str, ...] = ("fid", "kid", "swd")
    eval_num_samples: int = 10_000
    best_metric: str = "fid"            # lower is better; checkpoints/best.pt follows it
    # --- divergence ---
    gp_explode_threshold: float = 100.0
    gp_explode_window: int = 500

    def __post_init__(self):
        self.validate()

    def validate(self) -> "TrainConfig":
        self._check_types()
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}={getattr(self, key)!r} is not valid; choose one of {list(allowed)}")
        for key in ("width", "batch_size", "z_dim", "lr_decay_every", "n_critic", "log_every", "eval_every",
                    "sample_every", "ckpt_every", "eval_num_samples", "gp_explode_window", "num_blocks",
                    "kernel_size", "groups", "reduction_ratio"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        try:
            from .data import DATASETS
        except ImportError:  # the data module is optional for building configs
            DATASETS = None
        if DATASETS is not None and self.dataset not in DATASETS:
            raise ConfigError(f"dataset={self.dataset!r} is not valid; choose one of {list(DATASETS)}")
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if isinstance(self.metrics, str):
            self.metrics = tuple(m for m in self.metrics.split(",") if m)
        self.metrics = tuple(self.metrics)
        self._check_values()
        self._check_model()
        check_metric_names(self.metrics, "metrics")
        self._check_best_metric()
        return self

    def _check_types(self) -> None:
        """Each field holds its declared type (a config.json or --config file can hold anything): int (not bool),
        float (or int), bool, str, ``X | None``, a tuple of str (a list or a comma-separated string too)."""
        def fits(value, tp) -> bool:
            origin, args = typing.get_origin(tp), typing.get_args(tp)
            if origin in (typing.Union, types.UnionType):
                return any(fits(value, a) for a in args)
            if tp is type(None):
                return value is None
            if origin is tuple:
                return isinstance(value, str) or (isinstance(value, (tuple, list))
                                                  and all(fits(v, args[0]) for v in value))
            if tp is float:
                return isinstance(value, (int, float)) and not isinstance(value, bool)
            if tp is int:
                return isinstance(value, int) and not isinstance(value, bool)
            return isinstance(value, tp)

        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        for key, tp in typing.get_type_hints(type(self)).items():
            value = getattr(self, key)
            if not fits(value, tp):
                args = [a for a in typing.get_args(tp) if a is not type(None)]
                what = (names.get(args[0], str(args[0])) + " or null" if typing.get_origin(tp) in
                        (typing.Union, types.UnionType) else "a list of names" if typing.get_origin(tp) is tuple
                        else names.get(tp, str(tp)))
                raise ConfigError(f"{key} must be {what}, got {value!r}")
        if not -(2 ** 63) <= self.seed < 2 ** 64 - 4:  # torch's seed range; a run uses seed .. seed + 3
            raise ConfigError(f"seed must be an integer in [-2**63, 2**64 - 4), got {self.seed}")

    def _check_values(self) -> None:
        """Numeric ranges (a value out of range would train nonsense or fail later)."""
        for key in ("gp_lambda", "lr_g", "lr_d", "lr_decay", "beta1", "beta2", "gp_explode_threshold"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ConfigError(f"{key} must be a number, got {value!r}")
        checks = [
            ("gp_lambda", math.isfinite(self.gp_lambda) and self.gp_lambda >= 0, "a finite number >= 0"),
            ("lr_g", math.isfinite(self.lr_g) and self.lr_g > 0, "a finite number > 0"),
            ("lr_d", math.isfinite(self.lr_d) and self.lr_d > 0, "a finite number > 0"),
            ("lr_decay", 0 < self.lr_decay <= 1, "in (0, 1] (1 = no decay)"),
            ("beta1", 0 <= self.beta1 < 1, "in [0, 1)"),
            ("beta2", 0 <= self.beta2 < 1, "in [0, 1)"),
            ("gp_explode_threshold", self.gp_explode_threshold > 0, "> 0"),
            ("eval_num_samples", self.eval_num_samples >= MIN_EVAL_SAMPLES,
             f">= {MIN_EVAL_SAMPLES} (fewer images make every metric noise)"),
        ]
        if self.kernel_clip is not None:
            clip = self.kernel_clip
            ok = not isinstance(clip, bool) and isinstance(clip, (int, float)) and math.isfinite(clip) and clip > 0
            checks.append(("kernel_clip", ok, "none or a finite number > 0"))
        if self.max_images is not None:
            checks.append(("max_images", self.max_images >= self.batch_size,
                           f"none or >= batch_size ({self.batch_size}): a batch needs that many images"))
        for key, ok, what in checks:
            if not ok:
                raise ConfigError(f"{key} must be {what}, got {getattr(self, key)!r}")

    def _check_model(self) -> None:
        """The network shapes the model needs (gan_lib.networks): block channels are width * 2**i."""
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (the involution window is centred on its pixel), got "
                              f"{self.kernel_size}; use 1, 3, 5 or 7")
        most = (self.image_size.bit_length() - 3) - 1  # stride-2 stages minus the output layer
        if self.num_blocks > most:
            raise ConfigError(f"num_blocks must be at most {most} for image_size {self.image_size}, got "
                              f"{self.num_blocks}")
        for channels in (self.width * 2 ** i for i in range(self.num_blocks)):
            if self.model == "igan":
                for key in ("groups", "reduction_ratio"):
                    if channels % getattr(self, key):
                        raise ConfigError(f"{key}={getattr(self, key)} must divide the channels of the involution "
                                          f"layer ({channels}, from width={self.width}); choose a divisor of "
                                          f"{channels} or another width")
            if self.model == "sagan" and channels % 8:
                raise ConfigError(f"sagan needs width * 2**i divisible by 8 (its query/key channels are 1/8 of "
                                  f"{channels}); got width={self.width}")

    def _check_best_metric(self) -> None:
        if not self.metrics:
            return
        name = self.best_metric
        levels = {f"swd_{2 ** k}" for k in range(4, self.image_size.bit_length())}  # SWD's levels: 16 .. image_size
        if (not any(m == name or m.startswith(name + "_") or name.startswith(m + "_") for m in self.metrics)
                or (name.startswith("swd_") and name not in levels)):
            raise ConfigError(f"best_metric={name!r} is not one of the evaluated metrics {list(self.metrics)} (or "
                              f"one of their parts, e.g. swd_32); checkpoints/best.pt follows it")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a JSON object of key: value pairs, got a {type(d).__name__}")
        unknown = sorted(set(d) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys: {field_names()}")
        d = dict(d)
        if isinstance(d.get("metrics"), list):
            d["metrics"] = tuple(d["metrics"])
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def check_metric_names(names, what: str = "metrics") -> None:
    """`ConfigError` for a name that is not in the metrics registry (`gan_lib.metrics.METRICS`), with the
    closest valid name."""
    from .metrics.evaluate import METRICS

    for name in names:
        if name not in METRICS:
            close = difflib.get_close_matches(str(name), list(METRICS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown metric {name!r} in {what}{hint}; choose from {sorted(METRICS)}")


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


# Presets are overrides of the Table 1 defaults.
PRESETS: dict[str, dict] = {
    # Table 1 exactly, 64x64, width 64 (a GPU job: ~50k steps).
    "paper": {},
    # A reduced study for a 2-core CPU: 32x32 images, width 32 (the attention/involution layer has C=32),
    # batch 64 and Table 1's optimiser, 2,000 steps (lr decay every 40 keeps the paper's 50 decays),
    # precision auto (bf16 where the CPU has AMX / AVX512-BF16, else fp32: emulated bf16 is 11x slower).
    # iGAN on 2 cores: ~0.13 s/step on an AMX Xeon (bf16; the 48-run study ~4 h with 2 runs in parallel),
    # ~0.23 s/step on an AVX2-only EPYC (fp32; with 2 runs in parallel, 1 thread each, ~0.4 s/step per run).
    # Evaluated every 250 steps on 2,000 samples with SWD and KID (no Inception weights needed); sample grids
    # every 500 steps (the run records in results/runs are committed, so they stay small).
    "cpu": dict(image_size=32, width=32, steps=2000, lr_decay_every=40, precision="auto",
                log_every=10, eval_every=250, sample_every=500, ckpt_every=250,
                metrics=("swd", "kid"), eval_num_samples=2000, best_metric="swd",
                gp_explode_window=100),
    # Seconds: plumbing checks only.
    "smoke": dict(image_size=32, width=8, batch_size=16, steps=20, lr_decay_every=5, max_images=256,
                  log_every=1, eval_every=10, sample_every=10, ckpt_every=10,
                  metrics=("swd",), eval_num_samples=64, best_metric="swd", gp_explode_window=10),
}


def _convert(key: str, text: str, tp):
    """Convert a ``--set`` string to the field type ``tp`` (int, float, bool, str, optional, tuple)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", ""):
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(key, text, inner[0])
    if origin is tuple:
        return tuple(_convert(key, t.strip(), args[0]) for t in text.split(",") if t.strip())
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} expects a boolean (true/false), got {text!r}")
    if tp is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
            raise ConfigError(f"{key} expects an integer, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key} expects a number, got {text!r}") from None
    return text


def parse_overrides(items: list[str] | None) -> dict:
    """Parse ``["key=value", ...]`` into typed overrides (types from the dataclass fields)."""
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r} (a list is one comma-separated value, e.g. "
                              "metrics=swd,kid)")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in hints:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {field_names()}")
        out[key] = _convert(key, value.strip(), hints[key])
    return out


def make_config(preset: str = "paper", **overrides) -> TrainConfig:
    """The preset's config with ``overrides`` applied (unknown presets/keys/values raise ConfigError)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; valid keys: {field_names()}")
    return TrainConfig(**{**PRESETS[preset], **overrides})
