"""The memory-mapped cache (data.cache), untrusted sizes in .npy/IDX/CIFAR files, and loop-safe folder walks."""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_readers import idx_bytes, write_cifar, write_idx

from gankit.config import DataConfig
from gankit.data import Batcher, load_dataset, memmap, shard_indices
from gankit.data.cifar import safe_unpickle
from gankit.data.idx import read_idx
from gankit.data.safety import (
    check_regular_file,
    load_npy_checked,
    read_npy_header_checked,
)
from gankit.core.errors import GankitError
from gankit.eval import load_samples_npy


def _img(path: Path, rgb: bool, seed: int, size: tuple[int, int] = (11, 9)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3) if rgb else (size[1], size[0]), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def _classes(root: Path, n: int = 4, rgb: bool = True) -> None:
    for k, cls in enumerate(("cls_a", "cls_b")):
        for i in range(n):
            _img(root / cls / f"{cls[-1]}{i}.png", rgb, seed=10 * k + i)


def _same(a, b) -> None:
    assert a.images.dtype == b.images.dtype == torch.uint8
    assert a.images.shape == b.images.shape and torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels) and a.class_names == b.class_names


# ---------------------------------------------------------------------------------------------------------------------
# memmap cache


def test_folder_memmap_is_byte_identical_to_ram_and_batches_match(tmp_path: Path) -> None:
    _classes(tmp_path / "src", n=6)
    base = DataConfig(name="folder", dir=str(tmp_path / "src"), image_size=8, cache_dir=str(tmp_path / "cache"))
    ram = load_dataset(dataclasses.replace(base, cache="ram"))
    mapped = load_dataset(dataclasses.replace(base, cache="memmap"))
    assert not ram.mapped and mapped.mapped and str(tmp_path / "cache") in str(mapped.cache_path)
    _same(ram, mapped)
    b_ram, b_map = Batcher(ram, 5, seed=3), Batcher(mapped, 5, seed=3)
    for _ in range(7):  # past an epoch boundary (12 images, 2 batches per epoch)
        for x, y in zip(b_ram.next(), b_map.next()):
            assert (x is None and y is None) or torch.equal(x, y)


def test_folder_memmap_auto_gray_and_widening(tmp_path: Path) -> None:
    gray = tmp_path / "gray"
    for i in range(3):
        _img(gray / f"g{i}.png", rgb=False, seed=i)
    cfg = DataConfig(name="folder", dir=str(gray), image_size=6, cache="memmap", cache_dir=str(tmp_path / "c"))
    data = load_dataset(cfg)
    assert data.images.shape == (3, 1, 6, 6)  # all gray stays one channel
    _same(data, load_dataset(dataclasses.replace(cfg, cache="ram")))
    # gray files sort first, then a colour one: the gray rows decoded before it are widened as R = G = B
    _img(gray / "z_colour.png", rgb=True, seed=9)
    wide = load_dataset(cfg)
    assert wide.images.shape == (4, 3, 6, 6)
    assert torch.equal(wide.images[:3, 0], data.images[:, 0]) and torch.equal(wide.images[:3, 2], data.images[:, 0])
    _same(wide, load_dataset(dataclasses.replace(cfg, cache="ram")))


def test_memmap_reused_then_rebuilt_when_a_source_changes(tmp_path: Path) -> None:
    _classes(tmp_path / "src", n=2)
    cfg = DataConfig(
        name="folder", dir=str(tmp_path / "src"), image_size=8, cache="memmap", cache_dir=str(tmp_path / "cache")
    )
    first = load_dataset(cfg)
    ino = os.stat(first.cache_path / "images.npy").st_ino
    again = load_dataset(cfg)
    assert os.stat(again.cache_path / "images.npy").st_ino == ino  # reused, not rebuilt
    _img(tmp_path / "src" / "cls_a" / "a0.png", rgb=True, seed=99)  # new content, new size/mtime
    changed = load_dataset(cfg)
    assert changed.cache_path == first.cache_path and os.stat(changed.cache_path / "images.npy").st_ino != ino
    _same(changed, load_dataset(dataclasses.replace(cfg, cache="ram")))
    assert not torch.equal(changed.images[0], first.images[0])  # the old map, still open, kept its old bytes
    other_size = load_dataset(dataclasses.replace(cfg, image_size=4))  # other decode settings: another cache
    assert other_size.cache_path != first.cache_path and other_size.images.shape[-1] == 4


