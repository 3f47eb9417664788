"""TrainConfig: Table 1 defaults, presets, --set parsing, JSON round trip, clear errors."""
import pytest

from gan_lib.config import PRESETS, ConfigError, TrainConfig, field_names, make_config, parse_overrides


def test_defaults_are_table_1():
    c = TrainConfig()
    assert (c.batch_size, c.steps, c.gp_lambda, c.z_dim) == (64, 50_000, 10.0, 128)
    assert (c.beta1, c.beta2, c.lr_g, c.lr_d, c.lr_decay) == (0.0, 0.9, 1e-4, 4e-4, 0.95)
    assert (c.image_size, c.width, c.n_critic, c.precision) == (64, 64, 1, "fp32")
    assert (c.kernel_size, c.groups, c.reduction_ratio) == (3, 4, 2)  # Table 2, case 1


def test_presets():
    assert set(PRESETS) == {"smoke", "cpu", "paper"}
    assert make_config("paper") == TrainConfig()
    cpu = make_config("cpu")
    assert (cpu.image_size, cpu.width, cpu.batch_size) == (32, 32, 64)
    assert cpu.steps // cpu.lr_decay_every == 50  # same decay shape as the paper's 50k / 1k
    smoke = make_config("smoke", model="dcgan", steps=3)
    assert (smoke.model, smoke.steps, smoke.image_size) == ("dcgan", 3, 32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(preset="nope"), "choose one of ['paper', 'cpu', 'smoke']"),
    (dict(preset="smoke", model="vae"), "choose one of ['dcgan', 'sagan', 'igan']"),
    (dict(preset="smoke", bogus=1), "valid keys"),
    (dict(preset="smoke", image_size=48), "image_size=48"),
    (dict(preset="smoke", precision="fp16"), "['fp32', 'bf16', 'auto', 'fp64']"),
    (dict(preset="smoke", kernel_norm="weight"), "['none', 'spectral', 'batch']"),
    (dict(preset="smoke", n_critic=0), "n_critic must be >= 1"),
    (dict(preset="smoke", dataset="imagenet"), "celeba"),
])
def test_bad_configs_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=None) as e:
        make_config(**kwargs)
    assert message in str(e.value)


def test_parse_overrides_types():
    o = parse_overrides(["steps=5_000", "lr_g=2e-4", "channels_last=true", "kernel_clip=none", "max_images=1e3",
                         "metrics=swd,kid", "model=sagan", "kernel-size=7", "data_root=/a=b"])
    assert o == dict(steps=5000, lr_g=2e-4, channels_last=True, kernel_clip=None, max_images=1000,
                     metrics=("swd", "kid"), model="sagan", kernel_size=7, data_root="/a=b")
    assert parse_overrides(["kernel_clip=0.5"])["kernel_clip"] == 0.5
    assert parse_overrides(["deterministic=0"])["deterministic"] is False


@pytest.mark.parametrize("item, message", [
    ("bogus=1", "unknown config key 'bogus'"),
    ("steps", "key=value"),
    ("steps=1.5", "integer"),
    ("lr_g=fast", "number"),
    ("compile=maybe", "boolean"),
])
def test_parse_overrides_errors(item, message):
    with pytest.raises(ConfigError) as e:
        parse_overrides([item])
    assert message in str(e.value)


def test_json_round_trip(tmp_path):
    c = make_config("cpu", model="sagan", kernel_clip=0.1, metrics=("swd",), data_root="/x")
    c.save(tmp_path / "config.json")
    back = TrainConfig.load(tmp_path / "config.json")
    assert back == c and isinstance(back.metrics, tuple)
    assert set(c.to_dict()) == set(field_names())
    with pytest.raises(ConfigError, match="unknown config keys"):
        TrainConfig.from_dict({**c.to_dict(), "old_field": 1})


# --- issue 15, item 3 and 8: the whole config is validated when it is made, before any work ---

@pytest.mark.parametrize("overrides, message", [
    (dict(metrics=("swd", "bogus")), "unknown metric 'bogus'"),
    (dict(metrics=("swd", "kdi")), "did you mean 'kid'"),
    (dict(best_metric="fid"), "best_metric='fid' is not one of the evaluated metrics"),
    (dict(gp_lambda=-10.0), "gp_lambda must be a finite number >= 0"),
    (dict(lr_decay=0.0), "lr_decay must be in (0, 1]"),
    (dict(lr_decay=1.5), "lr_decay must be in (0, 1]"),
    (dict(lr_d=float("inf")), "lr_d must be a finite number > 0"),
    (dict(lr_g=float("nan")), "lr_g must be a number"),
    (dict(beta2=1.0), "beta2 must be in [0, 1)"),
    (dict(eval_num_samples=1), "eval_num_samples must be >= 16"),
    (dict(kernel_clip=-1.0), "kernel_clip must be none or a finite number > 0"),
    (dict(max_images=8), "max_images must be none or >= batch_size (16)"),
    (dict(kernel_size=4), "kernel_size must be odd"),
    (dict(groups=3), "groups=3 must divide the channels of the involution layer (8"),
    (dict(reduction_ratio=16, num_blocks=2), "reduction_ratio=16 must divide the channels of the involution layer"),
    (dict(num_blocks=3), "num_blocks must be at most 2 for image_size 32"),
    (dict(model="sagan", width=12), "sagan needs width * 2**i divisible by 8"),
])
def test_values_out_of_range_are_refused_when_the_config_is_made(overrides, message):
    with pytest.raises(ConfigError) as e:
        make_config("smoke", **overrides)
    assert message in str(e.value)


def test_metric_typo_from_the_command_line_is_refused_before_training():
    with pytest.raises(ConfigError, match="unknown metric 'bogus'"):
        make_config("paper", **parse_overrides(["metrics=swd,bogus"]))


def test_valid_edge_values_are_accepted():
    c = make_config("smoke", gp_lambda=0.0, lr_decay=1.0, eval_num_samples=16, kernel_size=1, groups=8,
                    metrics=("swd", "kid_randconv"), best_metric="kid", precision="fp64", max_images=16)
    assert c.precision == "fp64"
    assert make_config("smoke", model="dcgan", groups=3).groups == 3  # groups only shapes the involution
    for preset in PRESETS:
        make_config(preset)
