"""What a run shows while it trains: metric rows, preview grids, plots, TensorBoard events and the HTML report, all
through :class:`RunDir` (so only rank 0 writes). The loop decides when; this module decides how."""

from __future__ import annotations

from typing import Any

import torch

from .. import viz
from .rundir import RunDir


class RunOutputs:
    """metrics.jsonl rows, samples/*.png, losses.png, progress.gif, report.html, and TensorBoard when asked."""

    def __init__(self, run: RunDir, tensorboard: bool = False) -> None:
        self.run = run
        self.tb = None
        if tensorboard and run.active:
            from ..tensorboard import TensorBoardLogger  # a clear error names the missing package

            self.tb = TensorBoardLogger(run.root)

    def row(self, step: int, epoch: float, values: dict[str, float], **extra: Any) -> None:
        """One metrics.jsonl row (losses, scores, images/s), mirrored to TensorBoard."""
        self.run.log({"step": step, "epoch": round(epoch, 4), **values, **extra})
        if self.tb is not None:
            self.tb.log_scalars(step, {**values, **{k: v for k, v in extra.items() if isinstance(v, (int, float))}})

    def event(self, step: int, name: str, **values: Any) -> None:
        self.run.log({"step": step, "event": name, **values})

    def previews(self, step: int, pics: dict[str, tuple[torch.Tensor, int]]) -> None:
        for name, (images, nrow) in pics.items():
            self.run.write_sample(f"{name}-{step:07d}.png", viz.grid_png(images, nrow))
            if self.tb is not None:
                self.tb.log_images(step, f"samples/{name}", images, nrow)

    def plots(self, gif: bool) -> None:
        """losses.png, and progress.gif (which re-encodes the grids, so only at the end)."""
        if not self.run.active:
            return
        self.run.write_file("losses.png", viz.losses_png(self.run.metrics_file, title=self.run.root.name))
        if gif and (data := viz.gif_bytes(self.run.sample_frames())) is not None:
            self.run.write_file("progress.gif", data)

    def report(self) -> None:
        """report.html: one page with what was trained, curves, grids over training and scores."""
        if self.run.active:
            from ..report import write_report

            write_report([self.run.root])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