def test_memmap_build_killed_midway_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _classes(tmp_path / "src", n=2)
    cfg = DataConfig(
        name="folder", dir=str(tmp_path / "src"), image_size=8, cache="memmap", cache_dir=str(tmp_path / "cache")
    )
    from gankit.data import folder as folder_mod

    real = folder_mod._decode
    calls = {"n": 0}

    def dies_on_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a build
        return real(*a, **k)

    monkeypatch.setattr(folder_mod, "_decode", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(cfg)
    root = tmp_path / "cache" / "memmap"
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []  # no half cache, no temp folder
    monkeypatch.setattr(folder_mod, "_decode", real)
    _same(load_dataset(cfg), load_dataset(dataclasses.replace(cfg, cache="ram")))


def test_memmap_removes_builds_of_dead_processes(tmp_path: Path) -> None:
    import socket

    _classes(tmp_path / "src", n=1)
    cfg = DataConfig(
        name="folder", dir=str(tmp_path / "src"), image_size=8, cache="memmap", cache_dir=str(tmp_path / "cache")
    )
    plan = memmap.CachePlan(
        "folder",
        "folder",
        tmp_path / "src",
        [],
        {"reader": "folder", "split": "train", "image_size": 8, "channels": 0, "limit": 0},
        0,
        lambda alloc: None,
    )  # type: ignore[arg-type,return-value]
    folder = memmap.cache_folder(tmp_path / "cache", plan)
    dead = folder.parent / f".tmp-{folder.name}-{socket.gethostname()}-{2**22 + 12345}"  # above pid_max: never alive
    (dead / "x").mkdir(parents=True)
    load_dataset(cfg)
    assert not dead.exists()


def test_idx_and_cifar_memmap_equal_ram(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "m").mkdir()
    write_idx(tmp_path / "m" / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (7, 28, 28)).astype(np.uint8), True)
    write_idx(tmp_path / "m" / "t10k-labels-idx1-ubyte.gz", (np.arange(7) % 10).astype(np.uint8), True)
    write_cifar(tmp_path / "c" / "cifar-10-batches-py", n=3)
    for name, d, size, ch in (
        ("mnist", "m", 32, 0),
        ("mnist", "m", 16, 3),
        ("cifar10", "c", 20, 1),
        ("cifar10", "c", 32, 0),
    ):
        cfg = DataConfig(
            name=name,
            dir=str(tmp_path / d),
            split="test",
            image_size=size,
            channels=ch,
            cache_dir=str(tmp_path / "cache"),
        )
        mapped = load_dataset(dataclasses.replace(cfg, cache="memmap"))
        assert mapped.mapped
        _same(mapped, load_dataset(dataclasses.replace(cfg, cache="ram")))
        limited = load_dataset(dataclasses.replace(cfg, cache="memmap", limit=2))
        assert limited.mapped and len(limited) == 2 and torch.equal(limited.images, mapped.images[:2])


