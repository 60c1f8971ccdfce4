"""File writes that a kill or a full disk cannot half-do, content hashes, JSON-lines, and the cache folder.

Every file gankit writes for a user (pictures, reports, JSON, checkpoints, downloads, caches) goes through
:func:`atomic_writer`: a temp file in the destination's folder, fsynced, then renamed over the destination. A kill
leaves either the old file or the new one, never a truncated one, and an OSError names the file the user knows.

Every file gankit reads from a path a user gave (configs, data files, translate's inputs, ``--samples``,
``--inception``) is opened with :func:`open_user_file`: regular files only, no link out of a named folder, sizes
checked first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

from .errors import GankitError


_CHUNK = 1 << 20


@contextmanager
def names_file(path: Path) -> Iterator[None]:
    """Give an OSError raised while writing ``path`` that file's name (a failed write() carries none)."""
    try:
        yield
    except OSError as e:
        if e.filename or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[bytes]]:
    """``with atomic_writer(p) as f: f.write(...)``: ``p`` appears complete or not at all (the old file stays)."""
    path = Path(path)
    remove_stale_parts(path)
    # The PID in the temp name lets a clean-up tell a live writer's file from one a killed process left.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except OSError as e:
        if type(e) is not OSError or e.filename == str(path):  # e.g. a download's URLError: not about this file
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e
    finally:
        tmp.unlink(missing_ok=True)


def refuse_existing(paths: Iterable[Path], force: bool) -> None:
    """The one overwrite rule of every command: a file the user named (or one gankit derives from a name they gave)
    that already exists is replaced only with ``force`` (--force). Callers check before any work, so a refusal costs
    nothing. Files gankit owns inside a run folder (RUN/metrics.json, RUN/report.html) are refreshed without asking:
    callers leave them out. A folder is skipped: the caller's own check says "is a folder"."""
    if force:
        return
    for p in map(Path, paths):
        if p.is_dir():
            continue
        if p.exists() or p.is_symlink():
            raise GankitError(f"{p} already exists; pass --force to replace it (nothing was written)")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def part_file_pid(name: str) -> int | None:
    """The writer's PID in a temp file name made by :func:`atomic_writer` (``.NAME.PID.RANDOM.part``), else None."""
    if not (name.startswith(".") and name.endswith(".part")):
        return None
    parts = name[:-5].rsplit(".", 2)
    return int(parts[-2]) if len(parts) == 3 and parts[-2].isdigit() else None


def remove_stale_parts(path: Path) -> None:
    """Remove the temp files of ``path`` (``.NAME.PID.RANDOM.part``) that a killed writer left: those of processes
    that are gone. SIGKILL or a power cut leave one; the next write of the same file cleans up after it."""
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return  # the folder is missing or unreadable: mkstemp says so in its own words
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = part_file_pid(entry.name)
        # the name has exactly NAME's parts before PID.RANDOM (so .a.npy's temp is not taken for .a.npy.x's)
        if pid is not None and entry.name[len(prefix) :].count(".") == 2 and pid != os.getpid() and not pid_alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as f:
        f.write(data)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=float) + "\n").encode())


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The object rows of a JSON-lines file; a line a kill cut short, or anything but an object, is skipped."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_bytes().splitlines():
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def series(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(step, value) of ``key`` over metrics.jsonl rows, only where both are finite numbers: a hand-edited or
    foreign row ("step": "ten", a list, NaN) is left out of plots and tables instead of breaking them."""
    return [(float(r["step"]), float(r[key])) for r in rows if _finite(r.get("step")) and _finite(r.get(key))]


def cache_dir(configured: str | None = None) -> Path:
    """Where downloads and derived caches go: ``configured`` if set, else ``$GANKIT_CACHE``, else ``~/.cache/gankit``."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("GANKIT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "gankit"


# ---------------------------------------------------------------------------------------------------------------------
# reading untrusted paths: regular files only


def file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def check_regular_file(path: str | Path, what: str) -> Path:
    """``path`` if it is (a link to) a regular file; else GankitError '``what`` PATH does not exist / is a device'.

    ``what`` names the role, e.g. '--samples' or 'IDX file'. Use :func:`open_regular` to also open it race-free.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise GankitError(f"{what} {p} does not exist") from None
    except OSError as e:
        raise GankitError(f"{what} {p} cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise GankitError(f"{what} {p} is {file_kind(st.st_mode)}, not a regular file; give the path of a file")
    return p


def open_regular(path: str | Path, what: str) -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file.

    Opened non-blocking first and checked with fstat on the open descriptor, so a FIFO cannot block ``open()`` and a
    file swapped between check and open is still caught; blocking mode is restored before returning.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise GankitError(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise GankitError(f"{what} {p} is a folder, not a regular file; give the path of a file") from None
    except OSError as e:
        raise GankitError(f"{what} {p} cannot be opened ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise GankitError(f"{what} {p} is {file_kind(st.st_mode)}, not a regular file; give the path of a file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_within(path: str | Path, root: str | Path) -> bool:
    """Whether real path ``path`` equals or lies below real path ``root`` (both already resolved)."""
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False


def open_user_file(
    path: str | Path, what: str, *, root: str | Path | None = None, max_bytes: int | None = None
) -> BinaryIO:
    """Open a file the user named, or a file inside a folder the user named, for binary reading.

    Contract (every failure is a :class:`GankitError` with one line that starts with ``what`` and the path, says what
    the path is and what is expected; nothing is read before the checks pass):

    - Only a regular file is opened. A FIFO, a device, a socket or a folder is refused and never blocks: the path is
      opened non-blocking and checked with ``fstat`` on the open descriptor (so a file swapped in after a check is
      caught too), then switched back to blocking reads.
    - ``root``: the folder the user named when the file was found by listing it. The file's real path (every link
      resolved) must lie inside ``root``'s real path: a link inside the folder is followed, a link that leads out of
      it is refused, and the file opened must be the one at that real path. Without ``root`` (a path the user typed)
      links are followed: the user pointed at the file.
    - ``max_bytes``: a larger file is refused before anything is read (size sanity for files read whole).

    Returns the open file, positioned at its start; the caller closes it (``with open_user_file(...) as f``).
    """
    p = Path(path)
    real = os.path.realpath(p) if root is not None else None
    if root is not None and not is_within(real, os.path.realpath(root)):
        raise GankitError(
            f"{what} {p} is a link to {real}, outside {Path(root)}/; gankit does not follow links out of "
            f"the folder you name (copy the file in, or name it directly)"
        )
    f = open_regular(p, what)
    try:
        st = os.fstat(f.fileno())
        if real is not None:
            try:
                same = os.stat(real)
            except OSError:
                same = None
            if same is None or (same.st_dev, same.st_ino) != (st.st_dev, st.st_ino):
                raise GankitError(f"{what} {p} changed while it was opened; try again")
        if max_bytes is not None and st.st_size > max_bytes:
            raise GankitError(
                f"{what} {p} is {_size(st.st_size)}, more than the {_size(max_bytes)} such a file can "
                f"be; is it the right file?"
            )
        return f
    except BaseException:
        f.close()
        raise
