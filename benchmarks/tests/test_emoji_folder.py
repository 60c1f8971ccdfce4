"""benchmarks/emoji_folder.py: the npm emoji package becomes a class-folder set gankit's folder reader labels."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, where the scripts are
from emoji_folder import IMAGES, folder_name, write_folder  # noqa: E402

from gankit.config import DataConfig  # noqa: E402
from gankit.data import load_dataset  # noqa: E402


def _png(rgba: tuple[int, int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), rgba).save(buf, "PNG")
    return buf.getvalue()


def _package(path: Path) -> None:
    index = [
        {"image": "1f600.png", "category": "Smileys & Emotion", "has_img_google": True},
        {
            "image": "1f44b.png",
            "category": "People & Body",
            "has_img_google": True,
            "skin_variations": {
                "1F3FB": {"image": "1f44b-1f3fb.png", "has_img_google": True},
                "1F3FF": {"image": "1f44b-1f3ff.png", "has_img_google": False},
            },
        },
        {"image": "1f3fb.png", "category": "Component", "has_img_google": True},  # a skin-tone swatch: left out
        {"image": "1f9ff.png", "category": "Objects", "has_img_google": False},  # no Google image: not listed
    ]
    files = {
        "package/emoji.json": json.dumps(index).encode(),
        "package/README.md": b"readme",
        IMAGES + "1f600.png": _png((255, 200, 0, 255)),
        IMAGES + "1f44b.png": _png((200, 150, 100, 255)),
        IMAGES + "1f44b-1f3fb.png": _png((250, 220, 200, 255)),
        IMAGES + "1f3fb.png": _png((250, 220, 200, 255)),
        IMAGES + "1f44b-1f3ff.png": _png((90, 60, 40, 255)),
        IMAGES + "1f9ff.png": _png((0, 0, 255, 0)),
        "package/img/google/sheets/64.png": _png((0, 0, 0, 255)),
        IMAGES + "../../../escape.png": _png((0, 0, 0, 255)),
    }  # listed below: must still not leave the folder
    index.append({"image": "../../../escape.png", "category": "Symbols", "has_img_google": True})
    files["package/emoji.json"] = json.dumps(index).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_folder_names_are_plain():
    assert folder_name("Smileys & Emotion") == "smileys-emotion"
    assert folder_name("People & Body") == "people-body"


def test_package_becomes_labelled_class_folders(tmp_path: Path):
    _package(tmp_path / "pkg.tgz")
    counts = write_folder(tmp_path / "pkg.tgz", tmp_path / "emoji")
    # the skin-tone variant with a Google image goes with its emoji; swatches, images the index says Google lacks,
    # and sheets are left out
    assert counts == {"people-body": 2, "smileys-emotion": 1}
    assert not (tmp_path / "escape.png").exists() and not list(tmp_path.rglob("escape.png"))
    assert sorted(p.name for p in (tmp_path / "emoji" / "people-body").iterdir()) == ["1f44b-1f3fb.png", "1f44b.png"]
    data = load_dataset(DataConfig(name="folder", dir=str(tmp_path / "emoji"), split="all", image_size=32))
    assert data.class_names == ["people-body", "smileys-emotion"]
    assert data.labels.tolist() == [0, 0, 1] and tuple(data.images.shape) == (3, 3, 32, 32)
    assert np.array_equal(data.images[2, :, 0, 0].numpy(), [255, 200, 0])  # the smiley's colour, opaque