def test_memmap_refused_for_readers_without_a_cache_and_auto_rule(tmp_path: Path) -> None:
    with pytest.raises(GankitError, match="data.cache=memmap is not available for data set 'digits'"):
        load_dataset(DataConfig(name="digits", cache="memmap"))
    assert not load_dataset(DataConfig(name="digits", cache="auto")).mapped
    gib = 1 << 30
    assert memmap.choose_cache("auto", 2 * gib, available=100 * gib) == "memmap"  # over 1 GiB
    assert memmap.choose_cache("auto", gib // 2, available=gib) == "memmap"  # over 25% of available memory
    assert memmap.choose_cache("auto", gib // 8, available=gib) == "ram"
    assert memmap.choose_cache("ram", 10 * gib, available=gib) == "ram"


def test_batcher_gathers_only_the_given_indices_and_shards_partition_a_batch(tmp_path: Path) -> None:
    _classes(tmp_path / "src", n=5)
    data = load_dataset(
        DataConfig(
            name="folder", dir=str(tmp_path / "src"), image_size=4, cache="memmap", cache_dir=str(tmp_path / "cache")
        )
    )
    whole, parts = Batcher(data, 7, seed=1), Batcher(data, 7, seed=1)
    for _ in range(3):
        x, y, _ = whole.next()
        idx = parts.next_indices()
        shards = [shard_indices(idx, r, 3) for r in range(3)]
        assert [len(s) for s in shards] == [3, 2, 2]  # 7 over 3 ranks: the first 7 % 3 ranks take one more
        assert torch.equal(torch.cat(shards), idx)
        got = [parts.gather(s) for s in shards]
        assert torch.equal(torch.cat([g[0] for g in got]), x) and torch.equal(torch.cat([g[1] for g in got]), y)
    assert whole.state_dict() == parts.state_dict()


# ---------------------------------------------------------------------------------------------------------------------
# symlinks in image folders


def test_folder_loop_and_links_out_of_the_root_are_not_followed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "data"
    _classes(root, n=4)
    _img(tmp_path / "outside" / "o0.png", rgb=True, seed=50)
    (root / "cls_a" / "up").symlink_to("..")  # loop through the root
    (root / "cls_b" / "self").symlink_to(".")  # a folder linking to itself
    (root / "cls_a" / "into_b").symlink_to("../cls_b")  # would file cls_b's images under cls_a
    (root / "cls_b" / "out").symlink_to(tmp_path / "outside")  # out of the data root
    (root / "cls_c").symlink_to(tmp_path / "outside")  # a whole class folder out of the root
    (root / "cls_a" / "a0_again.png").symlink_to("a0.png")  # the same image twice
    os.mkfifo(root / "cls_a" / "pipe.png")  # named like an image: must be skipped, not read forever
    data = load_dataset(DataConfig(name="folder", dir=str(root), image_size=4, cache="ram"))
    assert len(data) == 8 and data.labels.tolist() == [0] * 4 + [1] * 4 and data.class_names == ["cls_a", "cls_b"]
    err = capsys.readouterr().err
    assert "did not follow directory link" in err and "more" in err
    mapped = load_dataset(
        DataConfig(name="folder", dir=str(root), image_size=4, cache="memmap", cache_dir=str(tmp_path / "cache"))
    )
    _same(mapped, data)


def test_folder_links_inside_a_class_are_read_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _img(root / "cls" / "deep" / "x.png", rgb=True, seed=1)
    _img(root / "cls" / "y.png", rgb=True, seed=2)
    (root / "cls" / "alias").symlink_to("deep")  # sorted before deep/: read through the link, deep/ not again
    data = load_dataset(DataConfig(name="folder", dir=str(root), image_size=4, cache="ram"))
    assert len(data) == 2


def test_paired_links_are_not_read_twice_or_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    for i in range(3):
        _img(root / "train" / f"p{i}.png", rgb=True, seed=i, size=(16, 8))
    (root / "val").symlink_to("train")  # the same pairs again
    all_ = load_dataset(DataConfig(name="paired", dir=str(root), split="all", image_size=8))
    assert len(all_) == 3
    ab = tmp_path / "ab"
    _img(tmp_path / "elsewhere" / "p0.png", rgb=True, seed=5)
    _img(ab / "A" / "p0.png", rgb=True, seed=6)
    (ab / "B").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(GankitError, match="no image pairs"):
        load_dataset(DataConfig(name="paired", dir=str(ab), image_size=8))


# ---------------------------------------------------------------------------------------------------------------------
# sizes claimed by files, and files that are not regular files


def _forged_npy(path: Path, shape: tuple[int, ...], dtype: str = "|u1", extra: bytes = b"\0" * 64) -> Path:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(extra)
    return path


def test_npy_header_claiming_a_billion_images_is_refused_before_allocating(tmp_path: Path) -> None:
    p = _forged_npy(tmp_path / "huge.npy", (10**9, 28, 28, 1))
    with pytest.raises(GankitError, match=r"huge\.npy.*claims shape \(1000000000, 28, 28, 1\).*holds"):
        load_samples_npy(p)
    with pytest.raises(GankitError, match="huge.npy"):
        read_npy_header_checked(p)
    short = _forged_npy(tmp_path / "short.npy", (2, 8, 8, 1), extra=b"\0" * 10)  # truncated data
    with pytest.raises(GankitError, match="short.npy.*truncated"):
        load_samples_npy(short)
    obj = _forged_npy(tmp_path / "obj.npy", (2,), dtype="|O")
    with pytest.raises(GankitError, match="obj.npy holds Python objects"):
        load_npy_checked(obj)
    with pytest.raises(GankitError, match="not a valid .npy"):
        load_samples_npy(_write(tmp_path / "junk.npy", b"hello"))
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((3, 8, 8, 1), np.uint8))
    assert load_samples_npy(good).shape == (3, 1, 8, 8)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_devices_fifos_and_folders_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    # A reader that blocked on the FIFO would hang here until pytest-timeout (pyproject.toml) stops the test.
    with pytest.raises(GankitError, match="pipe.npy is a FIFO"):
        load_samples_npy(fifo)
    with pytest.raises(GankitError, match="FIFO"):
        read_idx(fifo)
    with pytest.raises(GankitError, match="/dev/zero is a device"):
        load_samples_npy("/dev/zero")
    with pytest.raises(GankitError, match="IDX file /dev/zero is a device"):
        read_idx("/dev/zero")
    with pytest.raises(GankitError, match="is a folder"):
        check_regular_file(tmp_path, "--samples")
    with pytest.raises(GankitError, match="does not exist"):
        load_samples_npy(tmp_path / "nope.npy")
    # a data file linked to a device is no better
    (tmp_path / "t10k-images-idx3-ubyte").symlink_to("/dev/zero")
    with pytest.raises(GankitError, match="device"):
        read_idx(tmp_path / "t10k-images-idx3-ubyte")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_open_user_file_and_list_user_folder_keep_their_contract(tmp_path: Path) -> None:
    """The one way commands open user paths: regular files only (never blocking on a FIFO), no link out of the folder
    a file was listed from (a link inside it is fine), a size limit before anything is read."""
    from gankit.data.safety import list_user_folder, open_user_file

    top, outside = tmp_path / "in", tmp_path / "secret.png"
    top.mkdir()
    outside.write_bytes(b"x" * 10)
    (top / "a.png").write_bytes(b"a" * 10)
    (top / "inside.png").symlink_to(top / "a.png")
    (top / "out.png").symlink_to(outside)
    (top / "gone.png").symlink_to(top / "nowhere.png")
    os.mkfifo(top / "pipe.png")
    (top / "sub.png").mkdir()
    (top / ".hidden.png").write_bytes(b"h")
    (top / "notes.txt").write_bytes(b"t")
    files, refused = list_user_folder(top, lambda name: name.endswith(".png"))
    assert [p.name for p in files] == ["a.png", "inside.png"]
    assert [(p.name, why.split(",")[0]) for p, why in refused] == [
        ("gone.png", "a dangling link"),
        ("out.png", f"a link to {outside.resolve()}"),
        ("pipe.png", "a FIFO (named pipe)"),
    ]
    with open_user_file(top / "inside.png", "input", root=top) as f:
        assert f.read() == b"a" * 10
    with open_user_file(top / "out.png", "input") as f:  # named directly: the user pointed at it
        assert f.read() == b"x" * 10
    with pytest.raises(GankitError, match=r"input .*out.png is a link to .*secret.png, outside"):
        open_user_file(top / "out.png", "input", root=top)
    with pytest.raises(GankitError, match="pipe.png is a FIFO"):  # would block a plain open() for ever
        open_user_file(top / "pipe.png", "input")
    with pytest.raises(GankitError, match="a.png is 10 bytes, more than the 9 bytes"):
        open_user_file(top / "a.png", "input", max_bytes=9)


def test_idx_headers_claiming_more_than_the_file_holds(tmp_path: Path) -> None:
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 10**9, 28, 28)
    with pytest.raises(GankitError, match=r"raw.*body has 16 bytes.*\(1000000000, 28, 28\)"):
        read_idx(_write(tmp_path / "raw", header + b"\0" * 16))
    with pytest.raises(GankitError, match=r"bomb.gz.*claims .* more than this .*gzip file can hold"):
        read_idx(_write(tmp_path / "bomb.gz", gzip.compress(header + b"\0" * 16)))
    modest = bytes([0, 0, 8, 3]) + struct.pack(">3I", 50, 28, 28)  # plausible for gzip, but the body is short
    with pytest.raises(GankitError, match=r"short.gz.*body has 100 bytes"):
        read_idx(_write(tmp_path / "short.gz", gzip.compress(modest + b"\0" * 100)))
    long = idx_bytes(np.zeros((2, 4), np.uint8)) + b"\0"  # one byte too many, gzip too
    with pytest.raises(GankitError, match="body has more than 8 bytes"):
        read_idx(_write(tmp_path / "long.gz", gzip.compress(long)))


def test_cifar_length_claims_beyond_the_data_are_clear_errors(tmp_path: Path) -> None:
    forged = b"\x80\x04\x8e" + struct.pack("<Q", 10**11) + b"abc"  # BINBYTES8 claiming 100 GB
    with pytest.raises(GankitError, match="batch_x is not a safe CIFAR-10 python batch"):
        safe_unpickle(forged, "batch_x")
    good = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1]}, protocol=4)
    assert safe_unpickle(good, "ok")[b"labels"] == [1]
    # a tar member whose header claims 10 GB
    user = tmp_path / "user"
    user.mkdir()
    info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
    info.size = 10**10
    (user / "cifar-10-python.tar.gz").write_bytes(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024))
    with pytest.raises(GankitError, match="cifar-10-python.tar.gz"):
        load_dataset(DataConfig(name="cifar10", dir=str(user), split="test", cache="ram"))
