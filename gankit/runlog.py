"""The one place that writes a run's files and prints to the user, and the only code that knows the process rank.

Under torch.distributed only rank 0 writes; other ranks get a writer whose methods do nothing, so the training loop
never branches on the rank itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
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
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()

    def summary(self, data: dict[str, Any]) -> None:
        if self.active:
            atomic_write_bytes(self.root / "summary.json", json.dumps(data, indent=2).encode())

    # -- pictures ---------------------------------------------------------------------------------------------------
    def sample_grid(self, images: torch.Tensor, name: str, nrow: int | None = None) -> Path | None:
        if not self.active:
            return None
        path = self.root / "samples" / name
        viz.save_grid(images, path, nrow)
        return path

    def refresh_plots(self) -> None:
        """losses.png and progress.gif from what the run has written so far."""
        if not self.active:
            return
        viz.plot_losses(self.root / "metrics.jsonl", self.root / "losses.png", title=self.root.name)
        frames = sorted((self.root / "samples").glob("step-*.png"))
        if frames:
            viz.save_gif(frames[-200:], self.root / "progress.gif")

    # -- messages ---------------------------------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.active:
            print(msg, file=sys.stderr, flush=True)
