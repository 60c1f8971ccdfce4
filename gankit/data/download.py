"""Checksummed downloads into the cache.

A download streams to a temporary file next to its destination and is moved into place (``os.replace``, atomic on
one file system) only after its SHA-256 matched, so an interrupted or corrupted transfer never leaves a file that a
later run would trust. Transient failures (5xx, timeouts, dropped connections, truncated bodies) are retried with a
short exponential backoff; a mirror that answers 4xx or serves different bytes is skipped for the next one.
"""

from __future__ import annotations

import hashlib
import http.client
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ..core.errors import GankitError
from ..core.io import atomic_writer, cache_dir, sha256_file  # noqa: F401  (cache_dir: readers find it here)

_CHUNK = 1 << 20
_USER_AGENT = "gankit-downloader/1 (python urllib)"  # some hosts refuse the default Python-urllib agent


def source_folder(name: str, data_dir: str | None, cache: str | None, holding: str) -> tuple[Path, bool]:
    """Where a standard data set's files are: (``data.dir``, False) — a folder the user chose, checked to be one and
    never downloaded into (it may be shared or under version control) — or (the cache's ``name`` folder, True), which
    downloads may fill. ``holding`` says what the folder should hold, for the error message."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise GankitError(f"data.dir {folder} is not a folder; point --data-dir at the folder holding {holding}")
        return folder, False
    return cache_dir(cache) / name, True


def download_refused(name: str, split: str, needs: str, folder: Path, how: str) -> GankitError:
    """The error for files missing from the cache while data.download is false."""
    return GankitError(
        f"{name} split '{split}' needs {needs} in the cache folder {folder}, and data.download is false; "
        f"{how}, or use --set data.download=true"
    )


class _Retryable(Exception):
    """A failure worth trying the same URL again for; ``str()`` is the short reason."""


class _SkipMirror(Exception):
    """A failure that will not go away by retrying this URL (404, wrong bytes); try the next mirror."""


def fetch(
    url: str | list[str] | tuple[str, ...],
    dest: Path | str,
    sha256: str | None,
    retries: int = 3,
    timeout: float = 30,
    progress: bool = True,
    *,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` (or the first mirror that works, in order) to ``dest`` and return ``dest``.

    ``sha256``: expected hex digest; when given, a file already at ``dest`` with that digest is kept as is (no
    network), and a download with another digest is rejected. ``retries``: tries per mirror for transient failures,
    waiting ``backoff * 2**k`` seconds between them (``sleep`` is injectable for tests). The progress bar goes to
    stderr and only when it is a terminal. Every failure is a one-line :class:`GankitError` that names the URL and
    the file and says how to place it by hand.
    """
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("fetch needs at least one URL")
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file() and (expected is None or sha256_file(dest) == expected):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GankitError(
            f"cannot create the download folder {dest.parent} ({e.strerror}); set data.cache_dir or $GANKIT_CACHE to "
            f"a writable folder"
        ) from e

    by_hand = f"put {dest.name} in {dest.parent} by hand or check your network"
    tries = max(1, retries)
    failures: list[str] = []
    for u in urls:
        for attempt in range(1, tries + 1):
            try:
                _fetch_once(u, dest, expected, timeout, progress)
                return dest
            except _SkipMirror as e:
                failures.append(f"{u} {e}")
                break
            except _Retryable as e:
                if attempt == tries:
                    failures.append(f"{u} {e} after {tries} {'try' if tries == 1 else 'tries'}")
                    break
                sleep(backoff * 2 ** (attempt - 1))
    if len(urls) == 1:
        raise GankitError(f"download of {failures[0]}; {by_hand}")
    raise GankitError(f"download of {dest.name} failed from every mirror: {'; '.join(failures)}; {by_hand}")


def _fetch_once(url: str, dest: Path, expected: str | None, timeout: float, progress: bool) -> None:
    """One attempt: stream to a temp file in dest's folder, check length and hash, then move it into place."""
    with atomic_writer(dest) as out:
        got = _stream(url, out, dest, timeout, progress)
        if expected is not None and got != expected:
            raise _SkipMirror(f"has the wrong checksum (expected sha256 {expected}, got {got})")


def _stream(url: str, out: BinaryIO, dest: Path, timeout: float, progress: bool) -> str:
    """Copy the body of ``url`` to ``out``; return its hex SHA-256. Raises _Retryable / _SkipMirror / GankitError."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    h = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.strip().isdigit() else None
            show = progress and sys.stderr.isatty()
            with tqdm(
                total=total,
                desc=dest.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                disable=not show,
                leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    try:
                        out.write(chunk)
                    except OSError as e:  # disk full or similar: retrying or another mirror cannot help
                        raise GankitError(
                            f"cannot write {dest} ({e.strerror}); free some space or set data.cache_dir to another "
                            f"folder"
                        ) from e
                    h.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        # 5xx and 429 are the server's passing trouble; other 4xx mean this mirror does not have the file.
        if e.code >= 500 or e.code in (408, 429):
            raise _Retryable(f"failed (HTTP {e.code})") from e
        raise _SkipMirror(f"failed (HTTP {e.code})") from e
    except http.client.IncompleteRead as e:
        raise _Retryable(f"failed (truncated body: {received + len(e.partial)} bytes received)") from e
    except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
            reason = f"timed out after {timeout:g}s"
        raise _Retryable(f"failed ({reason})") from e
    # http.client returns b"" instead of raising when the server closes before Content-Length bytes arrived.
    if total is not None and received != total:
        raise _Retryable(f"failed (truncated body: {received} of {total} bytes)")
    return h.hexdigest()
