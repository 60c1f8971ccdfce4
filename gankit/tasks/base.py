"""What a model family is to the rest of gankit: the :class:`Task` protocol the training loop drives, and the
:class:`TaskSpec` that the task registry holds.

A task owns one family (GAN, pix2pix): how to build its modules, run one training step, draw its previews, score
validation data, and what its checkpoints hold; its spec adds how a trained run is loaded for inference, scored by
``gankit eval`` and which validation data it trains against. Nothing outside ``gankit.tasks`` asks which family a
run is: adding a family (say CycleGAN) touches only ``tasks/`` and ``nets/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..config.schema import Config
from ..core.registry import Registry
from ..data.base import Batcher, ImageData
from ..training.checkpoint import Checkpoint


class Task(Protocol):
    """The training side of a model family, built by ``TaskSpec.build(cfg, data, device, val)``."""

    best_metric: tuple[str, str]  # (metric key, "min" or "max") that the `best` checkpoint follows

    @property
    def modules(self) -> dict[str, nn.Module]: ...  # saved in every checkpoint under these names

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def step(self, batcher: Batcher, t: float) -> dict[str, torch.Tensor]: ...  # one G update (after its D updates)

    def images_per_step(self) -> int: ...  # real images consumed by one step, for images/s

    def preview(self) -> dict[str, tuple[torch.Tensor, int]]: ...  # name -> (images in [-1, 1], per row)

    def validate(self) -> dict[str, float]: ...  # "eval/..." scores on validation data; {} when there are none

    def settle(self) -> None: ...  # bring tensors derived from others up to date (called before every save)

    def extra_state(self) -> dict[str, Any]: ...  # JSON state beyond modules and optimizers (saved in checkpoints)

    def load_extra_state(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class TrainedRun:
    """What every inference object knows of the run it was loaded from."""

    config: Config
    meta: dict[str, Any]  # run.json-style facts: image_shape, input_channels, class_names, ...
    step: int
    run_dir: Path


@dataclass(frozen=True)
class TaskSpec:
    build: Callable[[Config, ImageData, torch.device, ImageData | None], Task]
    # (config, training split, say) -> (training data, validation data or None), the same in training and eval
    split_validation: Callable[[Config, ImageData, Callable[[str], None]], tuple[ImageData, ImageData | None]]
    # (checkpoint, trained run) -> the family's inference object (TrainedGenerator, Translator)
    load: Callable[[Checkpoint, TrainedRun], Any]
    # (inference object, the run's config with eval's data overrides, options of `gankit eval`) -> metrics
    evaluate: Callable[..., dict[str, Any]]
    use: str  # the command that uses a trained run, for messages ("gankit sample", "gankit translate")
    next_steps: Callable[[Path], list[str]]  # lines `gankit train` prints at its end
    best_metric: tuple[str, str]  # (key, "min"/"max") that the `best` checkpoint follows (the Task's own)
    preview_title: str  # how reports name the preview grids over training
    preview_caption: str
    validation_title: str = ""  # how reports name the validation scores ("" = no table)
    latent_interpolation: bool = False  # its inference object walks a latent space (reports draw a strip)
    validate_with_previews: bool = False  # score at every preview grid when train.eval_every is 0 (cheap scores)
    scores_samples: bool = False  # `gankit eval` scores generated samples (FD protocols, --ref-stats apply)


TASKS: Registry[TaskSpec] = Registry("model family", TaskSpec)
