"""Argument helpers shared by the commands: config overrides from flags, checked output paths, the parser type.

Imports nothing heavy, so that `gankit --help` and argument errors answer at once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from ..config.schema import BUDGET_KEYS, budget_overrides, parse_set
from ..core.errors import GankitError
from ..core.io import refuse_existing

# flag attribute -> config key, for every command that builds a config (train, sweep)
FLAG_KEYS = {
    "data": "data.name",
    "data_dir": "data.dir",
    "split": "data.split",
    "model": "model.name",
    "seed": "seed",
    "threads": "train.threads",
    "device": "train.device",
    "eval_every": "train.eval_every",
    "on_nan": "train.on_nan",
    **{k.split(".", 1)[1]: k for k in BUDGET_KEYS},
}
SPLITS = ["train", "test", "val", "all"]


class Parser(argparse.ArgumentParser):
    """argparse with gankit's error contract: one line, exit code 2 (via GankitError), no usage dump."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise GankitError(f"{self.prog}: {message} (see {self.prog} --help)")


def add_data_flags(p: argparse.ArgumentParser, every: str = "") -> None:
    """--data/--data-dir/--split and the budget and device flags, the same for `train` and `sweep`."""
    p.add_argument("--data", help=f"data set{every} (default digits; `gankit list` names them)")
    p.add_argument("--data-dir", help="folder with the data set's files (or the image folder)")
    p.add_argument("--split", choices=SPLITS, help="split to train on (default train)")
    p.add_argument("--steps", type=int, help=f"budget{every} in generator updates")
    p.add_argument("--epochs", type=float, help=f"budget{every} in passes over the data")
    p.add_argument(
        "--max-minutes", type=float, help=f"wall-clock budget{every}; the run stops and saves when it is spent"
    )
    p.add_argument(
        "--cpu-minutes",
        type=float,
        help=f"budget{every} in minutes of this process's CPU time (train.clock=cpu): "
        f"the same compute on a busy machine as on an idle one; use with --threads 1 "
        f"to compare recipes",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: the cores this process may use; more than twice "
        "those is warned about, as it slows every step)",
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key, e.g. optim.lr_g=1e-4")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted config keys the flags set; a budget flag replaces the file's budget (see budget_overrides)."""
    out: dict[str, Any] = {}
    for attr, key in FLAG_KEYS.items():
        v = getattr(args, attr, None)
        if v is not None:
            out[key] = v
    for key in BUDGET_KEYS:
        flag = "--" + key.split(".", 1)[1].replace("_", "-")
        if key in out and not out[key] > 0:  # 0 means "not set" in a config file; as a flag it would end nothing
            raise GankitError(
                f"{flag} {out[key]}: a budget must be > 0 (0 means 'not set' in a config file); "
                f"omit {flag} to use the config's budget"
            )
    cpu = getattr(args, "cpu_minutes", None)
    if cpu is not None:
        if "train.max_minutes" in out:
            raise GankitError(
                f"--cpu-minutes {cpu} and --max-minutes {out['train.max_minutes']}: give one time budget "
                f"(CPU time or wall-clock)"
            )
        if not cpu > 0:
            raise GankitError(f"--cpu-minutes {cpu}: a budget must be > 0; omit it to use the config's budget")
        out["train.max_minutes"], out["train.clock"] = cpu, "cpu"
    if getattr(args, "no_progress", False):
        out["train.progress"] = False
    for item in args.set or []:
        k, v = parse_set(item)
        out[k] = v
    return budget_overrides(out)


def add_force_flag(p: argparse.ArgumentParser) -> None:
    """--force for every command that writes files the user names (see :func:`gankit.core.io.refuse_existing`)."""
    p.add_argument("--force", action="store_true", help="replace output files that already exist")


def out_file(path: str, exts: tuple[str, ...], force: bool = False) -> Path:
    """The checked --out file; its folder is created by :func:`make_parent` once there is something to write."""
    p = Path(path)
    if p.is_dir():
        raise GankitError(f"--out {p} is a folder; give a file name such as {p / ('out' + exts[0])}")
    if p.suffix.lower() not in exts:
        raise GankitError(f"--out {p}: use a file ending in {' or '.join(exts)}")
    refuse_existing([p], force)
    return p


def make_parent(p: Path) -> Path:
    if p.parent.exists() and not p.parent.is_dir():
        raise GankitError(f"--out {p}: {p.parent} is a file, not a folder")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p
