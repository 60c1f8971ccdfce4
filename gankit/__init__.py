"""gankit: train, compare and evaluate generative adversarial networks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .config.schema import FAMILY_KEYS, Config  # noqa: E402
from .core.errors import GankitError  # noqa: E402


def _import_families() -> None:
    """Import every model family (gankit/tasks/*.py), so that the config keys they declare are known."""
    from . import tasks  # noqa: F401


# The config schema imports no family; it calls this the first time a family's keys are needed (reading a config,
# listing its keys), so `from gankit.config import Config` stays light until then.
FAMILY_KEYS.discover_with(_import_families)

if TYPE_CHECKING:  # pragma: no cover
    from .training.loop import Run


def resolve(file: Any = None, overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> Config:
    """The layered, validated config (see :func:`gankit.config.layering.resolve`)."""
    from .config.layering import resolve as _resolve

    return _resolve(file=file, overrides=overrides, base=base)


def train(
    config: "Config | dict | str | None" = None, out: str | None = None, resume: str | None = None, **overrides: Any
) -> "Run":
    """Train a GAN. ``config``: a Config, a dict of sections, a YAML path, or None for the defaults (with ``resume``:
    the run's own config); ``overrides``: dotted keys (``**{"train.steps": 100}``). A resumed run may change only its
    budget and side settings (:data:`gankit.config.schema.RESUME_MAY_CHANGE`). Returns a
    :class:`gankit.training.loop.Run`."""
    from .config.schema import budget_overrides
    from .training.loop import train as _train

    overrides = budget_overrides(overrides)  # as on the command line: a budget given here replaces the file's
    if resume is not None and config is None:  # continue with the run's own config, as `train --resume` does
        from pathlib import Path

        from .config.layering import resume_config
        from .training.rundir import load_run_config

        cfg = resume_config(load_run_config(Path(resume)).to_dict(), overrides, resume)
    elif isinstance(config, Config):
        cfg = config.replace(**overrides) if overrides else config
    elif isinstance(config, dict):
        cfg = resolve(base=config, overrides=overrides)
    else:
        cfg = resolve(file=config, overrides=overrides)
    return _train(cfg, out=out, resume=resume)


def load(run_dir: str, checkpoint: str = "latest") -> Any:
    """A trained run for inference: ``gankit.load("runs/m1").sample(16, seed=0)`` -> (N, C, H, W) in [-1, 1] for
    GANs; a Translator (``.translate(images)``) for image-to-image runs."""
    from .tasks import load as _load

    return _load(run_dir, checkpoint)


__all__ = ["Config", "GankitError", "__version__", "load", "resolve", "train"]
