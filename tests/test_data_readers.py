"""Readers (IDX, CIFAR pickles, image folders), load_dataset on the embedded digits, and the Batcher."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.config import DataConfig
from gankit.data import Batcher, DATASETS, ImageData, load_dataset
from gankit.data.cifar import safe_unpickle
from gankit.data.idx import read_idx
from gankit.core.errors import GankitError

# ---------------------------------------------------------------------------------------------------------------------
# IDX


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file: 0, 0, type code, ndim, big-endian uint32 dims, big-endian values."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    out = read_idx(write_idx(tmp_path / "x", arr, gz))
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


@pytest.mark.parametrize("code", [0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_idx_other_types_are_native_endian(tmp_path: Path, code: int) -> None:
    arr = np.arange(-6, 6).reshape(3, 4)
    (tmp_path / "x").write_bytes(idx_bytes(arr, code))
    out = read_idx(tmp_path / "x")
    assert out.dtype.isnative and np.array_equal(out, arr)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x01\x02" + idx_bytes(np.zeros(3))[2:])
    with pytest.raises(GankitError, match="magic.*x"):
        read_idx(tmp_path / "x")
    (tmp_path / "y").write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(GankitError, match="type code 0x07"):
        read_idx(tmp_path / "y")


def test_idx_truncated_body(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((4, 28, 28)))
    (tmp_path / "x").write_bytes(data[:-10])
    with pytest.raises(GankitError, match=r"body has .* bytes .* needs"):
        read_idx(tmp_path / "x")
    (tmp_path / "h").write_bytes(data[:9])  # header cut inside the dims
    with pytest.raises(GankitError, match="header cut short"):
        read_idx(tmp_path / "h")
    (tmp_path / "t.gz").write_bytes(gzip.compress(data)[:-30])  # truncated gzip stream
    with pytest.raises(GankitError, match="t.gz"):
        read_idx(tmp_path / "t.gz")


def test_idx_wrong_dims(tmp_path: Path) -> None:
    # A header that claims more values than the body holds
    body = np.zeros(2 * 28 * 28, np.uint8).tobytes()
    (tmp_path / "x").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 3, 28, 28) + body)
    with pytest.raises(GankitError, match=r"\(3, 28, 28\)"):
        read_idx(tmp_path / "x")


def _mnist_dir(tmp_path: Path, n: int = 7, gz: bool = True, prefix: str = "t10k") -> Path:
    rng = np.random.default_rng(1)
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), gz)
    write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8), gz)
    return tmp_path


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_datasets_from_dir(tmp_path: Path, name: str, gz: bool) -> None:
    d = _mnist_dir(tmp_path, gz=gz)
    data = DATASETS.get(name).load(DataConfig(name=name, dir=str(d), split="val"))  # val = test
    assert data.images.shape == (7, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [i % 10 for i in range(7)]
    assert data.num_classes == 10 and data.name == name
    assert DATASETS.get(name).channels == 1


def test_idx_all_split_concatenates_train_then_test(tmp_path: Path) -> None:
    _mnist_dir(tmp_path, n=5, prefix="train")
    _mnist_dir(tmp_path, n=3, prefix="t10k", gz=False)
    data = load_dataset(DataConfig(name="mnist", dir=str(tmp_path), split="all", image_size=32))
    assert data.images.shape == (8, 1, 32, 32)


def test_idx_missing_split_in_user_dir_says_what_to_put_where(tmp_path: Path) -> None:
    _mnist_dir(tmp_path)  # only the test split
    for download in (False, True):  # never downloads into a user's folder
        with pytest.raises(GankitError) as err:
            load_dataset(DataConfig(name="mnist", dir=str(tmp_path), split="train", download=download))
        msg = str(err.value)
        assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg and str(tmp_path) in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(GankitError, match="not a folder"):
        load_dataset(DataConfig(name="mnist", dir=str(tmp_path / "nope")))


def test_idx_images_and_labels_must_agree(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8), gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8), gz=False)
    with pytest.raises(GankitError, match="3 labels.*4 images"):
        load_dataset(DataConfig(name="mnist", dir=str(tmp_path), split="test"))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((4, 2, 2), np.uint8), gz=False)  # wrong dims
    with pytest.raises(GankitError, match="labels-idx1-ubyte: expected uint8 labels"):
        load_dataset(DataConfig(name="mnist", dir=str(tmp_path), split="test"))


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR-10


def cifar_batch(n: int, seed: int = 0) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


class _Py2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes as Python 2 strings (BINSTRING), as the official batches were written by cPickle."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=2).dump(obj)
    # numpy 1 (and so the official files) named the reconstructor numpy.core.multiarray
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar(folder: Path, n: int = 4, py2: bool = False) -> dict[str, dict[bytes, object]]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    batches = {name: cifar_batch(n, seed) for seed, name in enumerate(names)}
    for name, batch in batches.items():
        (folder / name).write_bytes(py2_pickle(batch) if py2 else pickle.dumps(batch, protocol=4))
    return batches


@pytest.mark.parametrize("py2", [False, True])
def test_cifar_round_trip(tmp_path: Path, py2: bool) -> None:
    batches = write_cifar(tmp_path / "cifar-10-batches-py", py2=py2)
    data = DATASETS.get("cifar10").load(DataConfig(name="cifar10", dir=str(tmp_path), split="train"))
    assert data.images.shape == (20, 3, 32, 32) and data.images.dtype == torch.uint8
    first = batches["data_batch_1"]
    assert np.array_equal(data.images[:4].reshape(4, 3072).numpy(), first[b"data"])
    assert data.labels[:4].tolist() == first[b"labels"]
    assert data.class_names[0] == "airplane" and data.class_names[-1] == "truck"
    test = DATASETS.get("cifar10").load(
        DataConfig(name="cifar10", dir=str(tmp_path / "cifar-10-batches-py"), split="test")
    )
    assert test.labels.tolist() == batches["test_batch"][b"labels"]  # batches directly in data.dir work too


def test_cifar_reads_the_archive_without_extracting(tmp_path: Path) -> None:
    write_cifar(tmp_path / "src" / "cifar-10-batches-py", n=2)
    user = tmp_path / "user"
    user.mkdir()
    with tarfile.open(user / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = load_dataset(DataConfig(name="cifar10", dir=str(user), split="all"))
    assert data.images.shape == (12, 3, 32, 32)
    assert [p.name for p in user.iterdir()] == ["cifar-10-python.tar.gz"]


def test_cifar_wrong_shape(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    bad = cifar_batch(3)
    bad[b"data"] = np.zeros((3, 1024), np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad, protocol=3))
    with pytest.raises(GankitError, match=r"test_batch: expected b'data' as uint8 \(N, 3072\)"):
        load_dataset(DataConfig(name="cifar10", dir=str(tmp_path), split="test"))
    bad = cifar_batch(3)
    bad[b"labels"] = [1, 2]
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad, protocol=3))
    with pytest.raises(GankitError, match="test_batch: expected b'labels'"):
        load_dataset(DataConfig(name="cifar10", dir=str(tmp_path), split="test"))


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    write_cifar(tmp_path)
    payload = pickle.dumps({b"data": _Evil(marker), b"labels": []}, protocol=2)
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(GankitError, match="test_batch.*refusing to load"):
        load_dataset(DataConfig(name="cifar10", dir=str(tmp_path), split="test"))
    assert not marker.exists()
    # Other ways of reaching a callable are refused as well
    for evil in (pickle.dumps(print), pickle.dumps(np.load), pickle.dumps(np.zeros(2), protocol=5)):
        with pytest.raises(GankitError, match="refusing"):
            safe_unpickle(evil, "x")


def test_cifar_missing_files_error(tmp_path: Path) -> None:
    with pytest.raises(GankitError, match=r"data_batch_1\.\.data_batch_5.*cifar-10-python\.tar\.gz"):
        load_dataset(DataConfig(name="cifar10", dir=str(tmp_path), split="train"))
    with pytest.raises(GankitError, match="data.download"):
        load_dataset(DataConfig(name="cifar10", cache_dir=str(tmp_path), download=False))


# ---------------------------------------------------------------------------------------------------------------------
# Image folders


def _save(path: Path, img: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def mixed_folder(root: Path) -> None:
    """Two classes of small images in assorted modes and sizes."""
    rgba = Image.new("RGBA", (20, 12), (255, 0, 0, 0))  # fully transparent red -> white
    _save(root / "cats" / "a_rgba.png", rgba)
    pal = Image.new("P", (16, 16))
    pal.putpalette([0, 0, 255] * 256)
    _save(root / "cats" / "b_palette.gif", pal)
    gray16 = Image.fromarray(np.full((10, 30), 65535, np.uint16))  # 'I;16', white
    _save(root / "dogs" / "c_16bit.png", gray16)
    _save(root / "dogs" / "d_gray.JPG", Image.new("L", (40, 40), 0))
    _save(root / "dogs" / "nested" / "e_la.png", Image.new("LA", (9, 9), (0, 255)))
    (root / "dogs" / "notes.txt").write_text("not an image")


def test_folder_classes_and_modes(tmp_path: Path) -> None:
    mixed_folder(tmp_path)
    data = load_dataset(DataConfig(name="folder", dir=str(tmp_path), image_size=8))
    assert data.images.shape == (5, 3, 8, 8) and data.images.dtype == torch.uint8  # any colour -> RGB
    assert data.class_names == ["cats", "dogs"] and data.labels.tolist() == [0, 0, 1, 1, 1]
    px = data.images[:, :, 4, 4].tolist()
    assert px[0] == [255, 255, 255]  # transparent composited on white
    assert px[1] == [0, 0, 255]  # palette expanded
    assert px[2] == [255, 255, 255]  # 16-bit white scaled to 255, not clipped
    assert px[3] == [0, 0, 0]
    assert px[4] == [0, 0, 0]  # opaque black LA, found one folder deeper


def test_folder_channels(tmp_path: Path) -> None:
    mixed_folder(tmp_path / "mixed")
    gray = load_dataset(DataConfig(name="folder", dir=str(tmp_path / "mixed"), image_size=6, channels=1))
    assert gray.images.shape == (5, 1, 6, 6)
    assert gray.images[1, 0, 3, 3] == round(0.114 * 255)  # blue palette -> luma
    only_gray = tmp_path / "gray"
    _save(only_gray / "a.png", Image.fromarray(np.full((7, 7), 1000, np.uint16)))
    _save(only_gray / "b.png", Image.new("LA", (5, 5), (90, 255)))
    pal = Image.new("P", (6, 6), 3)
    pal.putpalette([v for i in range(256) for v in (i, i, i)])  # a gray palette stays gray
    _save(only_gray / "c.gif", pal)
    auto = load_dataset(DataConfig(name="folder", dir=str(only_gray), image_size=6))
    assert auto.images.shape == (3, 1, 6, 6)  # all gray -> one channel
    assert auto.images[:, 0, 3, 3].tolist() == [round(1000 / 257), 90, 3]
    rgb = load_dataset(DataConfig(name="folder", dir=str(only_gray), image_size=6, channels=3))
    assert rgb.images.shape == (3, 3, 6, 6) and rgb.images[1, :, 0, 0].tolist() == [90, 90, 90]


def test_folder_unlabelled_resize_and_crop(tmp_path: Path) -> None:
    img = np.zeros((20, 60, 3), np.uint8)
    img[:, :10] = 255  # cropped away (only the center 20x20 stays), and beyond the filter's reach
    _save(tmp_path / "wide.png", Image.fromarray(img))
    _save(tmp_path / "small.bmp", Image.new("RGB", (3, 5), (10, 20, 30)))
    data = load_dataset(DataConfig(name="folder", dir=str(tmp_path), image_size=10))
    assert data.images.shape == (2, 3, 10, 10)
    assert data.labels.tolist() == [-1, -1] and data.class_names == []
    assert data.images[1].max() == 0  # wide.png (sorted after small.bmp) is black after the crop
    assert data.images[0, :, 5, 5].tolist() == [10, 20, 30]


def test_folder_corrupt_image_is_named(tmp_path: Path) -> None:
    _save(tmp_path / "ok.png", Image.new("RGB", (8, 8)))
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "PNG")
    (tmp_path / "broken.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(GankitError, match="broken.png.*remove"):
        load_dataset(DataConfig(name="folder", dir=str(tmp_path), image_size=8))
    (tmp_path / "broken.png").write_bytes(b"this is text")
    with pytest.raises(GankitError, match="broken.png"):
        load_dataset(DataConfig(name="folder", dir=str(tmp_path), image_size=8))


def test_folder_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(GankitError, match="no images"):
        load_dataset(DataConfig(name="folder", dir=str(tmp_path)))
    with pytest.raises(GankitError, match="--data-dir"):
        load_dataset(DataConfig(name="folder"))
    with pytest.raises(GankitError, match="not a folder"):
        load_dataset(DataConfig(name="folder", dir=str(tmp_path / "nope")))


def test_folder_loose_images_next_to_classes(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "x.png", Image.new("L", (4, 4)))
    _save(tmp_path / "stray.png", Image.new("L", (4, 4)))
    with pytest.raises(GankitError, match="stray.png"):
        load_dataset(DataConfig(name="folder", dir=str(tmp_path), image_size=4))


def test_folder_splits(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            _save(tmp_path / split / ("a" if i % 2 else "b") / f"{i}.png", Image.new("L", (4, 4), 10 * i))
    cfg = DataConfig(name="folder", dir=str(tmp_path), image_size=4)
    train = load_dataset(cfg)
    test = load_dataset(dataclasses.replace(cfg, split="test"))
    everything = load_dataset(dataclasses.replace(cfg, split="all"))
    assert (len(train), len(test), len(everything)) == (3, 2, 5)
    assert train.class_names == test.class_names == ["a", "b"]
    flat = tmp_path / "train" / "a"
    with pytest.raises(GankitError, match="data.split=test"):
        load_dataset(dataclasses.replace(cfg, dir=str(flat), split="test"))


def test_folder_limit_decodes_only_the_first(tmp_path: Path) -> None:
    for i in range(5):
        _save(tmp_path / f"{i}.png", Image.new("L", (4, 4), i))
    (tmp_path / "9_broken.png").write_bytes(b"never decoded")
    data = load_dataset(DataConfig(name="folder", dir=str(tmp_path), image_size=4, limit=3))
    assert data.images[:, 0, 0, 0].tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------------------------
# load_dataset on the embedded digits, and the Batcher


@pytest.mark.parametrize("size", [32, 28])
def test_digits(size: int) -> None:
    data = load_dataset(DataConfig(name="digits", split="train", image_size=size))
    test = load_dataset(DataConfig(name="digits", split="test", image_size=size))
    assert len(data) + len(test) == 1797 and abs(len(data) - 0.8 * 1797) < 1  # an 80/20 cut
    assert data.images.shape == (len(data), 1, size, size) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and sorted(data.labels.unique().tolist()) == list(range(10))
    assert data.images.max() > 200  # ink, not a blank set


def _indexed(n: int) -> ImageData:
    """Image i is filled with the value i, so a batch reveals which items it holds."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageData(images, torch.arange(n), "indexed", [])


