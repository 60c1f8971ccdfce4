"""TensorBoard event files for a run (``train.tensorboard=true``): scalars and sample grids under RUN/tensorboard/.

TensorBoard is optional: ``pip install tensorboard`` (or ``pip install 'gankit[tensorboard]'``). Without it,
constructing :class:`TensorBoardLogger` raises a GankitError that says so; nothing else in gankit needs it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .core.errors import GankitError

SUBDIR = "tensorboard"


class TensorBoardLogger:
    """Writes to ``run_dir/tensorboard``; point ``tensorboard --logdir`` at the run folder (or a folder of runs)."""

    def __init__(self, run_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises ImportError naming tensorboard when the package is missing
            raise GankitError(
                "train.tensorboard=true needs the tensorboard package: pip install tensorboard "
                "(or set train.tensorboard=false)"
            ) from None
        self.dir = Path(run_dir) / SUBDIR
        self._w = SummaryWriter(log_dir=str(self.dir))

    def log_scalars(self, step: int, row: dict[str, float]) -> None:
        """One point per numeric key of ``row`` (e.g. "loss/d", "eval/fd", "images_per_s"); "step", "epoch", "time"
        and non-finite or non-numeric values are skipped (TensorBoard draws NaN as a gap anyway)."""
        for k, v in row.items():
            if k in ("step", "time") or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            self._w.add_scalar(k, float(v), global_step=step)

    def log_images(self, step: int, name: str, images: torch.Tensor, nrow: int = 8) -> None:
        """``images`` (N, C, H, W) float in [-1, 1] as one grid image called ``name``."""
        from .viz import grid

        arr = grid(images.detach().cpu(), nrow)  # (H', W', C) uint8
        if arr.shape[-1] == 1:
            arr = arr.repeat(3, axis=-1)  # TensorBoard shows HWC with 3 channels
        self._w.add_image(name, arr, global_step=step, dataformats="HWC")

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        self._w.close()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
