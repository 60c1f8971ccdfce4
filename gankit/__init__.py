"""gankit: train, compare and evaluate generative adversarial networks."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, resolve  # noqa: E402
from .errors import GankitError  # noqa: E402


def train(config: "Config | dict | str | None" = None, out: str | None = None, resume: str | None = None, **overrides):
    """Train a GAN. ``config``: a Config, a dict of sections, a YAML path, or None for the defaults;
    ``overrides``: dotted keys (``**{"train.steps": 100}``). Returns a :class:`gankit.training.Run`."""
    from .training import train as _train

    from .config import budget_overrides

    overrides = budget_overrides(overrides)  # as on the command line: a budget given here replaces the file's
    if isinstance(config, Config):
        cfg = config.replace(**overrides) if overrides else config
    elif isinstance(config, dict):
        cfg = resolve(base=config, overrides=overrides)
    else:
        cfg = resolve(file=config, overrides=overrides)
    return _train(cfg, out=out, resume=resume)


def load(run_dir: str, checkpoint: str = "latest"):
    """A trained generator from a run folder: ``load("runs/m1").sample(16, seed=0)`` -> (N, C, H, W) in [-1, 1]."""
    from .sampling import load as _load

    return _load(run_dir, checkpoint)


__all__ = ["Config", "GankitError", "__version__", "load", "resolve", "train"]