def test_batcher_covers_an_epoch_without_repeats() -> None:
    b = Batcher(_indexed(10), batch_size=3, seed=1)
    epochs = []
    for _ in range(2):
        batches = [b.next() for _ in range(3)]
        seen = torch.cat([labels for _, labels, _ in batches])
        assert len(set(seen.tolist())) == 9  # no repeats; the ragged tail (1 item) is dropped
        assert all(torch.equal(imgs[:, 0, 0, 0].long(), labels) and tgt is None for imgs, labels, tgt in batches)
        epochs.append(seen.tolist())
    assert b.epoch == 1 and epochs[0] != epochs[1]  # each epoch has its own order


def test_batcher_state_dict_resumes_the_same_batches() -> None:
    data = _indexed(11)
    a = Batcher(data, batch_size=4, seed=7)
    for _ in range(3):  # into the second epoch
        a.next()
    state = a.state_dict()
    expected = [a.next()[1].tolist() for _ in range(5)]
    b = Batcher(data, batch_size=4, seed=0)
    b.load_state_dict(state)
    assert [b.next()[1].tolist() for _ in range(5)] == expected


def test_batcher_batch_larger_than_data() -> None:
    with pytest.raises(GankitError, match="batch_size"):
        Batcher(_indexed(3), batch_size=4, seed=0)
