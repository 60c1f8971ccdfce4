from __future__ import annotations

import pytest
import torch

from gankit.config import ModelConfig
from gankit.nets import MODELS, build_models, sample_noise


@pytest.mark.parametrize("size", [16, 28, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(size, channels):
    c = ModelConfig(z_dim=16, g_channels=8, d_channels=8)
    g, d = build_models(c, (channels, size, size)).values()
    x = g(torch.randn(3, 16))
    assert x.shape == (3, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (3,)


@pytest.mark.parametrize("name", ["dcgan", "mlp"])
@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_conditional_models(name, conditioning):
    c = ModelConfig(
        name=name,
        z_dim=8,
        g_channels=8,
        d_channels=8,
        num_classes=10,
        conditioning=conditioning,
        g_hidden=(32,),
        d_hidden=(32,),
    )
    g, d = build_models(c, (1, 28, 28)).values()
    y = torch.arange(4)
    x = g(torch.randn(4, 8), y)
    assert x.shape == (4, 1, 28, 28) and d(x, y).shape == (4,)
    # The label changes the output: conditioning is wired in.
    g.eval()
    assert not torch.allclose(g(torch.zeros(1, 8), torch.tensor([0])), g(torch.zeros(1, 8), torch.tensor([1])))


def test_report_002_mlp_is_expressible():
    c = ModelConfig(name="mlp", z_dim=100, noise="uniform", g_hidden=(128,), d_hidden=(128,), g_batchnorm=False)
    g, d = build_models(c, (1, 28, 28)).values()
    linears = [m for m in g.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 128), (128, 784)]
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in g.modules())


def test_reference_64px_dcgan_widths():
    g, _ = build_models(ModelConfig(), (3, 64, 64)).values()
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]


def test_dcgan_init_statistics():
    g, _ = build_models(ModelConfig(g_channels=64), (3, 64, 64)).values()
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(w.std().item() - 0.02) < 0.002


def test_noise_priors():
    u = sample_noise(10000, 4, "uniform", generator=torch.Generator().manual_seed(0))
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean().item()) < 0.03
    n = sample_noise(10000, 4, "normal", generator=torch.Generator().manual_seed(0))
    assert abs(n.std().item() - 1) < 0.03


def test_spectral_norm_flag():
    c = ModelConfig(z_dim=8, g_channels=8, d_channels=8, spectral_norm_d=True)
    _, d = build_models(c, (1, 16, 16)).values()
    assert any("parametrizations" in n for n, _ in d.named_parameters())


def test_every_registered_gan_model_builds():
    for name in MODELS.names():
        if MODELS.get(name).family != "gan":
            continue
        c = ModelConfig(name=name, z_dim=8, g_channels=8, d_channels=8, g_hidden=(16,), d_hidden=(16,))
        g, d = build_models(c, (1, 28, 28)).values()
        assert d(g(torch.randn(2, 8))).shape == (2,)


@pytest.mark.parametrize("upsample", ["nearest", "nearest_last"])
def test_dcgan_nearest_upsampling(upsample):
    c = ModelConfig(z_dim=8, g_channels=8, d_channels=8, g_upsample=upsample)
    g, _ = build_models(c, (1, 28, 28)).values()
    transposed = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    # The 1x1 -> 7x7 projection stays transposed; "nearest" replaces both stride-2 layers, "nearest_last" the last.
    assert len(transposed) == (1 if upsample == "nearest" else 2)
    assert sum(isinstance(m, torch.nn.Upsample) for m in g.modules()) == (2 if upsample == "nearest" else 1)
    assert g(torch.randn(2, 8)).shape == (2, 1, 28, 28)


def test_minibatch_std_sees_a_batch_without_variety():
    from gankit.nets.blocks import MinibatchStd

    layer = MinibatchStd(4)
    same = torch.randn(1, 3, 5, 5).repeat(8, 1, 1, 1)
    out = layer(same)
    assert out.shape == (8, 4, 5, 5) and torch.equal(out[:, :3], same)
    assert out[:, 3].abs().max() < 1e-3  # identical images: no spread (the 1e-8 under the root aside)
    varied = layer(torch.randn(8, 3, 5, 5))
    assert varied[:, 3].min() > 0.5  # unit-variance features: a spread near 1
    # One value per group, the same in every position of every image of that group.
    assert varied[:, 3].flatten(1).std(1).max() == 0
    assert layer(torch.randn(6, 3, 5, 5)).shape == (6, 4, 5, 5)  # 6 does not divide by 4: one group of the whole batch


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_dcgan_discriminator_with_minibatch_std(conditioning):
    c = ModelConfig(z_dim=8, g_channels=8, d_channels=8, d_mbstd=4, num_classes=10, conditioning=conditioning)
    g, d = build_models(c, (1, 28, 28)).values()
    y = torch.arange(8) % 10
    assert d(g(torch.randn(8, 8), y), y).shape == (8,)
    assert d.head.in_channels == 16 + 1


def test_dcgan_clamp_output_reaches_exact_black_and_white():
    g, _ = build_models(ModelConfig(z_dim=8, g_channels=8, d_channels=8, g_output="clamp"), (1, 16, 16)).values()
    assert isinstance(g.net[-1], torch.nn.Hardtanh)
    with torch.no_grad():
        g.net[-2].bias.fill_(5.0)  # drive every pre-activation past 1: tanh would give 0.9999, clamp gives 1
        assert bool((g(torch.randn(2, 8)) == 1).all())


