"""pix2pix building blocks: U-Net and PatchGAN shapes, receptive fields, the paired readers, the sketch set, jitter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from gankit.config import DataConfig, ModelConfig
from gankit.config.layering import resolve
from gankit.data import load_dataset
from gankit.data.paired import (
    SKETCH_TRAIN,
    SKETCH_VAL,
    augment_pairs,
    default_load_size,
    paired_splits,
    sketch_boxes,
    sketch_regions,
)
from gankit.core.errors import GankitError
from gankit.nets import build_models, model_defaults
from gankit.nets.pix2pix import (
    PatchDiscriminator,
    UNetGenerator,
    layers_receptive_field,
    patch_output_size,
    receptive_field,
    unet_depth,
)

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)

# ---------------------------------------------------------------------------------------------------------------------
# U-Net


@pytest.mark.parametrize("size", [32, 64, 96, 128, 256])
@pytest.mark.parametrize("c_in,c_out", [(1, 3), (3, 3)])
def test_unet_output_shape_equals_input_shape(size: int, c_in: int, c_out: int) -> None:
    g = UNetGenerator(c_in, c_out, size, channels=8)
    x = torch.rand(2, c_in, size, size) * 2 - 1
    y = g(x)
    assert y.shape == (2, c_out, size, size)
    assert y.abs().max() <= 1  # tanh


def test_unet_depth_rule() -> None:
    assert [unet_depth(s) for s in (8, 32, 64, 128, 256, 512)] == [3, 5, 6, 7, 8, 9]  # powers of two: down to 1x1
    assert unet_depth(96) == 5  # 96 = 3 * 2^5: a 3x3 bottleneck
    assert unet_depth(40) == 3
    for bad in (100, 12, 33, 4):
        with pytest.raises(GankitError, match="data.image_size"):
            unet_depth(bad)


def test_unet_reference_size_and_dropout() -> None:
    g = UNetGenerator(3, 3, 256)  # the paper's unet_256
    assert sum(p.numel() for p in g.parameters()) == 54_414_531  # same count as the reference implementation
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == 3  # the 3 innermost decoder layers
    assert sum(isinstance(m, nn.Dropout) for m in UNetGenerator(3, 3, 256, dropout=0).modules()) == 0
    small = UNetGenerator(1, 3, 32, channels=8).eval()
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(small(x), small(x))  # eval: deterministic
    assert small(torch.randn(1, 1, 64, 96)).shape == (1, 3, 64, 96)  # fully convolutional: multiples of 2^depth
    with pytest.raises(ValueError):
        small(torch.randn(1, 1, 48, 48))


def test_unet_skip_connections_carry_detail() -> None:
    """The outermost decoder layer sees the first encoder layer's features: changing one input pixel changes the
    output near it even though the bottleneck is 1x1 (without skips it would change everywhere or nowhere)."""
    g = UNetGenerator(1, 1, 32, channels=8, norm="none", dropout=0).eval()
    x = torch.zeros(1, 1, 32, 32, requires_grad=True)
    g(x)[0, 0, 3, 3].backward()
    assert x.grad is not None and x.grad[0, 0, 2:5, 2:5].abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------------
# PatchGAN


def _conv_specs(d: nn.Module) -> list[tuple[int, int, int]]:
    return [(m.kernel_size[0], m.stride[0], m.padding[0]) for m in d.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("patch", [1, 16, 70, 286])
def test_patch_receptive_field_from_layers(patch: int) -> None:
    d = PatchDiscriminator(6, channels=4, patch=patch)
    assert layers_receptive_field(_conv_specs(d)) == patch == receptive_field(patch)


@pytest.mark.parametrize("patch,expected", [(1, 256), (16, 126), (70, 30)])
def test_patch_output_map_size(patch: int, expected: int) -> None:
    d = PatchDiscriminator(4, channels=4, patch=patch)
    out = d(torch.randn(1, 4, 256, 256))
    assert patch_output_size(256, patch) == expected
    assert out.shape == (1, 1, expected, expected)


def test_patch70_sees_exactly_70_pixels() -> None:
    """Measured, not computed: the input pixels that reach one output unit's gradient span 70 x 70."""
    d = PatchDiscriminator(1, channels=2, patch=70, norm="none")
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    out = d(x)
    c = out.shape[-1] // 2
    out[0, 0, c, c].backward()
    assert x.grad is not None
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70


def test_patch_rejects_unknown_size() -> None:
    with pytest.raises(GankitError, match="model.patch"):
        PatchDiscriminator(6, patch=42)


def test_registered_builder_channels() -> None:
    """cond_channels = channels of A, image_shape = shape of B; D sees both concatenated."""
    c = ModelConfig(**{**model_defaults("pix2pix"), "name": "pix2pix", "g_channels": 8, "d_channels": 8})
    g, d = build_models(c, (3, 64, 64), cond_channels=1).values()
    a = torch.rand(2, 1, 64, 64) * 2 - 1
    b = g(a)
    assert b.shape == (2, 3, 64, 64)
    assert d(torch.cat([a, b], 1)).shape == (2, 1, 6, 6)


