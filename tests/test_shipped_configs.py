"""Every shipped config resolves and trains two steps on stand-in data of its shape; the report architectures match
the reports' code layer for layer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from gankit.config.layering import resolve
from gankit.data import DATASETS
from gankit.data.base import ImageData
from gankit.nets import build_models
from gankit.training.loop import train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SHIPPED = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "spaces")  # spaces/: `gankit tune --space`
REPORTS = sorted((CONFIGS / "reports").glob("*.yaml"))

# Budget and logging for a smoke run; the architecture, loss and optimizer stay as shipped.
SMOKE = {
    "train.steps": 2,
    "train.epochs": 0,
    "train.max_minutes": 0,
    "train.batch_size": 4,
    "train.progress": False,
    "train.threads": 1,
    "train.log_every": 1,
}
# Widths halved where a config is slow at full size; the layer structure (the architecture's type) is unchanged.
SHRINK = {
    "001-dcgan-deep-mnist.yaml": {"model.g_channels": 32, "model.d_channels": 32},
}


def stand_in(cfg) -> ImageData:
    """Random uint8 images of the config's (C, S, S) with labels 0..9: no files, no downloads."""
    c = cfg.data.channels or DATASETS.get(cfg.data.name).channels or 3  # an image folder: colour photos
    s = cfg.data.image_size
    n = 16
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=gen)
    return ImageData(images, torch.arange(n) % 10, cfg.data.name, [str(i) for i in range(10)])


