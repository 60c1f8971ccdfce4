"""pix2pix (Isola et al. 2017): U-Net G, PatchGAN D on (input, output) pairs, GAN loss + lambda * L1; translating
with a trained run, and its scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
from torch import Tensor

from ..config.schema import Config, family_config
from ..core.errors import GankitError
from ..data import load_dataset
from ..data.base import Batcher, ImageData, to_float, to_uint8
from ..data.paired import augment_pairs, default_load_size
from ..data.splits import holdout_or_val
from ..data.transforms import convert_channels
from ..losses import LOSSES
from ..metrics.suite import score_pairs
from ..nets import build_models
from ..training.checkpoint import Checkpoint, load_module
from .base import TASKS, FamilyTask, TaskSpec, TrainedRun, eval_mode, set_requires_grad

SHEET_ROWS = 8  # validation pairs on each epoch's input | output | target sheet
VAL_PAIRS = 32  # validation pairs scored during training (a fixed, evenly spread subset); `gankit eval` scores all


# ---------------------------------------------------------------------------------------------------------------------
# the family's own config keys (beside the shared ones of gankit/config/schema.py)


@family_config("model", family="pix2pix")
@dataclass(frozen=True)
class Pix2PixModel:
    """``model.*`` keys of image-to-image models (their networks: gankit/nets/pix2pix.py; CycleGAN's read them too)."""

    norm: Literal["batch", "instance", "none"] = "batch"
    patch: int = 70  # PatchGAN receptive field: 1, 16, 70 or 286


@family_config("loss", family="pix2pix")
@dataclass(frozen=True)
class Pix2PixLoss:
    l1_weight: float = 100.0  # pix2pix lambda

    def check(self) -> None:
        if self.l1_weight < 0:
            raise GankitError(f"loss.l1_weight must be >= 0, got {self.l1_weight}")


def as_rgb(x: Tensor, channels: int) -> Tensor:
    return x.expand(-1, channels, -1, -1) if x.shape[1] == 1 and channels == 3 else x


@torch.no_grad()
def translate(g: nn.Module, a: Tensor, batch: int = 32) -> Tensor:
    """Inputs (N, C_A, H, W) in [-1, 1] -> outputs (N, C_B, H, W) on the CPU; G in eval mode for the call, so the
    outputs are deterministic, then back in the mode it was in."""
    dev = next(g.parameters()).device
    with eval_mode(g):
        return torch.cat([g(a[i : i + batch].to(dev)).cpu() for i in range(0, a.shape[0], batch)])


class Pix2PixTask(FamilyTask):
    def __init__(self, cfg: Config, data: ImageData, device: torch.device, val: ImageData | None = None) -> None:
        if data.targets is None:
            raise GankitError(f"model {cfg.model.name} needs paired data; '{data.name}' has no targets")
        loss = LOSSES.get(cfg.loss.name)
        if loss.gradient_penalty or loss.weight_clip:
            raise GankitError(
                f"loss.name={cfg.loss.name} is not supported by pix2pix; use non_saturating, lsgan or hinge"
            )
        if cfg.train.accumulate > 1 or cfg.train.freeze_d:
            raise GankitError(
                f"train.accumulate and train.freeze_d are not supported by {cfg.model.name} yet (GAN "
                f"models only); set them to 1 and 0 (--init-from works)"
            )
        self.loss = loss
        self.in_channels = data.images.shape[1]
        self.image_shape = tuple(data.targets.shape[1:])
        nets = build_models(cfg.model, self.image_shape, self.in_channels)
        super().__init__(cfg, device, nets, channels_last=cfg.train.channels_last)
        self.g, self.d, self.opt_g, self.opt_d = nets["g"], nets["d"], self.opts["g"], self.opts["d"]
        self.g_fwd, self.d_fwd = self.fwd["g"], self.fwd["d"]  # g and d stay the plain modules (previews)
        self.load_size = default_load_size(cfg.data.image_size, cfg.data.load_size)
        self.val = val
        if val is not None and len(val) > VAL_PAIRS:  # the same pairs at every validation, so the scores compare
            pick = torch.linspace(0, len(val) - 1, VAL_PAIRS).round().long()
            self.val_a, self.val_b = val.images[pick], val.targets[pick]
        elif val is not None:
            self.val_a, self.val_b = val.images, val.targets
        src = val if val is not None and len(val) else data
        self.sheet_a = to_float(src.images[:SHEET_ROWS]).to(device)
        self.sheet_b = to_float(src.targets[:SHEET_ROWS]).to(device)

    @property
    def sampler(self) -> nn.Module:
        return self.g

    def step(self, batcher: Batcher, t: float) -> dict[str, Tensor]:
        cfg, g, d = self.cfg, self.g, self.d
        a8, _, b8 = self.batch(batcher)
        a, b = to_float(a8), to_float(b8)
        if cfg.data.jitter or cfg.data.flip:
            # Seeded by (seed, batch position, rank): deterministic and resumable without saving generator state.
            gen = torch.Generator(device=a.device).manual_seed(
                cfg.seed * 1_000_003 + batcher.epoch * 100_003 + batcher.pos + 7_919_000 * self.rank
            )
            load = self.load_size if cfg.data.jitter else cfg.data.image_size
            a, b = augment_pairs(a, b, load, cfg.data.flip, gen)
        a, b = a.contiguous(memory_format=self.memory_format), b.contiguous(memory_format=self.memory_format)
        g.train()
        d.train()
        set_requires_grad(d, True)
        with self.prec.autocast():
            fake = self.g_fwd(a)  # (B, C_B, H, W)
            d_real = self.d_fwd(torch.cat([a, b], 1))
            d_fake = self.d_fwd(torch.cat([a, fake.detach()], 1))
            # Halved, as in the paper, so D learns more slowly than G.
            loss_d = 0.5 * self.loss.d(d_real, d_fake, cfg.loss.label_smoothing)
        self.opt_d.zero_grad(set_to_none=True)
        self.update("d", loss_d)
        set_requires_grad(d, False)
        with self.prec.autocast():
            loss_gan = self.loss.g(self.d_fwd(torch.cat([a, fake], 1)))
            l1 = (fake.float() - b).abs().mean()
            loss_g = loss_gan + cfg.loss.l1_weight * l1
        self.opt_g.zero_grad(set_to_none=True)
        self.update("g", loss_g)
        return {
            "loss/d": loss_d.detach(),
            "loss/g": loss_g.detach(),
            "loss/g_gan": loss_gan.detach(),
            "l1": l1.detach(),
        }

    @torch.no_grad()
    def preview(self) -> dict[str, tuple[Tensor, int]]:
        """One row per validation pair: input | output | target."""
        out = translate(self.g, self.sheet_a).to(self.device)
        c = self.image_shape[0]
        rows = torch.stack([as_rgb(self.sheet_a, c), out, as_rgb(self.sheet_b, c)], 1)  # (R, 3, C, H, W)
        return {"step": (rows.flatten(0, 1), 3)}

    best_metric = ("eval/l1", "min")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """L1, PSNR and SSIM of G's outputs against the targets of at most VAL_PAIRS fixed validation pairs (so
        validation stays a small share of a run; `gankit eval` scores every pair)."""
        if self.val is None or len(self.val) == 0:
            return {}
        out = to_uint8(translate(self.g, to_float(self.val_a)))
        res = score_pairs(out, self.val_b)  # as `gankit eval` scores it: uint8 outputs, in chunks
        return {f"eval/{k}": float(res[k]) for k in ("l1", "psnr", "ssim")}


# ---------------------------------------------------------------------------------------------------------------------
# a trained run


@dataclass
class Translator:
    """G of an image-to-image run: input images (A) -> outputs (B)."""

    g: nn.Module
    config: Config
    in_channels: int
    image_shape: tuple[int, int, int]
    step: int
    run_dir: Path

    def translate(self, a: Tensor, batch: int = 16) -> Tensor:
        """(N, C_A, S, S) float in [-1, 1] -> (N, C_B, S, S) in [-1, 1]; G in eval mode, so outputs are deterministic."""
        if a.shape[0] == 0:
            return torch.zeros((0, *self.image_shape))
        if a.shape[1] != self.in_channels:
            a = to_float(convert_channels(to_uint8(a), self.in_channels))
        return translate(self.g, a, batch)

    def toward(self, direction: str) -> "Translator":
        """The translator for ``direction`` (`gankit translate --direction`): a pix2pix G translates one way only."""
        if direction != "AtoB":
            raise GankitError(
                f"--direction {direction}: run {self.run_dir} is a {self.config.model.name} run, which "
                f"translates one way only (its inputs to its targets); train with --set "
                f"data.direction=BtoA for the other way (--direction is for cyclegan runs)"
            )
        return self

    def export_parts(self) -> tuple[nn.Module, tuple[Tensor, ...], list[str], dict[str, Any]]:
        """(module, example inputs of batch 2, input names, metadata) for gankit.export."""
        _, h, w = self.image_shape
        example = torch.rand(2, self.in_channels, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
        meta = {
            "family": "pix2pix",
            "kind": "pix2pix",  # kind: the key exports of older gankit carry
            "image_shape": list(self.image_shape),
            "input_shape": [self.in_channels, h, w],
        }
        return self.g, (example,), ["inputs"], meta


def load_translator(ck: Checkpoint, run: TrainedRun) -> Translator:
    shape = tuple(run.meta["image_shape"])
    in_ch = int(run.meta["input_channels"])
    g = build_models(run.config.model, shape, in_ch)["g"]  # type: ignore[arg-type]
    load_module(g, ck.tensors["g"], "generator", ck)
    g.eval()
    return Translator(g, run.config, in_ch, shape, run.step, run.run_dir)  # type: ignore[arg-type]


def evaluate_translator(
    tr: Translator,
    cfg: Config,
    *,
    features: str,
    split: str | None,
    inception_path: str | None,
    progress: bool,
    **_: Any,
) -> dict[str, Any]:
    """`gankit eval` of a pix2pix run: L1/PSNR/SSIM (and FD with image features) on the pairs training validated on,
    or on ``split``."""
    from dataclasses import replace

    from ..metrics import build_extractor

    if split:
        val = load_dataset(replace(cfg.data, split=split, limit=0))
    else:  # exactly the pairs training validated on
        val = holdout_or_val(cfg, load_dataset(cfg.data), lambda m: None)[1]
    out = to_uint8(tr.translate(to_float(val.images)))
    ext = build_extractor(features if features != "classifier" else "pixels", None, inception_path, None, progress)
    res = score_pairs(out, val.targets, ext)
    res.update(run=str(tr.run_dir), step=tr.step, split=split or "val", features=ext.name)
    return res


def _next_steps(run_dir: Path) -> list[str]:
    return [f"translate: gankit translate {run_dir} IMAGE_OR_FOLDER --out DIR   scores: gankit eval {run_dir}"]


TASKS.add(
    "pix2pix",
    TaskSpec(
        build=Pix2PixTask,
        split_validation=holdout_or_val,
        load=load_translator,
        evaluate=evaluate_translator,
        use="gankit translate",
        next_steps=_next_steps,
        validate_with_previews=True,
        best_metric=Pix2PixTask.best_metric,
        preview_title="Input | output | target over training",
        preview_caption="each row: input | output | target (validation pairs)",
        validation_title="L1, PSNR, SSIM on the validation pairs",
    ),
)