def test_class_conditional_batchnorm_in_dcgan_generator():
    from gankit.nets.blocks import ClassBatchNorm2d

    c = ModelConfig(z_dim=8, g_channels=8, d_channels=8, num_classes=10, g_class_norm=True)
    g, _ = build_models(c, (1, 28, 28)).values()
    norms = [m for m in g.modules() if isinstance(m, ClassBatchNorm2d)]
    assert len(norms) == 2 and not any(type(m) is torch.nn.BatchNorm2d and m.affine for m in g.modules())
    scale = norms[0].scale.weight
    assert abs(scale.mean().item() - 1) < 0.01 and scale.std().item() < 0.05  # DCGAN init: N(1, 0.02), not N(0, 0.02)
    y = torch.arange(4)
    assert g(torch.randn(4, 8), y).shape == (4, 1, 28, 28)
    with torch.no_grad():  # each class has its own shift: changing class 3's moves only class 3's images
        g.eval()
        z = torch.randn(4, 8)
        before = g(z, y)
        norms[0].shift.weight[3] += 1.0
        after = g(z, y)
    assert torch.equal(before[:3], after[:3]) and not torch.equal(before[3], after[3])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_dense_transpose_is_the_transposed_conv(channels_last, bias):
    from gankit.nets.blocks import DenseTranspose2d

    torch.manual_seed(0)
    fast = DenseTranspose2d(12, 8, 7, 1, 0, bias=bias)
    ref = torch.nn.ConvTranspose2d(12, 8, 7, 1, 0, bias=bias)
    ref.load_state_dict(fast.state_dict())  # the same parameters under the same names
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    fast, ref = fast.to(memory_format=fmt), ref.to(memory_format=fmt)
    x = torch.randn(5, 12, 1, 1, requires_grad=True)
    out = fast(x)
    assert out.shape == (5, 8, 7, 7) and out.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out, ref(x))
    g_fast = torch.autograd.grad(out.square().sum(), [x, fast.weight])
    g_ref = torch.autograd.grad(ref(x).square().sum(), [x, ref.weight])
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b)
    wide = torch.randn(2, 12, 3, 3)  # not a 1x1 input: the transposed conv itself
    torch.testing.assert_close(fast(wide), ref(wide))
    spread = DenseTranspose2d(12, 8, 3, 1, 0, dilation=2)  # a dilated kernel is not a plain matrix product
    plain = torch.nn.ConvTranspose2d(12, 8, 3, 1, 0, dilation=2)
    plain.load_state_dict(spread.state_dict())
    torch.testing.assert_close(spread(x), plain(x))


@pytest.mark.parametrize("channels_last", [False, True])
def test_label_planes_join_in_the_first_conv_layout(channels_last):
    from gankit.nets.blocks import LabelConditioning

    cond = LabelConditioning(10, "concat")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(4, 1, 6, 6).contiguous(memory_format=fmt).requires_grad_()
    y = torch.tensor([0, 3, 9, 3])
    out = cond.join(x, y, fmt)
    assert out.shape == (4, 11, 6, 6) and out.is_contiguous(memory_format=fmt)
    planes = torch.nn.functional.one_hot(y, 10).float()[:, :, None, None].expand(-1, -1, 6, 6)
    assert torch.equal(out, torch.cat([x, planes], 1))
    (grad,) = torch.autograd.grad((out * torch.arange(11.0)[:, None, None]).sum(), [x], retain_graph=True)
    assert torch.equal(grad, torch.zeros_like(x))  # channel 0 has weight 0 in the sum above
    (grad,) = torch.autograd.grad(out[:, 0].sum(), [x])
    assert torch.equal(grad, torch.ones_like(x))


@pytest.mark.parametrize("hw", [(16, 32), (64, 16), (32, 64)])
@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_dcgan_non_square(hw, conditioning):
    """Non-square DCGAN (data.image_size wide, data.image_height high): G draws H x W, D gives one logit per image;
    the layers follow the shorter side (16: two stride-2 layers from a 4 x 4*aspect map)."""
    h, w = hw
    c = ModelConfig(z_dim=8, g_channels=4, d_channels=4, num_classes=3, conditioning=conditioning, d_mbstd=2)
    g, d = build_models(c, (3, h, w)).values()
    y = torch.tensor([0, 2])
    x = g(torch.randn(2, 8), y)
    assert x.shape == (2, 3, h, w) and d(x, y).shape == (2,)
    n = min(h, w).bit_length() - 3
    assert g.net[0].kernel_size == (h >> n, w >> n) and d.head.kernel_size == (h >> n, w >> n)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules()) == n + 1  # the first map, then n doublings


def test_every_non_square_model_builds_wide_images():
    """Every GAN model registered as non_square draws and judges 32-wide, 16-high images (flattened MLPs too)."""
    names = [n for n in MODELS.names() if MODELS.get(n).task == "gan" and MODELS.get(n).non_square]
    assert {"dcgan", "dcgan-tf", "dcgan-3conv", "dcgan-upsample", "mlp", "mlp-maxout"} <= set(names)
    for name in names:
        c = ModelConfig(name=name, z_dim=8, g_channels=8, d_channels=8, g_hidden=(16,), d_hidden=(16,))
        g, d = build_models(c, (1, 16, 32)).values()
        x = g(torch.randn(2, 8))
        assert x.shape == (2, 1, 16, 32) and d(x).shape == (2,), name


@pytest.mark.parametrize(
    "hw, needle",
    [
        ((16, 48), "image_size=64, image_height=16"),
        ((28, 32), "image_size=32, image_height=32"),
        ((8, 32), "powers of two from 16 to 256"),
    ],
)
def test_dcgan_refuses_an_unreachable_pair(hw, needle):
    from gankit.core.errors import GankitError
    from gankit.nets.dcgan import plan_hw

    with pytest.raises(GankitError, match="non-square DCGAN needs both sides powers of two") as e:
        plan_hw(*hw)
    assert needle in str(e.value) and "\n" not in str(e.value)
