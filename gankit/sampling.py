"""Use a trained run: rebuild G from the run's saved config and weights, then sample or interpolate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from . import checkpoint as ckpt
from .config import Config
from .errors import GankitError
from .models import MODELS, build_models, sample_noise
from .training import load_run_config


@dataclass
class TrainedGenerator:
    """G of a finished (or running) run, in eval mode, on the CPU unless moved."""

    g: nn.Module
    config: Config
    image_shape: tuple[int, int, int]
    class_names: list[str]
    step: int
    run_dir: Path

    @property
    def num_classes(self) -> int:
        return self.config.model.num_classes

    def noise(self, n: int, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return sample_noise(n, self.config.model.z_dim, self.config.model.noise, "cpu", gen)

    def labels(self, n: int, class_id: int | None = None) -> torch.Tensor | None:
        """Requested class for every sample, or classes in turn (0, 1, ..., K-1, 0, ...) for a conditional G."""
        if not self.num_classes:
            if class_id is not None:
                raise GankitError(f"--class {class_id}: run {self.run_dir} is not conditional (model.num_classes=0)")
            return None
        if class_id is not None:
            if not 0 <= class_id < self.num_classes:
                raise GankitError(f"--class {class_id}: run {self.run_dir} has classes 0..{self.num_classes - 1}")
            return torch.full((n,), class_id, dtype=torch.long)
        return torch.arange(n) % self.num_classes

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None, batch: int = 500) -> torch.Tensor:
        """(N, z_dim) noise -> (N, C, H, W) float in [-1, 1]; batched so N can be large."""
        dev = next(self.g.parameters()).device
        out = []
        for i in range(0, z.shape[0], batch):
            y = None if labels is None else labels[i : i + batch].to(dev)
            out.append(self.g(z[i : i + batch].to(dev), y).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, *self.image_shape))

    def sample(self, n: int, seed: int = 0, class_id: int | None = None) -> torch.Tensor:
        """n images (N, C, H, W) in [-1, 1]; the same (n, seed) gives the same images."""
        return self.generate(self.noise(n, seed), self.labels(n, class_id))


def load(run_dir: str | Path, which: str = "latest") -> TrainedGenerator:
    """Rebuild G from ``run_dir`` (the EMA copy when the run kept one)."""
    run_dir = Path(run_dir)
    load_run_config(run_dir)  # a clear error when run_dir is not a run
    ck = ckpt.load_named(run_dir, which)
    saved_cfg = Config.from_dict(ck.state["config"])
    meta = ck.state.get("meta", {})
    shape = tuple(meta.get("image_shape", ()))
    if len(shape) != 3:
        raise GankitError(f"checkpoint {ck.path} does not record the image shape; it was not written by gankit train")
    if MODELS.meta(saved_cfg.model.name).get("kind", "gan") != "gan":
        raise GankitError(f"run {run_dir} trains '{saved_cfg.model.name}', an image-to-image model: use `gankit translate`")
    g, _ = build_models(saved_cfg.model, shape)  # type: ignore[arg-type]
    name = "ema" if "ema" in ck.tensors else "g"
    ckpt.load_module(g, ck.tensors[name], "generator", ck)
    g.eval()
    return TrainedGenerator(g, saved_cfg, shape, list(meta.get("class_names", [])), ck.step, run_dir)  # type: ignore[arg-type]


@dataclass
class Translator:
    """G of an image-to-image run: input images (A) -> outputs (B)."""

    g: nn.Module
    config: Config
    in_channels: int
    image_shape: tuple[int, int, int]
    step: int
    run_dir: Path

    @torch.no_grad()
    def translate(self, a: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """(N, C_A, S, S) float in [-1, 1] -> (N, C_B, S, S) in [-1, 1]; G in eval mode, so outputs are deterministic."""
        if a.shape[1] != self.in_channels:
            from .data.transforms import convert_channels

            a = convert_channels(((a + 1) * 127.5).round().clamp(0, 255).to(torch.uint8), self.in_channels).float() / 127.5 - 1
        out = [self.g(a[i : i + batch]).cpu() for i in range(0, a.shape[0], batch)]
        return torch.cat(out) if out else torch.zeros((0, *self.image_shape))


def load_translator(run_dir: str | Path, which: str = "latest") -> Translator:
    run_dir = Path(run_dir)
    load_run_config(run_dir)
    ck = ckpt.load_named(run_dir, which)
    cfg = Config.from_dict(ck.state["config"])
    if MODELS.meta(cfg.model.name).get("kind") != "pix2pix":
        raise GankitError(f"run {run_dir} trains '{cfg.model.name}', not an image-to-image model: use `gankit sample`")
    meta = ck.state.get("meta", {})
    shape = tuple(meta["image_shape"])
    in_ch = int(meta["input_channels"])
    g, _ = build_models(cfg.model, shape, in_ch)  # type: ignore[arg-type]
    ckpt.load_module(g, ck.tensors["g"], "generator", ck)
    g.eval()
    return Translator(g, cfg, in_ch, shape, ck.step, run_dir)  # type: ignore[arg-type]
