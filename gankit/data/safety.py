"""Guards for reading files whose contents we do not control.

Three mistakes this module exists to prevent, each seen with hostile or damaged input:

- opening something that is not a regular file: ``/dev/zero`` reads forever, a FIFO blocks ``open()`` itself;
- trusting a size a file claims about itself (an ``.npy`` header, an IDX header, a pickle's length fields) and
  allocating it before checking that the file holds that many bytes: a 100-byte file then ends in a MemoryError;
- walking a folder through directory links: a loop (``cls_a/up -> ..``) multiplies the images and labels them with
  the wrong class, and a link out of the data root reads files the user never pointed at.

Everything here raises :class:`GankitError` with a one-line message naming the file.

Every command that reads a path the user gave (or a file inside a folder the user gave) opens it with
:func:`open_user_file` (defined in :mod:`gankit.core.io`, re-exported here), and lists such a folder with
:func:`list_user_folder`: one set of rules for translate's inputs,
``eval --samples``, ``--inception``, and whatever reads user files next (reference statistics, an initial checkpoint,
a search-space file).
"""

from __future__ import annotations

import ast
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..core.errors import GankitError

# Re-exported: the readers and commands use them from here. open_user_file lives in core so that config files (core and
# config may not import data) are opened by the same function.
from ..core.io import check_regular_file, file_kind, is_within, open_regular, open_user_file  # noqa: F401

