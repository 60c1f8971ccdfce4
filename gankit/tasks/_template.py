"""A template model family, to copy: ``cp gankit/tasks/_template.py gankit/tasks/<family>.py``, rename ``FAMILY``
and the classes, write your step, and move what :func:`register` does to module level (a family registers itself,
and declares its config keys, when gankit imports it). docs/adding-a-family.md walks through it.

This file is not a family users can pick: gankit imports every module of ``gankit/tasks/`` except those whose name
starts with "_", so it is never registered unless a caller runs :func:`register` (tests/test_template.py does,
and trains it for two steps through the real loop).

What it trains: the plainest GAN there is, on the networks of the "dcgan" model - one D update, one G update per
step - so that every line left is contract, not method.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config.schema import Config, family_config
from ..core.errors import GankitError
from ..data.base import Batcher, ImageData, to_float
from ..data.splits import holdout_only
from ..losses import LOSSES
from ..nets import MODELS, DCGAN_FIELDS, ModelSpec, Nets, build_models, sample_noise
from ..training.checkpoint import Checkpoint, load_module
from .base import TASKS, FamilyTask, TaskSpec, TrainedRun, eval_mode, set_requires_grad

FAMILY = "template"  # the family's name: run.json's "family", the TASKS key its models point at
MODEL = "template-dcgan"  # a model of the family: what `--model` names
PREVIEW = 16


@dataclass(frozen=True)
class TemplateLoss:
    """The family's own ``loss.*`` keys (``model.*`` keys are declared the same way, with ``"model"``; a model lists
    the ones it reads in its ``ModelSpec.fields``). Typed fields with defaults, as in gankit/config/schema.py; the
    step reads them as ``cfg.loss.<key>``, users set them as ``--set loss.<key>=...``, and config.yaml saves them.
    A real family declares them at module level: ``@family_config("loss", family=FAMILY)`` above the class."""

    template_g_weight: float = 1.0  # scales G's loss (0: G does not learn); an example of a family's own key

    def check(self) -> None:
        """Bad values of these keys: one line naming the key (runs with the other value checks, on every config)."""
        if self.template_g_weight < 0:
            raise GankitError(f"loss.template_g_weight must be >= 0, got {self.template_g_weight}")


class TemplateTask(FamilyTask):
    """One family's training side. The base class has built the networks' optimizers (``self.opts``), the
    precision policy (``self.prec``) and the forward passes (``self.fwd``), and checkpoints ``self.nets`` (and
    ``self.ema`` when set) with the state :meth:`extra_state` returns."""

    best_metric = ("eval/none", "min")  # what `best` follows; this template validates nothing, so `best` = step 0

    def __init__(self, cfg: Config, data: ImageData, device: torch.device, val: ImageData | None = None) -> None:
        # Refuse what this family cannot train before anything is built: one line, naming the key.
        if cfg.train.accumulate > 1:
            raise GankitError(
                f"train.accumulate={cfg.train.accumulate}: family {FAMILY} has no gradient accumulation; set it to 1"
            )
        self.image_shape = data.shape  # (C, H, W) of what the family makes: run.json's image_shape
        nets = build_models(cfg.model, self.image_shape)  # {"g": G, "d": D}: any names; "d..." are discriminators
        super().__init__(cfg, device, nets, channels_last=cfg.train.channels_last)
        self.loss = LOSSES.get(cfg.loss.name)
        # Every random thing has its own generator, checkpointed in extra_state, so that a resume is exact.
        self.z_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.preview_z = sample_noise(PREVIEW, cfg.model.z_dim, cfg.model.noise, "cpu", gen).to(device)

    def step(self, batcher: Batcher, t: float) -> dict[str, Tensor]:
        """One D update, then one G update. Plain single-process PyTorch: ``self.batch`` and ``self.rows`` give this
        process's part of the global batch, ``self.update`` steps an optimizer (loss scaling and the gradient
        all-reduce of several processes happen there)."""
        cfg, g, d = self.cfg, self.nets["g"], self.nets["d"]
        real8, _, _ = self.batch(batcher)  # (B, C, H, W) uint8
        real = to_float(real8).contiguous(memory_format=self.memory_format)  # [-1, 1]
        z = self.rows(sample_noise(cfg.train.batch_size, cfg.model.z_dim, cfg.model.noise, self.device, self.z_gen))
        g.train()
        d.train()
        set_requires_grad(d, True)
        with self.prec.autocast():
            fake = self.fwd["g"](z, None)
            loss_d = self.loss.d(self.fwd["d"](real, None), self.fwd["d"](fake.detach(), None))
        self.opts["d"].zero_grad(set_to_none=True)
        self.update("d", loss_d)
        set_requires_grad(d, False)  # G's update: no gradients for D's weights
        with self.prec.autocast():
            loss_g = self.loss.g(self.fwd["d"](fake, None)) * cfg.loss.template_g_weight  # the family's own key
        self.opts["g"].zero_grad(set_to_none=True)
        self.update("g", loss_g)
        return {"loss/d": loss_d.detach(), "loss/g": loss_g.detach()}  # stable keys: metrics.jsonl's columns

    @torch.no_grad()
    def preview(self) -> dict[str, tuple[Tensor, int]]:
        """name -> (images in [-1, 1], images per row): samples/<name>-<step>.png."""
        g = self.nets["g"]
        with eval_mode(g):
            return {"step": (g(self.preview_z, None).float().cpu(), 4)}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "z_gen": self.z_gen.get_state().tolist()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        if "z_gen" in state:
            self.z_gen.set_state(torch.tensor(state["z_gen"], dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------------------------------
# a trained run: what `gankit.load(RUN)` returns for this family


def load_template(ck: Checkpoint, run: TrainedRun) -> nn.Module:
    """The run's G (eval mode, CPU), rebuilt from its config and loaded from checkpoint ``ck``."""
    g = build_models(run.config.model, tuple(run.meta["image_shape"]))["g"]  # type: ignore[arg-type]
    load_module(g, ck.tensors["g"], "generator", ck)
    return g.eval()


def _evaluate(obj: nn.Module, cfg: Config, **_: Any) -> dict[str, Any]:
    raise GankitError(f"family {FAMILY} has no scores yet")


def _build_nets(c: Any, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    return MODELS.get("dcgan").build(c, shape, cond_channels)


def register() -> None:
    """Declare the family's config keys, register the family and its model. A real family does this at module
    level, when gankit imports it."""
    family_config("loss", family=FAMILY)(TemplateLoss)
    TASKS.add(
        FAMILY,
        TaskSpec(
            build=TemplateTask,
            split_validation=holdout_only,
            load=load_template,
            evaluate=_evaluate,
            use="gankit.load",
            next_steps=lambda run_dir: [f"the run: {Path(run_dir)}"],
            best_metric=TemplateTask.best_metric,
            preview_title="Samples over training",
            preview_caption="fixed noise",
        ),
    )
    MODELS.add(MODEL, ModelSpec(build=_build_nets, family=FAMILY, fields=DCGAN_FIELDS))
