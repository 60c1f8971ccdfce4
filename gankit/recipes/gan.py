"""The unconditional/conditional GAN step for every loss in the registry: k D updates, then one G update."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torch import Tensor

from ..config import Config
from ..data.base import Batcher, ImageData, to_float
from ..errors import GankitError
from ..losses import LOSSES, gradient_penalty
from ..models import build_models, sample_noise
from ..optim import build_optimizer
from . import RECIPES

PREVIEW = 64  # images in the fixed-noise grid
EVAL_N = 2000  # samples and real images for the training-time FD
EVAL_MIN_HELD = 500  # held-out images needed to use them (not training images) as the FD reference


def is_conv(m: nn.Module) -> bool:
    return any(isinstance(x, (nn.Conv2d, nn.ConvTranspose2d)) for x in m.modules())


def set_requires_grad(m: nn.Module, flag: bool) -> None:
    for p in m.parameters():
        p.requires_grad_(flag)


class EMA:
    """Exponential moving average of G's weights, set by a half-life in thousands of images (as stylegan2-ada):
    after ``half_life_kimg * 1000`` images the old weights count half."""

    def __init__(self, g: nn.Module, half_life_kimg: float, batch_size: int) -> None:
        self.model = copy.deepcopy(g).eval()
        set_requires_grad(self.model, False)
        self.beta = 0.5 ** (batch_size / (half_life_kimg * 1000.0))

    @torch.no_grad()
    def update(self, g: nn.Module) -> None:
        for pe, p in zip(self.model.parameters(), g.parameters()):
            pe.lerp_(p, 1.0 - self.beta)
        for be, b in zip(self.model.buffers(), g.buffers()):
            be.copy_(b)


@RECIPES.register("gan")
class GANRecipe:
    def __init__(self, cfg: Config, data: ImageData, device: torch.device, val: ImageData | None = None) -> None:
        m = cfg.model
        if m.num_classes:
            if data.num_classes == 0 or bool((data.labels < 0).any()):
                raise GankitError(f"model.num_classes={m.num_classes} needs labelled data; data '{data.name}' has no labels")
            if m.num_classes < data.num_classes:
                raise GankitError(
                    f"model.num_classes={m.num_classes} but data '{data.name}' has {data.num_classes} classes; "
                    f"set model.num_classes={data.num_classes}"
                )
        self.cfg, self.device, self.data, self.val = cfg, device, data, val
        self._fd_ref = None
        self.image_shape = data.shape
        self.g, self.d = build_models(m, self.image_shape)
        self.g.to(device)
        self.d.to(device)
        # channels_last lets oneDNN/cuDNN pick their fastest conv kernels; MLPs gain nothing from it.
        self.memory_format = torch.channels_last if cfg.train.channels_last and is_conv(self.d) else torch.contiguous_format
        if self.memory_format == torch.channels_last:
            self.g.to(memory_format=torch.channels_last)
            self.d.to(memory_format=torch.channels_last)
        self.opt_g = build_optimizer(self.g.parameters(), cfg.optim, cfg.optim.lr_g)
        self.opt_d = build_optimizer(self.d.parameters(), cfg.optim, cfg.optim.lr_d)
        self.loss = LOSSES.get(cfg.loss.name)
        self.ema = EMA(self.g, cfg.train.ema_half_life, cfg.train.batch_size) if cfg.train.ema_half_life > 0 else None
        # The preview batch is fixed by the seed, so a resumed run draws the same grids.
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        self.preview_z = sample_noise(PREVIEW, m.z_dim, m.noise, "cpu", gen).to(device)
        k = max(m.num_classes, 1)
        per_class = 8
        self.preview_labels = (torch.arange(PREVIEW) % k).to(device) if m.num_classes else None
        self.class_z = sample_noise(per_class, m.z_dim, m.noise, "cpu", gen).repeat(k, 1).to(device)
        self.class_labels = torch.arange(k).repeat_interleave(per_class).to(device) if m.num_classes else None

    # -- what checkpoints save ---------------------------------------------------------------------------------------
    @property
    def modules(self) -> dict[str, nn.Module]:
        mods = {"g": self.g, "d": self.d}
        if self.ema is not None:
            mods["ema"] = self.ema.model
        return mods

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    @property
    def sampler(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.g

    # -- one step ---------------------------------------------------------------------------------------------------
    def _real(self, batcher: Batcher) -> tuple[Tensor, Tensor | None]:
        x, y, _ = batcher.next()
        x = to_float(x).contiguous(memory_format=self.memory_format)
        return x, (y if self.cfg.model.num_classes else None)

    def _noisy(self, x: Tensor, t: float) -> Tensor:
        sigma = self.cfg.loss.instance_noise * max(0.0, 1.0 - t)  # annealed to 0 over the budget
        return x + sigma * torch.randn_like(x) if sigma > 0 else x

    def step(self, batcher: Batcher, t: float) -> dict[str, Tensor]:
        cfg, g, d, loss = self.cfg, self.g, self.d, self.loss
        b = cfg.train.batch_size
        g.train()
        d.train()
        set_requires_grad(d, True)
        out: dict[str, Tensor] = {}
        for k in range(cfg.train.d_steps):
            real, y = self._real(batcher)
            z = sample_noise(b, cfg.model.z_dim, cfg.model.noise, self.device)
            last = k == cfg.train.d_steps - 1
            # On the last D update, G's forward pass is kept with its graph and reused by the G update
            # (one G forward per step instead of two, as in the reference DCGAN code).
            with torch.set_grad_enabled(last):
                fake = g(z, y)
            fake_d = fake.detach()
            d_real = d(self._noisy(real, t), y)
            d_fake = d(self._noisy(fake_d, t), y)
            loss_d = loss.d(d_real, d_fake, cfg.loss.label_smoothing)
            if loss.gradient_penalty:
                gp = gradient_penalty(lambda x: d(x, y), real, fake_d)
                loss_d = loss_d + cfg.loss.gp_weight * gp
                out["gp"] = gp.detach()
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            if loss.weight_clip:
                with torch.no_grad():
                    for p in d.parameters():
                        p.clamp_(-cfg.loss.clip, cfg.loss.clip)
        # G update: D's weights are frozen so backward skips their gradients.
        set_requires_grad(d, False)
        d_gen = d(self._noisy(fake, t), y)
        loss_g = loss.g(d_gen)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(g)
        out["loss/d"] = loss_d.detach()
        out["loss/g"] = loss_g.detach()
        out["d/real"] = d_real.detach().mean()
        out["d/fake"] = d_fake.detach().mean()
        return out

    # -- evaluation during training --------------------------------------------------------------------------------
    best_metric = ("eval/fd", "min")  # what the `best` checkpoint keeps

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """FD in the domain classifier's feature space between up to EVAL_N samples and as many real images: the
        held-out ones (``data.holdout``) when there are enough, so `best` does not reward memorising, else training
        images (fixed noise and a fixed subset, so successive values compare). Off unless train.eval_every > 0."""
        if not self.cfg.train.eval_every:
            return {}
        from ..data.base import to_uint8
        from ..metrics import FDReference, build_extractor

        if self._fd_ref is None:
            ref = self.val if self.val is not None and len(self.val) >= EVAL_MIN_HELD else self.data
            n = min(EVAL_N, len(ref))
            pick = torch.randperm(len(ref), generator=torch.Generator().manual_seed(0))[:n]
            ext = build_extractor("classifier" if self.data.num_classes else "pixels", self.data, progress=False)
            self._fd_ref = FDReference(ext, ref.images[pick])
            gen = torch.Generator().manual_seed(self.cfg.seed + 777)
            self._eval_z = sample_noise(n, self.cfg.model.z_dim, self.cfg.model.noise, "cpu", gen)
            k = max(self.cfg.model.num_classes, 1)
            self._eval_y = torch.arange(n) % k if self.cfg.model.num_classes else None
        s = self.sampler
        was = s.training
        s.eval()
        out = []
        for i in range(0, len(self._eval_z), 500):
            y = None if self._eval_y is None else self._eval_y[i : i + 500].to(self.device)
            out.append(to_uint8(s(self._eval_z[i : i + 500].to(self.device), y)).cpu())
        s.train(was)
        return {"eval/fd": self._fd_ref(torch.cat(out))}

    def images_per_step(self) -> int:
        return self.cfg.train.batch_size * self.cfg.train.d_steps

    # -- pictures ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> dict[str, tuple[Tensor, int]]:
        """name -> (images in [-1, 1], images per row): the fixed-noise grid, and one row per class if conditional."""
        s = self.sampler
        was = s.training
        s.eval()
        pics = {"step": (s(self.preview_z, self.preview_labels), 8)}
        if self.class_labels is not None:
            pics["classes"] = (s(self.class_z, self.class_labels), 8)
        s.train(was)
        return pics