# An upper bound for any single array we decode from a file, whatever memory the machine has: far above every data
# set gankit reads in RAM, far below what a forged header can claim.
MAX_ARRAY_BYTES = 1 << 40  # 1 TiB
# deflate cannot expand data by more than about 1032:1, so a gzip stream claiming more is forged or damaged.
MAX_GZIP_RATIO = 1100


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation without swapping (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def check_allocation(nbytes: int, where: str | Path, what: str = "the data") -> None:
    """GankitError when ``nbytes`` is beyond :data:`MAX_ARRAY_BYTES` or the memory available now."""
    if nbytes > MAX_ARRAY_BYTES:
        raise GankitError(
            f"{where}: {what} would need {_gib(nbytes)}, beyond any sane size; the file is damaged or forged"
        )
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise GankitError(
            f"{where}: {what} would need {_gib(nbytes)} of memory and {_gib(avail)} is available; use a smaller "
            f"file, or data.cache=memmap for data sets"
        )


@dataclass(frozen=True)
class NpyHeader:
    """What an ``.npy`` file says about itself, checked against its real size."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes before the array data

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape:
            n *= d
        return n


def _read_npy_header(f: BinaryIO, where: str | Path) -> NpyHeader:
    fmt = np.lib.format
    start = f.tell()
    if f.read(4) == b"PK\x03\x04":  # np.savez writes a zip of .npy files: say so, not "bad magic string"
        raise GankitError(
            f"{where} is a .npz archive (a zip of arrays); save the one array with np.save(path, array) "
            f"and pass that .npy"
        )
    f.seek(start)
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        elif version == (3, 0):  # the 2.0 layout with a UTF-8 header (only non-latin-1 field names need it)
            hlen = int.from_bytes(f.read(4), "little")
            if hlen > 1 << 20:
                raise ValueError(f"header length {hlen} is implausible")
            d = ast.literal_eval(f.read(hlen).decode("utf-8"))
            shape, fortran, dtype = tuple(d["shape"]), bool(d["fortran_order"]), np.dtype(d["descr"])
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except GankitError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError, but a forged header can trip many others
        raise GankitError(f"{where} is not a valid .npy file ({' '.join(str(e).split())[:100]})") from None
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise GankitError(f"{where}: .npy header has an invalid shape {shape}")
    return NpyHeader(tuple(int(d) for d in shape), np.dtype(dtype), bool(fortran), f.tell())


def read_npy_header_checked(path: str | Path, what: str = ".npy file", limit: int | None = None) -> NpyHeader:
    """Read and check an ``.npy`` header without reading (or allocating) its data.

    Refuses non-regular files, object dtypes (they need pickle), a claimed size the file does not hold, and sizes
    beyond ``limit`` bytes (default: :data:`MAX_ARRAY_BYTES`). Memory is not checked here; see
    :func:`load_npy_checked`.
    """
    with open_user_file(path, what) as f:
        header = _read_npy_header(f, f"{what} {path}")
        size = os.fstat(f.fileno()).st_size
    _check_npy(header, size, f"{what} {path}", limit)
    return header


def _check_npy(header: NpyHeader, file_size: int, where: str, limit: int | None) -> None:
    if header.dtype.hasobject:
        raise GankitError(f"{where} holds Python objects (dtype {header.dtype}); only plain numeric arrays are read")
    claimed = header.nbytes
    if claimed > (MAX_ARRAY_BYTES if limit is None else limit):
        raise GankitError(f"{where}: header claims shape {header.shape} ({_gib(claimed)}), beyond any sane size")
    held = file_size - header.offset
    if claimed > held:
        raise GankitError(
            f"{where}: header claims shape {header.shape} {header.dtype} ({_gib(claimed)}) but the file holds "
            f"{_gib(max(held, 0))}; the file is truncated or not what it claims"
        )


def load_npy_checked(path: str | Path, what: str = ".npy file", mmap: bool = False) -> np.ndarray:
    """An ``.npy`` array, after :func:`read_npy_header_checked`'s checks and a check against available memory.

    Never unpickles. With ``mmap`` the array is mapped copy-on-write (no memory check, nothing read up front).
    """
    with open_user_file(path, what) as f:
        header = _read_npy_header(f, f"{what} {path}")
        _check_npy(header, os.fstat(f.fileno()).st_size, f"{what} {path}", None)
        if mmap:
            return np.memmap(
                f,
                dtype=header.dtype,
                mode="c",
                offset=header.offset,
                shape=header.shape,
                order="F" if header.fortran_order else "C",
            )
        check_allocation(header.nbytes, f"{what} {path}", f"shape {header.shape}")
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise GankitError(f"{what} {path} is not a plain .npy array ({' '.join(str(e).split())[:100]})") from None


# ---------------------------------------------------------------------------------------------------------------------
# files and folders a user names


def list_user_folder(folder: str | Path, keep: Callable[[str], bool]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The entries of a folder the user named (not its sub-folders) whose names ``keep`` accepts, hidden names
    skipped, sorted by name: ``(files, refused)``.

    ``files``: regular files, or links to regular files inside ``folder``. ``refused``: ``(path, reason)`` for every
    other entry ``keep`` accepts that gankit will not read: a FIFO, a device, a socket, a dangling link, a link out of
    the folder (reason names its target). Nothing is opened, so a FIFO cannot block. Sub-folders are left out.
    """
    top = Path(folder)
    real_top = os.path.realpath(top)
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as e:
        raise GankitError(f"cannot list folder {top} ({e.strerror or e})") from None
    files: list[Path] = []
    refused: list[tuple[Path, str]] = []
    for e in entries:
        if e.name.startswith(".") or not keep(e.name):
            continue
        p = Path(e.path)
        if e.is_symlink():
            target = os.path.realpath(p)
            if not is_within(target, real_top):
                refused.append((p, f"a link to {target}, outside {top}/"))
                continue
        try:
            mode = os.stat(p).st_mode
        except OSError:
            refused.append((p, "a dangling link"))
            continue
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            refused.append((p, f"{file_kind(mode)}, not a regular file"))
            continue
        files.append(p)
    return files, refused


def refused_line(refused: list[tuple[Path, str]]) -> str:
    """One line naming what :func:`list_user_folder` refused: the first two entries and a count of the rest."""
    shown = "; ".join(f"{p.name} is {why}" for p, why in refused[:2])
    more = f"; and {len(refused) - 2} more" if len(refused) > 2 else ""
    return f"{shown}{more}"


# ---------------------------------------------------------------------------------------------------------------------
# folder walks


@dataclass
class WalkGuard:
    """Shared state of one listing of a data root, so no directory is entered twice and no file is listed twice.

    ``root``: the data root's real path; directory links that resolve outside it are not followed. ``skipped``:
    (link, target, reason) for every directory link not followed, so the caller can say so once.
    """

    root: Path
    seen_dirs: set[str] = field(default_factory=set)
    seen_files: set[str] = field(default_factory=set)
    skipped: list[tuple[Path, str, str]] = field(default_factory=list)

    @classmethod
    def for_root(cls, root: str | Path) -> WalkGuard:
        return cls(Path(os.path.realpath(root)))

    def claim_file(self, path: Path) -> bool:
        """True the first time a file's real path is seen (it should be listed), False for a second sight."""
        real = os.path.realpath(path)
        if real in self.seen_files:
            return False
        self.seen_files.add(real)
        return True

    def enter_dir(self, path: Path, top: Path | None = None) -> bool:
        """Whether to read folder ``path``: not if its real path was entered already (a loop, or a second link to
        it), lies outside the data root, or (when ``top`` is given) outside ``top``'s real path, e.g. a link from one
        class folder into another, which would otherwise relabel that class's images."""
        real = os.path.realpath(path)
        if real in self.seen_dirs:
            if os.path.islink(path):
                self.skipped.append((path, real, "already read (a loop or a second link)"))
            return False
        if not is_within(real, self.root):
            self.skipped.append((path, real, "outside the data root"))
            return False
        if top is not None and not is_within(real, os.path.realpath(top)):
            self.skipped.append((path, real, f"outside {top.name}/"))
            return False
        self.seen_dirs.add(real)
        return True

    def note(self, say: Callable[[str], object] | None = None) -> None:
        """One line about the directory links not followed, if any (to stderr unless ``say`` is given)."""
        if not self.skipped:
            return
        link, target, reason = self.skipped[0]
        more = f" and {len(self.skipped) - 1} more" if len(self.skipped) > 1 else ""
        msg = f"note: did not follow directory link {link} -> {target} ({reason}){more}"
        (say or (lambda m: print(m, file=sys.stderr)))(msg)


def walk_files(top: Path, guard: WalkGuard, keep: Callable[[Path], bool]) -> Iterator[Path]:
    """Files below ``top`` for which ``keep(path)`` is true, in sorted order, hidden names skipped.

    Real sub-folders are entered; directory links only when :meth:`WalkGuard.enter_dir` allows (inside ``top`` and
    the data root, not entered before). A file reached twice (two links, a hard-to-see loop) is listed once. Only
    regular files are listed: FIFOs and devices named like images are not.
    """
    if not guard.enter_dir(top):
        return
    yield from _walk(top, top, guard, keep)


def _walk(folder: Path, top: Path, guard: WalkGuard, keep: Callable[[Path], bool]) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise GankitError(f"cannot list folder {folder} ({e.strerror or e})") from None
    subdirs = []
    for e in entries:
        if e.name.startswith("."):
            continue
        p = Path(e.path)
        try:
            if e.is_dir():  # follows links; enter_dir decides whether a link is followed
                subdirs.append(p)
            elif e.is_file() and keep(p) and guard.claim_file(p):
                yield p
        except OSError:  # a dangling link or a file removed while listing: nothing to read
            continue
    for p in subdirs:  # files first, then sub-folders: the order os.walk gave before
        if guard.enter_dir(p, top):
            yield from _walk(p, top, guard, keep)
