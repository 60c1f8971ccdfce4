"""Model families (tasks): their registry, and loading a trained run for inference through its task."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from ..config.schema import Config
from ..core.errors import GankitError
from ..nets import MODELS
from ..training import checkpoint as ckpt
from ..training.rundir import load_run_config
from .base import TASKS, Task, TaskSpec, TrainedRun
from . import cyclegan, gan, pix2pix  # noqa: E402,F401  (importing registers them)
from .gan import TrainedGenerator
from .pix2pix import Translator

__all__ = ["TASKS", "Task", "TaskSpec", "TrainedGenerator", "TrainedRun", "Translator", "load", "task_of"]

T = TypeVar("T")


def task_of(cfg: Config) -> TaskSpec:
    """The task that trains ``cfg.model.name``."""
    return TASKS.get(MODELS.get(cfg.model.name).task)


def load(run_dir: str | Path, which: str = "latest", want: type[T] | None = None) -> Any:
    """The inference object of a run (a :class:`TrainedGenerator` for GANs, a :class:`Translator` for pix2pix),
    rebuilt from ``which`` checkpoint. ``want``: the type the caller needs; another family is a one-line error
    naming the command that fits it."""
    run_dir = Path(run_dir)
    load_run_config(run_dir)  # a clear error when run_dir is not a run
    ck = ckpt.load_named(run_dir, which)
    try:
        cfg = Config.from_dict(ck.state["config"])
        meta = ck.state.get("meta", {})
        if not isinstance(meta, dict):
            raise TypeError("meta is not a mapping")
        spec = task_of(cfg)
        out = spec.load(ck, TrainedRun(cfg, meta, ck.step, run_dir))
    except (KeyError, TypeError, ValueError) as e:
        raise GankitError(f"checkpoint {ck.path}/state.json is damaged or incomplete ({type(e).__name__}: {e})") from None
    if want is not None and not isinstance(out, want):
        raise GankitError(f"run {run_dir} trains '{cfg.model.name}' ({MODELS.get(cfg.model.name).task}): use `{spec.use}`")
    return out
