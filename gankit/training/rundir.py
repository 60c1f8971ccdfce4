"""The one owner of a run folder: every path in it and every write to it, and the only code that knows the rank.

    runs/<name>/
      config.yaml  run.json  metrics.jsonl  summary.json  losses.png  progress.gif
      samples/step-NNNNNNN.png [classes-NNNNNNN.png]   checkpoints/<name>/ + checkpoints/latest

Under torch.distributed only rank 0 writes; on other ranks every write is a no-op, so the loop never branches on
the rank itself. Every file is written atomically (:mod:`gankit.core.io`). Pictures are rendered by
:mod:`gankit.viz`; this module only puts them in place.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ..config.schema import Config, dump_yaml, read_yaml
from ..core.errors import GankitError
from ..core.io import atomic_write_bytes, names_file, read_jsonl, write_json


def process_rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def default_run_dir(model: str, data: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{model}-{data}"


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def load_run_config(run_dir: Path) -> Config:
    """The resolved config a run saved."""
    if not run_dir.exists():
        raise GankitError(f"run folder {run_dir} does not exist")
    if not is_run_dir(run_dir):
        raise GankitError(f"{run_dir} is not a gankit run folder (no config.yaml and checkpoints/); pass the --out of a `gankit train`")
    return Config.from_dict(read_yaml(run_dir / "config.yaml"), where="config")


class RunDir:
    """Paths and writes of one run folder."""

    def __init__(self, root: str | Path, rank: int | None = None) -> None:
        self.root = Path(root)
        self.rank = process_rank() if rank is None else rank
        self.active = self.rank == 0
        self._metrics: IO[str] | None = None

    # -- paths ------------------------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"

    def sample_frames(self) -> list[Path]:
        """The fixed-noise grids in training order (the frames of progress.gif)."""
        return sorted(self.samples.glob("step-*.png"))

    # -- folder -----------------------------------------------------------------------------------------------------
    def check_new(self) -> None:
        """Refuse to start a new run in a folder that holds anything (nothing is overwritten)."""
        if not self.root.exists():
            return
        if self.root.is_file():
            raise GankitError(f"--out {self.root} is a file; choose a folder path")
        if any(self.root.iterdir()):
            hint = f"continue it with --resume {self.root}" if is_run_dir(self.root) else "choose another --out"
            raise GankitError(f"--out {self.root} already exists and is not empty; {hint} (nothing was overwritten)")

    def open(self) -> None:
        if not self.active:
            return
        self.samples.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.metrics_file, "a", encoding="utf-8")

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
        with names_file(self.metrics_file):
            self._metrics.write(json.dumps(row) + "\n")
            self._metrics.flush()

    def trim_metrics(self, last_step: int) -> None:
        """Keep the metrics.jsonl rows up to ``last_step`` (a resume redoes the steps after it) and drop lines a kill
        cut short or that are not objects. Call before :meth:`open`."""
        path = self.metrics_file
        if not self.active or not path.is_file():
            return
        lines = path.read_bytes().splitlines()
        keep = []
        for line in lines:
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(row, dict) and not (isinstance(row.get("step"), int) and row["step"] > last_step):
                keep.append(line)
        if len(keep) != len(lines):
            atomic_write_bytes(path, b"".join(line + b"\n" for line in keep))

    def rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_file)

    def summary(self, data: dict[str, Any]) -> None:
        if self.active:
            write_json(self.root / "summary.json", data)

    # -- pictures (rendered elsewhere, put in place here) -----------------------------------------------------------
    def write_sample(self, name: str, png: bytes) -> Path | None:
        if not self.active:
            return None
        path = self.samples / name
        atomic_write_bytes(path, png)
        return path

    def write_file(self, name: str, data: bytes) -> None:
        """A top-level file of the run (losses.png, progress.gif, report.html)."""
        if self.active:
            atomic_write_bytes(self.root / name, data)

    # -- messages ---------------------------------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.active:
            print(msg, file=sys.stderr, flush=True)
