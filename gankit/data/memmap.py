"""Data larger than memory: a data set decoded once into a memory-mapped uint8 cache on disk.

The cache of one (reader, source, split, decode settings) is a folder ``<cache_dir>/memmap/<reader>-<key>/`` holding
``images.npy`` (uint8 (N, C, H, W)), ``labels.npy`` (int64 (N,)) and ``meta.json``. ``meta.json`` stores a content
hash of the source files' relative names, sizes and mtimes plus the decode settings; when the source changes the hash
differs and the cache is rebuilt in place of the old one.

Building writes into a temporary folder next to the cache and renames it into place only when complete, so a kill
(or a full disk) never leaves a cache that a later run would trust. A lock file serialises builders, so processes
started together (one per GPU) build once and share the result. Opened caches are mapped copy-on-write: the page
cache holds what is read, a batch gathers only its rows, and nothing is ever written back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..core.errors import GankitError
from .base import ImageData
from .safety import available_memory, load_npy_checked
from .transforms import convert_channels, resize

CACHE_MODES = ("ram", "memmap", "auto")
# auto: map to disk when the decoded set is above either bound; below both, RAM is simpler and as fast.
AUTO_MAX_BYTES = 1 << 30
AUTO_MAX_RAM_SHARE = 0.25
FORMAT = 1  # bump when the cache layout changes, so old caches are rebuilt rather than misread

# alloc(shape) -> a writable uint8 array of that shape (np.empty in RAM, a fresh .npy map in a cache build)
Alloc = Callable[[tuple[int, ...]], np.ndarray]
# build(alloc) -> (images uint8 (N, C, H, W) from alloc, labels int64 (N,), class names)
Builder = Callable[[Alloc], tuple[np.ndarray, np.ndarray, list[str]]]


@dataclass(frozen=True)
class CachePlan:
    """What a reader needs decoded, before decoding it.

    ``files``: the source files in reading order; their names relative to ``root``, sizes and mtimes make the content
    hash. ``settings``: every decode setting that changes the bytes (split, image size, channels, ...).
    ``nbytes``: the decoded size, exact or an upper bound (for the auto rule and the free-disk check).
    ``build``: decodes into arrays from the given allocator, so the RAM and the memmap paths share one code path.
    """

    reader: str
    name: str
    root: Path
    files: list[Path]
    settings: dict[str, Any]
    nbytes: int
    build: Builder


def choose_cache(mode: str, nbytes: int, available: int | None = None) -> str:
    """'ram' or 'memmap' for ``data.cache`` = ``mode``; 'auto' maps sets over 1 GiB or 25% of available memory."""
    if mode not in CACHE_MODES:
        raise GankitError(f"data.cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    avail = available_memory() if available is None else available
    big = nbytes > AUTO_MAX_BYTES or (avail is not None and nbytes > AUTO_MAX_RAM_SHARE * avail)
    return "memmap" if big else "ram"


def fingerprint(files: list[Path], root: Path, settings: dict[str, Any]) -> str:
    """SHA-256 over the decode settings and each file's name relative to ``root``, size and mtime (ns), in order."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, "settings": settings}, sort_keys=True).encode())
    for f in files:
        st = os.stat(f)
        try:
            rel = str(Path(f).relative_to(root))
        except ValueError:
            rel = str(f)
        h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def cache_folder(cache_root: Path, plan: CachePlan) -> Path:
    """Where ``plan``'s cache lives: one folder per (reader, real source root, settings), whatever the contents."""
    ident = json.dumps({"root": os.path.realpath(plan.root), "settings": plan.settings}, sort_keys=True)
    return Path(cache_root) / "memmap" / f"{plan.reader}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