def test_configs_are_shipped():
    assert len(REPORTS) >= 29
    for name in ["wgan-gp-mnist.yaml", "hinge-sn-mnist.yaml", "lsgan-mnist.yaml", "cdcgan-digits.yaml"]:
        assert (CONFIGS / name).is_file(), name


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(CONFIGS)) for p in SHIPPED])
def test_shipped_config_trains_two_steps(path: Path, tmp_path: Path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{path.name} must start with a comment saying what it reproduces"
    cfg = resolve(file=path, overrides={**SMOKE, **SHRINK.get(path.name, {})})
    run = train(cfg, out=tmp_path / "run", data=stand_in(cfg))
    assert run.step == 2
    assert json.loads((run.dir / "summary.json").read_text())["step"] == 2
    # The budget the file ships with is a real one (not a smoke-test leftover).
    shipped = resolve(file=path)
    assert shipped.train.epochs >= 1 or shipped.train.steps >= 1000 or shipped.train.max_minutes > 0


def test_report_configs_are_named_and_listed():
    readme = (CONFIGS / "reports" / "README.md").read_text()
    for path in REPORTS:
        assert re.fullmatch(r"00[0-4]-[a-z0-9-]+\.yaml", path.name), path.name
        assert path.name in readme, f"{path.name} is missing from configs/reports/README.md"
        head = path.read_text().split("\n", 1)[0]
        assert f"report {path.name[:3]}" in head, f"{path.name}: the first line must name report {path.name[:3]}"


def _layers(m: nn.Module) -> list[tuple]:
    """(kind, in, out, kernel, stride) of every conv/linear layer, in order."""
    out = []
    for x in m.modules():
        if isinstance(x, (nn.Conv2d, nn.ConvTranspose2d)):
            out.append((type(x).__name__, x.in_channels, x.out_channels, x.kernel_size[0], x.stride[0]))
        elif isinstance(x, nn.Linear):
            out.append(("Linear", x.in_features, x.out_features))
    return out


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_tf_tutorial_dcgan_matches_report_004():
    cfg = resolve(file=CONFIGS / "reports" / "004-dcgan-mnist.yaml")
    g, d = build_models(cfg.model, (1, 28, 28)).values()
    assert _layers(g) == [
        ("Linear", 100, 7 * 7 * 256),
        ("ConvTranspose2d", 256, 128, 5, 1),
        ("ConvTranspose2d", 128, 64, 5, 2),
        ("ConvTranspose2d", 64, 1, 5, 2),
    ]
    assert _layers(d) == [("Conv2d", 1, 64, 5, 2), ("Conv2d", 64, 128, 5, 2), ("Linear", 7 * 7 * 128, 1)]
    # Keras' model.summary() of the tutorial: G 2,305,472 trainable parameters, D 212,865.
    assert _params(g) == 2_305_472 and _params(d) == 212_865
    assert [x.p for x in d.modules() if isinstance(x, nn.Dropout)] == [0.3, 0.3]
    assert {x.negative_slope for x in g.modules() if isinstance(x, nn.LeakyReLU)} == {0.3}
    assert cfg.train.batch_size == 256 and cfg.optim.lr_g == cfg.optim.lr_d == 1e-4 and cfg.train.epochs == 50


def test_three_conv_dcgan_matches_report_002():
    cfg = resolve(file=CONFIGS / "reports" / "002-dcgan-3conv-mnist.yaml")
    g, d = build_models(cfg.model, (1, 28, 28)).values()
    kinds = [type(x).__name__ for x in g.body]
    # two up-convolutions with BN + LeakyReLU, then dropout 0.5, then the single-filter output convolution
    assert kinds == [
        "ConvTranspose2d",
        "BatchNorm2d",
        "LeakyReLU",
        "ConvTranspose2d",
        "BatchNorm2d",
        "LeakyReLU",
        "Dropout",
        "ConvTranspose2d",
        "Tanh",
    ]
    assert g.body[6].p == 0.5 and g.body[7].out_channels == 1
    convs = [x for x in d.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 3 and all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    cfg = resolve(file=CONFIGS / "reports" / "002-vanilla-gan-mnist.yaml")
    g, d = build_models(cfg.model, (1, 28, 28)).values()
    assert _layers(g) == [("Linear", 100, 128), ("Linear", 128, 784)] and cfg.model.noise == "uniform"
    assert _layers(d) == [("Linear", 784, 128), ("Linear", 128, 1)]


def test_pytorch_dcgan_matches_report_003():
    cfg = resolve(file=CONFIGS / "reports" / "003-dcgan-cifar10.yaml")
    g, d = build_models(cfg.model, (3, 64, 64)).values()
    assert [(c[1], c[2]) for c in _layers(g)] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    assert [(c[1], c[2]) for c in _layers(d)] == [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.optim.lr_g, cfg.optim.beta1) == (64, 25, 2e-4, 0.5)


def test_deep_dcgan_reaches_1024_channels():
    cfg = resolve(file=CONFIGS / "reports" / "001-dcgan-deep-mnist.yaml")
    g, _ = build_models(cfg.model, (1, 64, 64)).values()
    assert _layers(g)[0][1:3] == (100, 1024)


@pytest.mark.parametrize("name", ["dcgan-tf", "dcgan-3conv", "dcgan-upsample", "mlp-maxout"])
@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_variants_condition_on_the_class(name: str, conditioning: str):
    width = (
        {"model.g_hidden": [32], "model.d_hidden": [16]}
        if name.startswith("mlp")
        else {"model.g_channels": 8, "model.d_channels": 8}
    )
    cfg = resolve(
        overrides={
            "model.name": name,
            "data.name": "mnist",
            "data.image_size": 28,
            "model.num_classes": 10,
            "model.conditioning": conditioning,
            **width,
        }
    )
    g, d = build_models(cfg.model, (1, 28, 28)).values()
    y = torch.arange(4)
    x = g(torch.randn(4, cfg.model.z_dim), y)
    assert x.shape == (4, 1, 28, 28) and x.abs().max() <= 1 and d(x, y).shape == (4,)
    g.eval()
    z = torch.zeros(1, cfg.model.z_dim)
    assert not torch.allclose(g(z, torch.tensor([0])), g(z, torch.tensor([1])))


def test_variant_rejects_a_size_it_cannot_make():
    from gankit.core.errors import GankitError

    with pytest.raises(GankitError, match="data.image_size=30"):
        resolve(overrides={"model.name": "dcgan-tf", "data.image_size": 30})
