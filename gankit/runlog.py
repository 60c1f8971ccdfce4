"""The one place that writes a run's files and prints to the user, and the only code that knows the process rank.

Under torch.distributed only rank 0 writes; other ranks get a writer whose methods do nothing, so the training loop
never branches on the rank itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import viz
from .config import Config, dump_yaml


def process_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, fsync, then rename over it: a kill leaves the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        # A failed write() carries no file name (or the temp file's); name the file the user knows.
        raise OSError(e.errno, e.strerror, str(path)) from e


@contextmanager
def names_file(path: Path) -> Iterator[None]:
    """Give an OSError raised while writing ``path`` that file's name (a failed write() has none)."""
    try:
        yield
    except OSError as e:
        if e.filename or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e


class RunWriter:
    """Files of one run folder: config.yaml, metrics.jsonl, samples/, progress.gif, losses.png, summary.json."""

    def __init__(self, root: str | Path, rank: int | None = None) -> None:
        self.root = Path(root)
        self.rank = process_rank() if rank is None else rank
        self.active = self.rank == 0
        self._metrics = None

    # -- folder -----------------------------------------------------------------------------------------------------
    def open(self) -> None:
        if not self.active:
            return
        (self.root / "samples").mkdir(parents=True, exist_ok=True)
        (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.root / "metrics.jsonl", "a", encoding="utf-8")

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def write_config(self, cfg: Config, extra: dict[str, Any] | None = None) -> None:
        if not self.active:
            return
        text = "# resolved gankit config: `gankit train <this file>` re-runs it\n" + dump_yaml(cfg)
        atomic_write_bytes(self.root / "config.yaml", text.encode())
        if extra:
            atomic_write_bytes(self.root / "run.json", json.dumps(extra, indent=2).encode())

    # -- numbers ----------------------------------------------------------------------------------------------------
    def log(self, row: dict[str, Any]) -> None:
        if not self.active or self._metrics is None:
            return
        row = {"time": round(time.time(), 3), **row}
        with names_file(self.root / "metrics.jsonl"):
            self._metrics.write(json.dumps(row) + "\n")
            self._metrics.flush()

    def trim_metrics(self, last_step: int) -> None:
        """Keep the metrics.jsonl rows up to ``last_step`` (a resume redoes the steps after it) and drop lines a kill
        cut short. Call before :meth:`open`."""
        path = self.root / "metrics.jsonl"
        if not self.active or not path.is_file():
            return
        lines = path.read_bytes().splitlines()
        keep = []
        for line in lines:
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if not (isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] > last_step):
                keep.append(line)
        if len(keep) != len(lines):
            atomic_write_bytes(path, b"".join(line + b"\n" for line in keep))

    def summary(self, data: dict[str, Any]) -> None:
        if self.active:
            atomic_write_bytes(self.root / "summary.json", json.dumps(data, indent=2).encode())

    # -- pictures ---------------------------------------------------------------------------------------------------
    def sample_grid(self, images: torch.Tensor, name: str, nrow: int | None = None) -> Path | None:
        if not self.active:
            return None
        path = self.root / "samples" / name
        with names_file(path):
            viz.save_grid(images, path, nrow)
        return path

    def refresh_plots(self, gif: bool = True) -> None:
        """losses.png (and progress.gif, which re-encodes every grid, so only at the end) from what is written."""
        if not self.active:
            return
        with names_file(self.root / "losses.png"):
            viz.plot_losses(self.root / "metrics.jsonl", self.root / "losses.png", title=self.root.name)
        frames = sorted((self.root / "samples").glob("step-*.png")) if gif else []
        if frames:
            with names_file(self.root / "progress.gif"):
                viz.save_gif(frames[-200:], self.root / "progress.gif")

    # -- messages ---------------------------------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.active:
            print(msg, file=sys.stderr, flush=True)
