"""The one owner of a run folder: every path in it and every write to it, and the only code that knows the rank.

    runs/<name>/
      config.yaml  run.json  metrics.jsonl  summary.json  losses.png  progress.gif
      samples/step-NNNNNNN.png [classes-NNNNNNN.png]   checkpoints/<name>/ + checkpoints/latest
      .lock        while a `gankit train` writes here: {"pid", "host", "started"} of that process

One process writes a run folder at a time: :meth:`RunDir.lock` takes ``.lock`` (created with O_EXCL) before anything
is written and :meth:`RunDir.close` gives it back. A second `gankit train` on the folder gets a one-line error naming
the holder; a lock left by a process that died (same host, PID gone) is taken over with a note. Readers (sample,
eval, compare, report) need no lock: every file is replaced atomically.

Under torch.distributed only rank 0 writes; on other ranks every write is a no-op, so the loop never branches on
the rank itself. Every file is written atomically (:mod:`gankit.core.io`). Pictures are rendered by
:mod:`gankit.viz`; this module only puts them in place.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ..config.schema import Config, dump_yaml, read_yaml
from ..core.errors import GankitError
from ..core.io import atomic_write_bytes, names_file, pid_alive, read_jsonl, write_json

LOCK = ".lock"


def process_rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def default_run_dir(model: str, data: str, root: str | Path = "runs", now: datetime | None = None) -> Path:
    """A new, empty run folder ``runs/<time>-<model>-<data>``, created here so that it is this run's alone: two runs
    started in the same second (a script, a sweep on two shells) get ``...-2``, ``...-3`` (mkdir is exclusive)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = root / (f"{stamp}-{model}-{data}" + (f"-{n}" if n > 1 else ""))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise GankitError(f"{root} already holds 9999 runs named {stamp}-{model}-{data}*; pass --out")  # pragma: no cover


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def load_run_config(run_dir: Path) -> Config:
    """The resolved config a run saved."""
    if not run_dir.exists():
        raise GankitError(f"run folder {run_dir} does not exist")
    if not is_run_dir(run_dir):
        raise GankitError(
            f"{run_dir} is not a gankit run folder (no config.yaml and checkpoints/); pass the --out of a `gankit train`"
        )
    return Config.from_dict(read_yaml(run_dir / "config.yaml"), where="config")


class RunDir:
    """Paths and writes of one run folder."""

    def __init__(self, root: str | Path, rank: int | None = None, reserved: bool = False) -> None:
        self.root = Path(root)
        self.reserved = reserved  # root is an empty folder made for this run (default_run_dir): lock() owns it
        self.rank = process_rank() if rank is None else rank
        self.active = self.rank == 0
        self._metrics: IO[str] | None = None
        self._lock: bytes | None = None  # the content of the .lock this process wrote, while it holds it
        self._made: list[Path] = []  # folders lock() created (deepest first): close() removes them if still empty

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
        if any(p.name != LOCK for p in self.root.iterdir()):  # (a lock alone: lock() says whose, or takes it over)
            hint = f"continue it with --resume {self.root}" if is_run_dir(self.root) else "choose another --out"
            raise GankitError(f"--out {self.root} already exists and is not empty; {hint} (nothing was overwritten)")

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK

    def lock(self, say: Any = None) -> None:
        """Become the one writer of this run folder (creating the folder for a new run), or raise GankitError naming
        the process that is. Call before anything is written. A lock whose process is gone (same host, PID not
        alive) is taken over with a note; one from another host is never guessed stale."""
        if not self.active:
            return
        self._made = [p for p in (self.root, *self.root.parents) if not p.exists()]
        if self.reserved and self.root not in self._made:
            self._made.insert(0, self.root)  # removed again by unlock() if nothing was written into it
        self.root.mkdir(parents=True, exist_ok=True)
        mine = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now().isoformat(timespec="seconds")}
        ).encode()
        for _ in range(2):  # the second try follows taking over a stale lock
            try:
                fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self._stale_or_raise()
                # Between reading the stale lock and removing it another process may have taken it over: remove
                # it only if it still holds what was read (the window left is one read and one unlink wide).
                if self.lock_file.read_bytes() == held:
                    self.lock_file.unlink(missing_ok=True)
                    (say or self.say)(f"note: took over the lock {self.lock_file} left by a process that is gone")
                continue
            with names_file(self.lock_file), os.fdopen(fd, "wb") as f:
                f.write(mine)
            self._lock = mine
            return
        self._stale_or_raise()  # someone else won the race for the stale lock: name them
        raise GankitError(f"cannot take the lock {self.lock_file}; try again")  # pragma: no cover

    def _stale_or_raise(self) -> bytes:
        """The bytes of a lock file that no live process holds; else GankitError naming the holder."""
        try:
            raw = self.lock_file.read_bytes()
        except FileNotFoundError:
            return b""  # released in the meantime
        try:
            holder = json.loads(raw)
            pid, host = int(holder["pid"]), str(holder["host"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            # Written by a process killed between creating and filling it (or by hand): stale once it is old.
            if time.time() - self.lock_file.stat().st_mtime > 10:
                return raw
            raise GankitError(
                f"run folder {self.root} is being opened by another process ({self.lock_file} was just "
                f"created); try again in a moment"
            ) from None
        if host == socket.gethostname() and not pid_alive(pid):
            return raw
        since = f", since {holder['started']}" if isinstance(holder.get("started"), str) else ""
        raise GankitError(
            f"run folder {self.root} is in use by another gankit train (PID {pid} on host {host}{since}); "
            f"wait for it to finish or stop it (if that process is gone, delete {self.lock_file})"
        )

    def unlock(self) -> None:
        """Give the lock back (only the one this process wrote); remove a folder lock() made that stayed empty."""
        if self._lock is None:
            return
        try:
            if self.lock_file.read_bytes() == self._lock:
                self.lock_file.unlink()
        except FileNotFoundError:
            pass
        self._lock = None
        for d in self._made:  # a new run that failed before writing anything leaves nothing behind
            if not d.is_dir() or any(d.iterdir()):
                break
            d.rmdir()
        self._made = []

    def open(self) -> None:
        if not self.active:
            return
        self.samples.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.metrics_file, "a", encoding="utf-8")

    def close(self) -> None:
        """Close the metrics log and give the lock back; safe to call more than once."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.unlock()

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


def sweep_run_dirs(sweep: Path) -> list[Path]:
    """The run folders a sweep folder's sweep.json lists; anything but a list of {"dir": "a plain name"} is a one-line
    error (a hand-edited or foreign sweep.json must not point compare or report outside the sweep folder either)."""
    damaged = GankitError(f"{sweep / 'sweep.json'} is damaged; pass the run folders themselves")
    try:
        runs = json.loads((sweep / "sweep.json").read_bytes())["runs"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise damaged from None
    if not isinstance(runs, list):
        raise damaged
    dirs = []
    for r in runs:
        name = r.get("dir") if isinstance(r, dict) else None
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise damaged
        dirs.append(sweep / name)
    return dirs
