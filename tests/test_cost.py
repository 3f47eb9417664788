"""gan_lib.cost: parameter counts agree with the built networks; step_cost measures in a fresh subprocess."""
import math

import pytest

from gan_lib import cost
from gan_lib.config import make_config
from gan_lib.layers import Involution2d, SelfAttention2d, count_parameters
from gan_lib.train import build_models


@pytest.mark.parametrize("overrides", [dict(kernel_size=3, groups=4, reduction_ratio=2, width=64),
                                       dict(kernel_size=7, groups=4, reduction_ratio=8, width=16),
                                       dict(kernel_size=1, groups=4, reduction_ratio=2, kernel_norm="spectral")])
def test_involution_layer_params_is_the_generators_layer(overrides):
    cfg = make_config("smoke", model="igan", **overrides)
    G, _ = build_models(cfg)
    layer = [m for m in G.modules() if isinstance(m, Involution2d)][-1]  # the one at C = width
    assert layer.channels == cfg.width
    assert cost.involution_layer_params(cfg) == count_parameters(layer)
    assert cost.involution_layer_params(cfg, width=64) == count_parameters(
        Involution2d(64, cfg.kernel_size, cfg.groups, cfg.reduction_ratio, kernel_norm=cfg.kernel_norm))
    with pytest.raises(ValueError, match="no involution layer"):
        cost.involution_layer_params(make_config("smoke", model="sagan"))


def test_param_counts():
    for model, block in (("dcgan", None), ("sagan", SelfAttention2d), ("igan", Involution2d)):
        cfg = make_config("smoke", model=model, dataset="mnist")
        G, D = build_models(cfg, 1)
        p = cost.param_counts(cfg)  # mnist: 1 channel
        assert p["params_G"] == count_parameters(G) and p["params_D"] == count_parameters(D)
        expect = 0 if block is None else sum(count_parameters(m) for m in G.modules() if isinstance(m, block))
        assert p["params_block_G"] == expect


def test_step_cost_in_a_subprocess():
    cfg = make_config("smoke", model="igan", dataset="synthetic", device="cpu")
    out = cost.step_cost(cfg, steps=2, warmup=1, threads=1)
    assert out["sec_per_step"] > 0 and out["sec_per_step_min"] <= out["sec_per_step"]
    assert out["peak_rss_mb"] >= out["base_rss_mb"] > 10 and out["timed_steps"] == 2
    assert out["threads"] == 1 and out["device"] == "cpu" and "peak_gpu_mb" not in out
    assert math.isfinite(out["peak_rss_mb"])
    with pytest.raises(RuntimeError, match=r"step_cost\(igan\) failed(.|\n)*channels must be a positive integer"):
        cost.step_cost(cfg, steps=1, warmup=0, channels=-1)  # fails inside the subprocess