def _open(folder: Path, fp: str) -> ImageData | None:
    """The cache in ``folder`` if it is complete and built from the same sources, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("fingerprint") != fp:
            return None
        images = load_npy_checked(folder / "images.npy", "memmap cache", mmap=True)
        labels = load_npy_checked(folder / "labels.npy", "memmap cache")
    except (OSError, ValueError, GankitError):
        return None  # missing, stale or damaged: rebuilt by the caller
    if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (images.shape[0],):
        return None
    return ImageData(
        torch.from_numpy(images),  # copy-on-write map: writable for torch, never written back
        torch.from_numpy(labels.astype(np.int64, copy=False)),
        str(meta.get("name", "")),
        [str(c) for c in meta.get("class_names", [])],
        cache_path=folder,
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed); a no-op where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process to finish building {path.with_suffix('')}", file=sys.stderr)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_builds(parent: Path, stem: str) -> None:
    """Delete temporary build folders left by killed builders on this host (their PID no longer runs)."""
    host = socket.gethostname()
    for p in parent.glob(f".tmp-{stem}-*"):
        h, _, pid = p.name.rpartition("-")
        if h.endswith(f"-{host}") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _build(folder: Path, plan: CachePlan, fp: str) -> None:
    parent = folder.parent
    free = shutil.disk_usage(parent).free
    if plan.nbytes > free:
        raise GankitError(
            f"the memmap cache of {plan.root} needs about {plan.nbytes / 2**30:.1f} GiB and {parent} has "
            f"{free / 2**30:.1f} GiB free; set GANKIT_CACHE (or data.cache_dir) to a bigger disk, or data.cache=ram"
        )
    _remove_dead_builds(parent, folder.name)
    tmp = parent / f".tmp-{folder.name}-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    allocated: list[Path] = []

    def alloc(shape: tuple[int, ...]) -> np.ndarray:
        path = tmp / f"images-{len(allocated)}.npy"
        allocated.append(path)
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)

    try:
        images, labels, class_names = plan.build(alloc)
        if not isinstance(images, np.memmap) or images.filename is None:
            raise RuntimeError("a cache builder must return an array from its allocator")
        images.flush()
        final = Path(images.filename)
        del images
        final.rename(tmp / "images.npy")
        for p in allocated:  # arrays the builder outgrew (e.g. gray widened to RGB)
            if p != final:
                p.unlink(missing_ok=True)
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
        meta = {
            "fingerprint": fp,
            "format": FORMAT,
            "name": plan.name,
            "class_names": list(class_names),
            "settings": plan.settings,
            "root": str(plan.root),
            "files": len(plan.files),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        for p in tmp.iterdir():
            _fsync(p)
        old = None
        if folder.exists():  # a stale cache: move it aside, then swap in the new one
            old = parent / f".old-{folder.name}-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # processes that still map it keep their pages (POSIX)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise GankitError(
                f"disk full while writing the memmap cache in {parent}; free space, set GANKIT_CACHE (or "
                f"data.cache_dir) to a bigger disk, or use data.cache=ram"
            ) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_or_build(plan: CachePlan, cache_root: Path) -> ImageData:
    """The memory-mapped data of ``plan``, built first when missing or stale; (N, C, H, W) uint8, labels (N,).

    Safe to call from several processes at once: one builds, the others wait and then map the same files.
    """
    folder = cache_folder(cache_root, plan)
    fp = fingerprint(plan.files, plan.root, plan.settings)
    data = _open(folder, fp)
    if data is not None:
        return data
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f"{folder.name}.lock"):
        data = _open(folder, fp)  # another process may have built it while we waited
        if data is None:
            _build(folder, plan, fp)
            data = _open(folder, fp)
    if data is None:
        raise GankitError(f"the memmap cache {folder} could not be read back after building; delete it and retry")
    return data


def build_in_ram(plan: CachePlan) -> ImageData:
    """``plan`` decoded into RAM by the same builder the cache uses (so both give the same bytes)."""
    images, labels, class_names = plan.build(lambda shape: np.empty(shape, np.uint8))
    return ImageData(torch.from_numpy(images), torch.as_tensor(np.asarray(labels, np.int64)), plan.name, class_names)


def fill_resized(
    images: torch.Tensor, channels: int, size: int | tuple[int, int], alloc: Alloc, desc: str, chunk: int = 2048
) -> np.ndarray:
    """uint8 (N, C, H, W) -> alloc((N, C', size, size)) (or (N, C', h, w) for ``size`` = (h, w)), converted to
    ``channels`` (0 keeps C) and resized chunk by chunk exactly as :func:`load_dataset` does in RAM, with a progress
    bar; peak extra memory is one chunk."""
    n, c = int(images.shape[0]), int(images.shape[1])
    c_out = c if channels in (0, c) else channels
    h, w = (size, size) if isinstance(size, int) else size
    out = alloc((n, c_out, h, w))
    with tqdm(total=n, desc=desc, unit="img", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False) as bar:
        for i in range(0, n, chunk):
            out[i : i + chunk] = resize(convert_channels(images[i : i + chunk], channels), size).numpy()
            bar.update(min(chunk, n - i))
    return out
