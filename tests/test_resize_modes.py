"""data.resize: crop | pad | stretch for image folders and pairs of any aspect ratio."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gankit.cli import main
from gankit.config.schema import DataConfig
from gankit.data import load_dataset


def _wide(path, w=40, h=20):
    """A gray image twice as wide as high: the left half black, the right half white."""
    a = np.zeros((h, w), np.uint8)
    a[:, w // 2:] = 255
    Image.fromarray(a, "L").save(path)


def _folder(tmp_path, **kw):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    _wide(tmp_path / "imgs" / "a.png")
    return load_dataset(DataConfig(name="folder", dir=str(tmp_path / "imgs"), image_size=8, cache="ram", **kw)).images[0, 0].numpy()


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


@pytest.mark.parametrize("sets, needle", [
    (["data.resize=pad"], "square already"),
    (["data.resize=zoom"], "data.resize: expected"),
    (["data.pad_value=300"], "data.pad_value"),
])
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
    sets = {"data.image_size": 32, "data.image_height": 16, "model.patch": 16, "model.g_channels": 8,
            "model.d_channels": 8, "train.batch_size": 2, "train.progress": False, "train.threads": 1}
    rc = main(["train", "--data", "paired", "--data-dir", str(tmp_path), "--steps", "2", "--out", str(out),
               *sum((["--set", f"{k}={v}"] for k, v in sets.items()), [])])
    assert rc == 0
    assert json.loads((out / "run.json").read_text())["image_shape"] == [3, 16, 32]
    rc = main(["translate", str(out), str(tmp_path / "A" / "0.png"), "--out", str(tmp_path / "t")])
    assert rc == 0 and Image.open(tmp_path / "t" / "0.png").size == (32, 16)


@pytest.mark.parametrize("sets, needle", [
    (["data.image_height=16"], "non-square images are for image-to-image models"),
    (["model.name=pix2pix", "data.name=sketch", "data.image_height=16"], "non-square images are for image-to-image models"),
])
def test_non_square_refused_elsewhere(tmp_path, capsys, sets, needle):
    rc = main(["train", "--steps", "1", "--out", str(tmp_path / "o"), *sum((["--set", s] for s in sets), [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
