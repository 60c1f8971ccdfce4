"""data.resize: crop | pad | stretch for image folders and pairs of any aspect ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.config.schema import DataConfig
from gankit.data import load_dataset


def _wide(path, w=40, h=20):
    """A gray image twice as wide as high: the left half black, the right half white."""
    a = np.zeros((h, w), np.uint8)
    a[:, w // 2 :] = 255
    Image.fromarray(a, "L").save(path)


def _folder(tmp_path, **kw):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    _wide(tmp_path / "imgs" / "a.png")
    return (
        load_dataset(DataConfig(name="folder", dir=str(tmp_path / "imgs"), image_size=8, cache="ram", **kw))
        .images[0, 0]
        .numpy()
    )


def test_folder_crop_pad_stretch(tmp_path):
    crop = _folder(tmp_path)  # auto = crop: the central 20x20 square, half black half white
    assert (crop == _folder(tmp_path, resize="crop")).all()
    assert crop[:, 0].max() < 30 and crop[:, -1].min() > 225
    pad = _folder(tmp_path, resize="pad", pad_value=128)
    assert (pad[:2] == 128).all() and (pad[-2:] == 128).all()  # bars above and below the whole (8x4) image
    assert pad[3, 0] < 30 and pad[3, -1] > 225
    stretch = _folder(tmp_path, resize="stretch")
    assert stretch.shape == (8, 8) and not (stretch == 128).any()
    assert stretch[:, :3].max() < 30 and stretch[:, -3:].min() > 225  # left half black across all rows


def test_paired_pad(tmp_path):
    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        _wide(tmp_path / side / "x.png")
    cfg = DataConfig(name="paired", dir=str(tmp_path), image_size=8, resize="pad", pad_value=7, channels=1)
    d = load_dataset(cfg)
    a, b = d.images[0, 0].numpy(), d.targets[0, 0].numpy()
    assert (a[:2] == 7).all() and (a == b).all()
    st = load_dataset(DataConfig(name="paired", dir=str(tmp_path), image_size=8, channels=1)).images[0, 0].numpy()
    assert not (st == 7).any()  # auto = stretch for pairs, as before


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["data.resize=pad"], "square already"),
        (["data.resize=zoom"], "data.resize: expected"),
        (["data.pad_value=300"], "data.pad_value"),
    ],
)
def test_bad_resize_settings(tmp_path, capsys, sets, needle):
    rc = main(["train", "--steps", "1", "--out", str(tmp_path / "o"), *sum((["--set", s] for s in sets), [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err


def test_pix2pix_non_square(tmp_path):
    """pix2pix on 32-wide, 16-high pairs: trains (with the jitter), keeps the shape, and translates at it."""
    import json

    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        for i in range(4):
            a = np.random.default_rng(i).integers(0, 256, (24, 48, 3), dtype=np.uint8)
            Image.fromarray(a if side == "A" else 255 - a, "RGB").save(tmp_path / side / f"{i}.png")
    out = tmp_path / "run"
    sets = {
        "data.image_size": 32,
        "data.image_height": 16,
        "model.patch": 16,
        "model.g_channels": 8,
        "model.d_channels": 8,
        "train.batch_size": 2,
        "train.progress": False,
        "train.threads": 1,
    }
    rc = main(
        [
            "train",
            "--data",
            "paired",
            "--data-dir",
            str(tmp_path),
            "--steps",
            "2",
            "--out",
            str(out),
            *sum((["--set", f"{k}={v}"] for k, v in sets.items()), []),
        ]
    )
    assert rc == 0
    assert json.loads((out / "run.json").read_text())["image_shape"] == [3, 16, 32]
    rc = main(["translate", str(out), str(tmp_path / "A" / "0.png"), "--out", str(tmp_path / "t")])
    assert rc == 0 and Image.open(tmp_path / "t" / "0.png").size == (32, 16)


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["data.image_height=16"], "non-square images are for your own data"),  # the embedded digits
        (["model.name=pix2pix", "data.name=sketch", "data.image_height=16"], "non-square images are for your own data"),
        (["data.name=mnist", "data.image_size=48", "data.image_height=16"], "both sides powers of two"),
        (["data.name=mnist", "data.image_size=28", "data.image_height=14"], "e.g. image_size=32, image_height=16"),
        (
            ["data.name=mnist", "model.name=dcgan-tf", "data.image_size=28", "data.image_height=30"],
            "data.image_height=30",
        ),
    ],
)
def test_non_square_refused_elsewhere(tmp_path, capsys, sets, needle):
    rc = main(["train", "--steps", "1", "--out", str(tmp_path / "o"), *sum((["--set", s] for s in sets), [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err


def test_folder_non_square_in_ram_and_memmap(tmp_path):
    """data.image_height: a folder decoded to image_size wide x image_height high, the same bytes in RAM and mapped."""
    (tmp_path / "imgs").mkdir()
    _wide(tmp_path / "imgs" / "a.png")  # 40x20: the 16x8 target has its aspect ratio, so crop keeps all of it
    cfg = DataConfig(name="folder", dir=str(tmp_path / "imgs"), image_size=16, image_height=8, cache="ram")
    ram = load_dataset(cfg).images
    assert ram.shape == (1, 1, 8, 16)
    assert ram[0, 0, :, :7].max() < 30 and ram[0, 0, :, 9:].min() > 225  # the left half black, the right half white
    tall = load_dataset(
        DataConfig(
            name="folder",
            dir=str(tmp_path / "imgs"),
            image_size=8,
            image_height=16,
            cache="ram",
            resize="pad",
            pad_value=128,
        )
    ).images[0, 0]
    assert tall.shape == (16, 8) and (tall[:6] == 128).all() and (tall[-6:] == 128).all()  # bars above and below
    mapped = load_dataset(
        DataConfig(
            name="folder",
            dir=str(tmp_path / "imgs"),
            image_size=16,
            image_height=8,
            cache="memmap",
            cache_dir=str(tmp_path / "cache"),
        )
    ).images
    assert torch.equal(torch.as_tensor(np.asarray(mapped)), ram)


def _colour_folder(root, size=(48, 24)):
    """train/ and test/, 8 random colour images each, 2:1 wide."""
    for split, n in (("train", 8), ("test", 8)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            a = np.random.default_rng([i, split == "test"]).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(a, "RGB").save(root / split / f"{i}.png")


@pytest.mark.slow
def test_dcgan_non_square_end_to_end(tmp_path):
    """A DCGAN on 32-wide, 16-high images: trains, records the shape, samples, grids, scores, exports at that shape,
    and resumes exactly."""
    import json

    from safetensors.torch import load_file

    _colour_folder(tmp_path / "imgs")
    sets = {
        "data.image_size": 32,
        "data.image_height": 16,
        "model.g_channels": 4,
        "model.d_channels": 4,
        "model.z_dim": 8,
        "train.batch_size": 4,
        "train.progress": False,
        "train.threads": 1,
        "train.ema_half_life": 0.1,
    }
    flags = [
        "--data",
        "folder",
        "--data-dir",
        str(tmp_path / "imgs"),
        *sum((["--set", f"{k}={v}"] for k, v in sets.items()), []),
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *flags, "--steps", "4", "--out", str(a)]) == 0
    assert json.loads((a / "run.json").read_text())["image_shape"] == [3, 16, 32]
    grid = sorted((a / "samples").glob("step-*.png"))[-1]
    with Image.open(grid) as im:
        assert im.size[0] > im.size[1]  # 8 x 8 wide images: a wide grid
    assert main(["sample", str(a), "--n", "8", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (8, 16, 32, 3)
    assert (
        main(["eval", str(a), "--n", "8", "--features", "pixels", "--no-parzen", "--out", str(tmp_path / "e.json")])
        == 0
    )
    assert np.isfinite(json.loads((tmp_path / "e.json").read_text())["fd"])
    assert (
        main(
            [
                "eval",
                "--samples",
                str(tmp_path / "s.npy"),
                "--data",
                "folder",
                "--data-dir",
                str(tmp_path / "imgs"),
                "--features",
                "pixels",
                "--no-parzen",
                "--out",
                str(tmp_path / "n.json"),
            ]
        )
        == 0
    )
    assert main(["export", str(a), "--format", "torchscript", "--out", str(tmp_path / "g.pt")]) == 0
    assert torch.jit.load(str(tmp_path / "g.pt"))(torch.randn(5, 8)).shape == (5, 3, 16, 32)
    # exact resume: 2 steps, then 2 more from the checkpoint, give the 4-step run's weights bit for bit
    assert main(["train", *flags, "--steps", "2", "--out", str(b)]) == 0
    assert main(["train", "--resume", str(b), "--steps", "4"]) == 0
    files = sorted(p.name for p in (a / "checkpoints" / "final").glob("*.safetensors"))
    assert {"g.safetensors", "d.safetensors", "ema.safetensors"} <= set(files)
    for name in files:  # weights, EMA and optimizer states
        want, got = (load_file(str(r / "checkpoints" / "final" / name)) for r in (a, b))
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), name
