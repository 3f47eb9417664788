"""The paper's generator and critic (§4.2): shapes, where the block goes, spectral norm, errors."""
import pytest
import torch
import torch.nn as nn

from gan_lib.layers import Involution2d, SelfAttention2d
from gan_lib.networks import BLOCKS, Critic, Generator, make_block


def _blocks(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("image_size,channels", [(64, 3), (32, 3), (32, 1), (64, 1)])
def test_generator_and_critic_shapes(block, image_size, channels):
    G = Generator(image_size=image_size, channels=channels, width=8, block=block)
    D = Critic(image_size=image_size, channels=channels, width=8, block=block)
    x = G(torch.randn(5, 128))
    assert x.shape == (5, channels, image_size, image_size)
    assert x.abs().max() <= 1  # tanh
    assert D(x).shape == (5,)


def test_paper_generator_layout_at_64px():
    """z -> 8w@4 -> 4w@8 -> 2w@16 -> w@32 -> [block] -> 3@64 (w = 64)."""
    G = Generator(block="igan")
    shapes, h = [], torch.randn(2, 128)[:, :, None, None]
    for layer in G.net:
        h = layer(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32), (64, 32, 32), (3, 64, 64), (3, 64, 64)]
    assert isinstance(G.net[4], Involution2d) and G.net[4].channels == 64


def test_paper_critic_layout_at_64px():
    """3@64 -> w@32 -> [block] -> 2w@16 -> 4w@8 -> 8w@4 -> score; no batch norm outside the block."""
    D = Critic(block="sagan")
    assert isinstance(D.net[1], SelfAttention2d) and D.net[1].channels == 64
    shapes, h = [], torch.randn(2, 3, 64, 64)
    for layer in D.net:
        h = layer(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(64, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (1, 1, 1)]
    outside = [m for i, layer in enumerate(D.net) if i != 1 for m in layer.modules()]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in outside)
    leaky = [m for m in D.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 4 and all(m.negative_slope == 0.1 for m in leaky)


def test_spectral_norm_on_all_but_last_layers():
    for model in (Generator(width=8, block="dcgan"), Critic(width=8, block="dcgan")):
        convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        normed = [hasattr(m, "parametrizations") for m in convs]
        assert normed == [True] * (len(convs) - 1) + [False]


def test_one_class_per_network_block_is_the_only_difference():
    """DCGAN, SAGAN and iGAN share every layer but the inserted block."""
    counts = {b: sum(p.numel() for p in Generator(width=16, block=b).parameters()) for b in BLOCKS}
    inv = sum(p.numel() for p in Involution2d(16).parameters())
    att = sum(p.numel() for p in SelfAttention2d(16).parameters())
    assert counts["igan"] - counts["dcgan"] == inv
    assert counts["sagan"] - counts["dcgan"] == att
    assert len(_blocks(Generator(block="dcgan"), (Involution2d, SelfAttention2d))) == 0


@pytest.mark.parametrize("K,G_,R", [(3, 4, 2), (7, 4, 8), (1, 4, 2), (5, 4, 2), (3, 1, 2)])
def test_involution_hyperparameters_reach_both_networks(K, G_, R):
    block = make_block("igan", kernel_size=K, groups=G_, reduction_ratio=R)
    for model in (Generator(width=32, block=block), Critic(width=32, block=block)):
        (inv,) = _blocks(model, Involution2d)
        assert (inv.kernel_size, inv.groups, inv.reduction_ratio) == (K, G_, R)


def test_two_successive_involutions_variant():
    """§5.3: conv-inv-conv-inv-conv in the generator; after the first two layers in the critic."""
    G = Generator(width=8, block="igan", num_blocks=2)
    D = Critic(width=8, block="igan", num_blocks=2)
    assert [m.channels for m in _blocks(G, Involution2d)] == [16, 8]
    assert [m.channels for m in _blocks(D, Involution2d)] == [8, 16]
    kinds = [type(layer).__name__ for layer in G.net]
    i, j = [k for k, name in enumerate(kinds) if name == "Involution2d"]
    assert j == i + 2 and kinds[i + 1] == "Sequential"  # exactly one conv between the two involutions
    assert G(torch.randn(3, 128)).shape == (3, 3, 64, 64)
    assert D(torch.randn(3, 3, 64, 64)).shape == (3,)


def test_stability_options_reach_the_involution():
    G = Generator(width=8, block=make_block("igan", kernel_norm="spectral", kernel_clip=0.5))
    (inv,) = _blocks(G, Involution2d)
    assert inv.kernel_norm == "spectral" and inv.kernel_clip == 0.5
    kernel = inv.generate_kernel(torch.randn(2, 8, 8, 8) * 100)
    assert kernel.abs().max() <= 0.5


@pytest.mark.parametrize("sigma_norm", ["batch", "layer", "none"])
def test_critic_sigma_norm_and_batch_dependence(sigma_norm):
    """With batch norm in sigma a sample's score depends on its batch; layer/none make it per-sample."""
    torch.manual_seed(0)
    D = Critic(image_size=32, width=8, block=make_block("igan", sigma_norm=sigma_norm)).train()
    for m in D.modules():  # freeze spectral norm's power iteration so that two calls see the same weights
        if type(m).__name__ == "_SpectralNorm":
            m.eval()
    x = torch.randn(6, 3, 32, 32)
    alone = D(x[:3])
    together = D(x)[:3]
    independent = torch.allclose(alone, together, atol=1e-5)
    assert independent == (sigma_norm != "batch")


def test_extra_repr_names_the_choice():
    assert "block='igan'" in repr(Generator(width=8, block="igan"))
    assert "block='sagan'" in repr(Critic(width=8, block=make_block("sagan")))
    text = repr(Critic(width=8, block=make_block("igan", sigma_norm="layer")))
    assert "block='igan'" in text and "sigma_norm='layer'" in text  # the involution's own extra_repr


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(block="vit"), "unknown block"),
        (dict(image_size=48), "power of two"),
        (dict(image_size=8), "power of two"),
        (dict(width=0), "width"),
        (dict(num_blocks=9, block="igan"), "num_blocks"),
        (dict(block=make_block("igan", groups=4), width=30), "divisible"),
        (dict(block=3), "factory from make_block"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Generator(**kwargs)


def test_make_block_names_its_errors():
    with pytest.raises(ValueError, match="unknown block"):
        make_block("vit")
    with pytest.raises(ValueError, match="unknown block settings \\['kernel'\\]"):
        make_block("igan", kernel=3)
    assert make_block("dcgan", kernel_size=7) is None  # one config builds any of the three: settings unused
    assert isinstance(make_block("sagan", kernel_size=7)(16), SelfAttention2d)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="z must be"):
        Generator(width=8)(torch.randn(2, 64))
    with pytest.raises(ValueError, match="images must be"):
        Critic(width=8)(torch.randn(2, 3, 32, 32))


def test_networks_train_end_to_end_with_double_backward():
    """The critic's gradient penalty differentiates through every block twice."""
    for block in BLOCKS:
        D = Critic(image_size=32, width=8, block=block)
        x = torch.randn(4, 3, 32, 32, requires_grad=True)
        (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        penalty = (g.flatten(1).norm(dim=1) - 1).pow(2).mean()
        penalty.backward()
        # every weight but the last layer's bias (a constant shift of the score) gets a finite gradient
        missing = [n for n, p in D.named_parameters() if p.grad is None]
        assert missing == [f"net.{len(D.net) - 1}.bias"]
        assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)