def test_config_check() -> None:
    base = {"model.name": "pix2pix", "data.name": "sketch"}
    cfg = resolve(overrides={**base, "data.image_size": 64})
    assert cfg.model.g_dropout == 0.5 and cfg.model.max_channels == 512 and cfg.model.norm == "batch"
    with pytest.raises(GankitError, match="data.image_size=100"):
        resolve(overrides={**base, "data.image_size": 100})
    with pytest.raises(GankitError, match="model.patch=42"):
        resolve(overrides={**base, "model.patch": 42})
    with pytest.raises(GankitError, match="model.patch=286"):  # 286 needs images larger than 64
        resolve(overrides={**base, "data.image_size": 64, "model.patch": 286})
    with pytest.raises(GankitError, match="not paired"):
        resolve(overrides={"model.name": "pix2pix", "data.name": "digits", "data.image_size": 32})


# ---------------------------------------------------------------------------------------------------------------------
# paired folders


Colour = tuple[int, int, int]


def _pair_image(path: Path, w: int, h: int, left: Colour, right: Colour, mode: str = "RGB") -> None:
    """A side-by-side pair: the left half (A) one colour, the right half (B) another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (w, h), left)
    img.paste(Image.new("RGB", (w // 2, h), right), (w // 2, 0))
    img.convert(mode).save(path)


def _solid(path: Path, w: int, h: int, colour: tuple[int, int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), colour).convert(mode).save(path)


def _cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(**{"name": "paired", "dir": str(root), "image_size": 32, **kw})  # type: ignore[arg-type]


def _is(x: torch.Tensor, colour: tuple[int, int, int]) -> bool:
    return bool((x == torch.tensor(colour, dtype=torch.uint8).view(1, 3, 1, 1)).all())


def test_side_by_side_splits_a_left_b_right(tmp_path: Path) -> None:
    _pair_image(tmp_path / "train" / "0.png", 64, 32, RED, BLUE)
    _pair_image(tmp_path / "train" / "1.png", 512, 256, RED, BLUE)  # a bigger pair, resized to 64
    _pair_image(tmp_path / "train" / "2.png", 100, 70, RED, BLUE)  # not square: each half is stretched
    data = load_dataset(_cfg(tmp_path, image_size=64))
    assert data.images.shape == (3, 3, 64, 64) and data.targets is not None and data.targets.shape == (3, 3, 64, 64)
    assert _is(data.images, RED) and _is(data.targets, BLUE)
    assert (data.labels == -1).all()


def test_side_by_side_val_falls_back_to_test_and_grayscale(tmp_path: Path) -> None:
    _pair_image(tmp_path / "train" / "0.png", 64, 32, RED, BLUE)
    _pair_image(tmp_path / "test" / "0.png", 64, 32, (200, 200, 200), (50, 50, 50), mode="L")
    _pair_image(tmp_path / "test" / "1.png", 64, 32, (200, 200, 200), (50, 50, 50), mode="L")
    assert paired_splits(tmp_path) == ["train", "val", "test"]
    val = load_dataset(_cfg(tmp_path, split="val"))
    assert val.images.shape == (2, 1, 32, 32)  # all grayscale: one channel per side
    assert (val.images == 200).all() and val.targets is not None and (val.targets == 50).all()
    assert load_dataset(_cfg(tmp_path, split="val", channels=3)).images.shape == (2, 3, 32, 32)
    assert len(load_dataset(_cfg(tmp_path, split="all"))) == 3


def test_side_by_side_without_split_folders(tmp_path: Path) -> None:
    _pair_image(tmp_path / "a.png", 64, 32, RED, BLUE)
    assert len(load_dataset(_cfg(tmp_path))) == 1
    with pytest.raises(GankitError, match="no split folders"):
        load_dataset(_cfg(tmp_path, split="val"))


@pytest.mark.parametrize("layout", ["A/x", "A/train/x", "train/A/x"])
def test_ab_folders_match_by_name(tmp_path: Path, layout: str) -> None:
    for i, stem in enumerate(["cat", "dog"]):
        a = tmp_path / layout.replace("x", f"{stem}.png")
        b = tmp_path / layout.replace("A", "B").replace("x", f"{stem}.jpg" if i else f"{stem}.png")
        _solid(a, 40 + 8 * i, 40, RED, mode="L")  # grayscale A, sizes mixed
        _solid(b, 48, 24, GREEN)
    data = load_dataset(_cfg(tmp_path))
    assert data.images.shape == (2, 1, 32, 32) and data.targets is not None and data.targets.shape == (2, 3, 32, 32)
    assert (data.images == round(0.299 * 255)).all()
    assert (data.targets[:, 1] > 240).all() and (data.targets[:, [0, 2]] < 15).all()  # green, up to JPEG error


def test_btoa_swaps(tmp_path: Path) -> None:
    _pair_image(tmp_path / "train" / "0.png", 64, 32, RED, BLUE)
    data = load_dataset(_cfg(tmp_path, direction="BtoA"))
    assert data.targets is not None and _is(data.images, BLUE) and _is(data.targets, RED)


def test_unmatched_names_are_listed(tmp_path: Path) -> None:
    for stem in ["a", "b", "c", "d", "e"]:
        _solid(tmp_path / "A" / f"{stem}.png", 16, 16, RED)
    _solid(tmp_path / "B" / "a.png", 16, 16, BLUE)
    with pytest.raises(GankitError, match=r"4 file\(s\) in .*A have no match in .*B \(b.png, c.png, d.png, ...\)"):
        load_dataset(_cfg(tmp_path))


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    _pair_image(tmp_path / "val" / "0.png", 64, 32, RED, BLUE)
    with pytest.raises(GankitError, match="train: no images"):
        load_dataset(_cfg(tmp_path))
    with pytest.raises(GankitError, match="no 'train' folder"):
        (tmp_path / "train").rmdir()
        load_dataset(_cfg(tmp_path))


def test_bad_files_are_named(tmp_path: Path) -> None:
    _pair_image(tmp_path / "train" / "odd.png", 65, 32, RED, BLUE)
    with pytest.raises(GankitError, match="odd.png: width 65 is odd"):
        load_dataset(_cfg(tmp_path))
    (tmp_path / "train" / "odd.png").unlink()
    (tmp_path / "train" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(GankitError, match="broken.jpg: cannot decode"):
        load_dataset(_cfg(tmp_path))
    (tmp_path / "train" / "broken.jpg").unlink()
    _pair_image(tmp_path / "train" / "tiny.png", 12, 12, RED, BLUE)
    with pytest.raises(GankitError, match="tiny.png: the left half"):
        load_dataset(_cfg(tmp_path))
    with pytest.raises(GankitError, match="data.dir"):
        load_dataset(DataConfig(name="paired", dir=None))


# ---------------------------------------------------------------------------------------------------------------------
# the embedded sketch set


def test_sketch_default_loads_with_disjoint_splits() -> None:
    # No time limit here: on a busy machine a load is slow, not wrong (its cost: benchmarks, not tests).
    train = load_dataset(DataConfig(name="sketch", split="train", image_size=64))
    val = load_dataset(DataConfig(name="sketch", split="val", image_size=64))
    assert train.images.shape == (SKETCH_TRAIN, 1, 64, 64) and val.images.shape == (SKETCH_VAL, 1, 64, 64)
    assert train.targets is not None and train.targets.shape == (SKETCH_TRAIN, 3, 64, 64)
    assert train.images.float().mean() > 150  # a sketch is mostly white paper
    assert train.targets.float().std(1).mean() > 5  # the target has colour
    # disjoint: every crop box lies inside its split's regions, and the regions do not overlap
    regions = sketch_regions(640)
    for split, n in (("train", SKETCH_TRAIN), ("val", SKETCH_VAL)):
        boxes = sketch_boxes(split, [(427, 640), (427, 640)])
        assert len(boxes) == n and len({s for *_, s in boxes}) > 20  # varied scales
        for _, x, y, s in boxes:
            assert any(x0 <= x and x + s <= x1 for x0, x1 in regions[split]) and y + s <= 427
    ((v0, v1),) = regions["val"]
    assert all(x1 <= v0 or x0 >= v1 for x0, x1 in regions["train"])
    # determinism
    again = load_dataset(DataConfig(name="sketch", split="val", image_size=64))
    assert torch.equal(again.images, val.images)
    assert again.targets is not None and val.targets is not None and torch.equal(again.targets, val.targets)


# ---------------------------------------------------------------------------------------------------------------------
# jitter


def test_augment_pairs_keeps_pairs_aligned_and_is_deterministic() -> None:
    a = torch.rand(5, 3, 32, 32) * 2 - 1
    out_a, out_b = augment_pairs(a, a.clone(), 36, True, torch.Generator().manual_seed(0))
    assert out_a.shape == a.shape and torch.equal(out_a, out_b)
    again, _ = augment_pairs(a, a.clone(), 36, True, torch.Generator().manual_seed(0))
    other, _ = augment_pairs(a, a.clone(), 36, True, torch.Generator().manual_seed(1))
    assert torch.equal(out_a, again) and not torch.equal(out_a, other)
    # different channel counts: b = a's gray copy repeated stays a's copy
    g = a[:, :1]
    ga, gb = augment_pairs(g, g.expand(-1, 3, -1, -1), 40, True, torch.Generator().manual_seed(2))
    assert ga.shape == (5, 1, 32, 32) and gb.shape == (5, 3, 32, 32) and torch.equal(gb, ga.expand(-1, 3, -1, -1))


def test_augment_pairs_without_resize_only_flips() -> None:
    a = torch.rand(8, 1, 16, 16)
    out, _ = augment_pairs(a, a, 16, True, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], a[i].flip(-1)) for i in range(8)]
    assert all(f or torch.equal(out[i], a[i]) for i, f in enumerate(flipped)) and 0 < sum(flipped) < 8
    same, _ = augment_pairs(a, a, 16, False, torch.Generator().manual_seed(0))
    assert torch.equal(same, a)
    assert default_load_size(256) == 286 and default_load_size(64) == 72 and default_load_size(64, 80) == 80
    with pytest.raises(GankitError, match="data.load_size"):
        augment_pairs(a, a, 8, True, torch.Generator())
