"""Model families: their registry, filled by importing every module of this package (a family is one module here,
``gankit/tasks/<family>.py``, registered with ``TASKS.add``: no list to edit), and loading a trained run for inference
through its family."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, TypeVar

from ..config.schema import Config
from ..core.errors import GankitError
from ..nets import MODELS
from ..training import checkpoint as ckpt
from ..training.rundir import load_run_config
from .base import TASKS, FamilyTask, Task, TaskSpec, TrainedRun

# Every family module registers itself when imported. Modules whose name starts with "_" (templates, helpers) and
# the base are not families.
for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_") and _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

from .gan import TrainedGenerator  # noqa: E402  (the public inference types, re-exported)
from .pix2pix import Translator  # noqa: E402

__all__ = [
    "TASKS",
    "FamilyTask",
    "Task",
    "TaskSpec",
    "TrainedGenerator",
    "TrainedRun",
    "Translator",
    "family_of",
    "family_of_run",
    "load",
    "task_of",
]

T = TypeVar("T")


def family_of(cfg: Config) -> str:
    """The name of the family (a key of :data:`TASKS`) that trains ``cfg.model.name``."""
    return MODELS.get(cfg.model.name).family


def family_of_run(meta: dict[str, Any], model_name: str | None = None) -> str | None:
    """The family a run folder's run.json (``meta``) names: ``family``, or ``recipe`` as runs of gankit before the
    word was settled wrote it; else the family of its model; None when neither is known here."""
    for key in ("family", "recipe"):
        if isinstance(meta.get(key), str) and meta[key] in TASKS:
            return meta[key]
    if model_name is not None and model_name in MODELS:
        return MODELS.get(model_name).family
    return None


def task_of(cfg: Config) -> TaskSpec:
    """The family's spec that trains ``cfg.model.name``."""
    return TASKS.get(family_of(cfg))


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
        raise GankitError(
            f"checkpoint {ck.path}/state.json is damaged or incomplete ({type(e).__name__}: {e})"
        ) from None
    if want is not None and not isinstance(out, want):
        raise GankitError(f"run {run_dir} trains '{cfg.model.name}' ({family_of(cfg)}): use `{spec.use}`")
    return out
