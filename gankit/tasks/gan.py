"""The GAN family (unconditional and conditional, every loss in the registry): training (k D updates, then one G
update), sampling from a trained run, and its scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
from torch import Tensor

from ..config.schema import Config, family_config
from ..core.errors import GankitError
from ..data.base import Batcher, ImageData, to_float, to_uint8
from ..data.splits import holdout_only, reference_data
from ..data.augment import build_augment
from ..losses import LOSSES, gradient_penalty, r1_penalty, r1_weight
from ..nets import build_models, sample_noise
from ..training import distributed as ddp
from ..training.checkpoint import Checkpoint, load_module
from ..training.finetune import frozen_parameters
from .base import EMA, TASKS, FamilyTask, TaskSpec, TrainedRun, eval_mode, is_conv, memory_format_for, set_requires_grad

__all__ = [
    "EMA",
    "GANLoss",
    "GANModel",
    "GANTask",
    "TrainedGenerator",
    "class_sequence",
    "generate",
    "is_conv",
    "memory_format_for",
    "micro_batches",
    "set_requires_grad",
]

PREVIEW = 64  # images in the fixed-noise grid
EVAL_N = 2000  # samples and real images for the training-time FD
EVAL_MIN_HELD = 500  # held-out images needed to use them (not training images) as the FD reference


# ---------------------------------------------------------------------------------------------------------------------
# the family's own config keys (beside the shared ones of gankit/config/schema.py; its models' builders in
# gankit/nets/ list the ones each reads, and the template family's copy of the DCGAN reads them too)


@family_config("model", family="gan")
@dataclass(frozen=True)
class GANModel:
    """``model.*`` keys of the GAN family's networks (gankit/nets/dcgan.py, mlp.py, variants.py)."""

    z_dim: int = 100
    noise: Literal["normal", "uniform"] = "normal"  # uniform is U[-1, 1]
    num_classes: int = 0  # > 0 makes a conditional GAN
    conditioning: Literal["concat", "projection"] = "concat"
    g_upsample: Literal["transpose", "nearest", "nearest_last"] = "transpose"  # dcgan G's stride-2 layers
    g_output: Literal["tanh", "clamp"] = "tanh"  # dcgan G's last activation
    g_class_norm: bool = False  # conditional dcgan G with BatchNorm: per-class BatchNorm scales and shifts as well
    d_mbstd: int = 0  # dcgan D: minibatch standard deviation over groups of this many images (0 = off)
    # MLP models
    g_hidden: tuple[int, ...] = (256, 512, 1024)
    d_hidden: tuple[int, ...] = (1024, 512, 256)
    # layers of the DCGAN and MLP models (model.g_dropout is shared: pix2pix's U-Net reads it too)
    g_batchnorm: bool = True
    d_batchnorm: bool = True
    g_activation: str = "relu"
    d_activation: str = "leaky_relu"
    d_dropout: float = 0.0

    def check(self) -> None:
        if not self.z_dim > 0:
            raise GankitError(f"model.z_dim must be > 0, got {self.z_dim}")
        if self.num_classes < 0:
            raise GankitError(f"model.num_classes must be >= 0, got {self.num_classes}")
        if self.d_dropout < 0:
            raise GankitError(f"model.d_dropout must be >= 0, got {self.d_dropout}")
        if not self.d_dropout < 1:
            raise GankitError(f"model.d_dropout must be in [0, 1), got {self.d_dropout}")
        if self.d_mbstd < 0:
            raise GankitError(f"model.d_mbstd={self.d_mbstd}: use 0 (off) or a group size such as 4")


@family_config("loss", family="gan")
@dataclass(frozen=True)
class GANLoss:
    """``loss.*`` keys of the GAN step (:meth:`GANTask.step`)."""

    gp_weight: float = 10.0  # WGAN-GP lambda
    clip: float = 0.01  # WGAN weight clipping c
    instance_noise: float = 0.0  # std of Gaussian noise added to D's inputs, annealed to 0 over training

    def check(self) -> None:
        for key, v in {"gp_weight": self.gp_weight, "clip": self.clip, "instance_noise": self.instance_noise}.items():
            if v < 0:
                raise GankitError(f"loss.{key} must be >= 0, got {v}")


def micro_batches(
    real: Tensor, y: Tensor | None, z: Tensor, n: int
) -> list[tuple[Tensor, Tensor | None, Tensor, float]]:
    """(real, labels, noise, weight) for each of ``n`` micro-batches of one batch (train.accumulate); weight is the
    micro-batch's share of the batch, so that the weighted mean losses sum to the batch's mean loss. ``n`` 1: the
    batch itself with weight 1. A process's shard smaller than ``n`` gives one micro-batch per image."""
    if n == 1:
        return [(real, y, z, 1.0)]
    n = min(n, real.shape[0])
    reals, zs = torch.tensor_split(real, n), torch.tensor_split(z, n)
    ys = torch.tensor_split(y, n) if y is not None else [None] * n
    return [(r, yi, zi, r.shape[0] / real.shape[0]) for r, yi, zi in zip(reals, ys, zs)]


def _identity(x: Tensor) -> Tensor:
    return x


def class_sequence(counts: list[int], n: int) -> Tensor:
    """n class labels for sampling a conditional G: classes in the proportions of ``counts`` (the training images per
    class), interleaved so that every prefix keeps them too (class k's i-th turn comes at (i + 1/2) / counts[k], ties
    to the lower class). Equal counts give the classes in turn, 0, 1, ..., K-1, 0, ...

    Why proportions: a conditional G models p(x | y), and the data's p(x) is the mix over p(y). Samples with every
    class equally often are not samples of the data's distribution, and on MNIST, whose classes are not equally
    frequent, they scored a worse classifier FD than the same Gs' samples in proportion
    (docs/notes/time-to-quality-round-5.md, "A conditional G's samples now follow the training images' class
    proportions")."""
    c = torch.tensor(counts, dtype=torch.float64)
    if n <= 0:
        return torch.zeros(0, dtype=torch.long)
    if c.numel() == 0 or float(c.sum()) <= 0:
        raise ValueError("class_sequence needs at least one class with images")
    turns = (n * c / c.sum()).ceil().long() + 1  # enough turns per class for any n-prefix
    keys = [(torch.arange(int(t), dtype=torch.float64) + 0.5) / ck for ck, t in zip(c.tolist(), turns) if ck > 0]
    ids = [torch.full((int(t),), k) for k, (ck, t) in enumerate(zip(c.tolist(), turns)) if ck > 0]
    order = torch.sort(torch.cat(keys), stable=True).indices  # stable: equal keys keep class order
    return torch.cat(ids)[order[:n]].long()


@torch.no_grad()
def generate(g: nn.Module, z: Tensor, labels: Tensor | None = None, batch: int = 500) -> Tensor:
    """(N, z_dim) noise -> (N, C, H, W) float in [-1, 1] on the CPU, in batches so N can be large; G in eval mode for
    the call (BatchNorm uses its running statistics), then back in the mode it was in."""
    dev = next(g.parameters()).device
    out = []
    with eval_mode(g):
        for i in range(0, z.shape[0], batch):
            y = None if labels is None else labels[i : i + batch].to(dev)
            out.append(g(z[i : i + batch].to(dev), y).float().cpu())
    return torch.cat(out)


class GANTask(FamilyTask):
    def __init__(self, cfg: Config, data: ImageData, device: torch.device, val: ImageData | None = None) -> None:
        m = cfg.model
        if m.num_classes:
            if data.num_classes == 0 or bool((data.labels < 0).any()):
                raise GankitError(
                    f"model.num_classes={m.num_classes} needs labelled data; data '{data.name}' has no labels"
                )
            if m.num_classes < data.num_classes:
                raise GankitError(
                    f"model.num_classes={m.num_classes} but data '{data.name}' has {data.num_classes} classes; "
                    f"set model.num_classes={data.num_classes}"
                )
        self.data, self.val = data, val
        # training images per class: the proportions samples are drawn in (EMA statistics, training-time FD)
        # (classes past the data's, when model.num_classes is larger, have no images and are never drawn)
        self.class_counts = (data.class_counts() or [1] * m.num_classes) if m.num_classes else []
        self._fd_ref = None
        self.image_shape = data.shape
        nets = build_models(m, self.image_shape)
        super().__init__(cfg, device, nets, channels_last=cfg.train.channels_last and is_conv(nets["d"]))
        self.g, self.d, self.opt_g, self.opt_d = nets["g"], nets["d"], self.opts["g"], self.opts["d"]
        self.g_fwd, self.d_fwd = self.fwd["g"], self.fwd["d"]  # g and d stay the plain modules (previews, penalties)
        self.loss = LOSSES.get(cfg.loss.name)
        if cfg.train.ema_half_life > 0:
            self.ema = EMA(self.g, cfg.train.ema_half_life, cfg.train.batch_size, self._standing_noise)
        # Augmentation of D's inputs (DiffAugment policy or ADA); its own generator, so the noise stream is unchanged.
        self.augment = build_augment(
            cfg.train.augment, seed=cfg.seed + 4242, target=cfg.train.ada_target, speed_kimg=cfg.train.ada_kimg
        )
        if self.augment is not None and ddp.world_size() > 1:
            # Each process augments its rows of the global batch with draws made for the whole batch (one generator
            # state everywhere), and ADA's statistic is summed over processes: p is the same on every process.
            self.augment.shard = (ddp.shard_start(cfg.train.batch_size), cfg.train.batch_size)
            self.augment.reduce = ddp.all_reduce
        self.d_updates = 0  # D updates so far: lazy R1 runs on every r1_every-th
        # fine-tuning (train.freeze_d): D's first layers keep the weights they were initialised with
        self.frozen_d = frozenset(frozen_parameters(self.d, cfg.train.freeze_d)) if cfg.train.freeze_d else frozenset()
        if cfg.train.accumulate > 1 and self.augment is not None:
            raise GankitError(
                f"train.accumulate={cfg.train.accumulate} with train.augment={cfg.train.augment!r} is "
                f"not supported yet (augmentation draws per call); use one of them"
            )
        # The latent noise of each step: the whole global batch from this generator (the same on every process),
        # each process keeping its shard, so N processes use the noise one process would.
        self.z_gen = torch.Generator(device=device).manual_seed(cfg.seed + 31337)
        # The preview batch is fixed by the seed, so a resumed run draws the same grids.
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        self.preview_z = sample_noise(PREVIEW, m.z_dim, m.noise, "cpu", gen).to(device)
        k = max(m.num_classes, 1)
        per_class = 8
        self.preview_labels = (torch.arange(PREVIEW) % k).to(device) if m.num_classes else None
        self.class_z = sample_noise(per_class, m.z_dim, m.noise, "cpu", gen).repeat(k, 1).to(device)
        self.class_labels = torch.arange(k).repeat_interleave(per_class).to(device) if m.num_classes else None

    @property
    def sampler(self) -> nn.Module:
        return self.ema.ready() if self.ema is not None else self.g

    def _standing_noise(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """Noise (and classes in the training proportions) for the EMA's BatchNorm statistics, drawn on the CPU for
        every device alike."""
        m = self.cfg.model
        z = sample_noise(n, m.z_dim, m.noise, "cpu", gen).to(self.device)
        return z, class_sequence(self.class_counts, n).to(self.device) if m.num_classes else None

    # -- one step ---------------------------------------------------------------------------------------------------
    def _real(self, batcher: Batcher) -> tuple[Tensor, Tensor | None]:
        x, y, _ = self.batch(batcher)
        x = to_float(x).contiguous(memory_format=self.memory_format)
        return x, (y if self.cfg.model.num_classes else None)

    def _noisy(self, x: Tensor, t: float) -> Tensor:
        sigma = self.cfg.loss.instance_noise * max(0.0, 1.0 - t)  # annealed to 0 over the budget
        return x + sigma * torch.randn_like(x) if sigma > 0 else x

    def step(self, batcher: Batcher, t: float) -> dict[str, Tensor]:
        cfg, g, d, loss = self.cfg, self.g, self.d, self.loss
        aug = self.augment if self.augment is not None else _identity  # D's inputs, real and fake, in D and G steps
        b = cfg.train.batch_size
        g.train()
        d.train()
        set_requires_grad(d, True, frozen=self.frozen_d)
        out: dict[str, Tensor] = {}
        for k in range(cfg.train.d_steps):
            real, y = self._real(batcher)
            z = self.rows(sample_noise(b, cfg.model.z_dim, cfg.model.noise, self.device, self.z_gen))
            last = k == cfg.train.d_steps - 1
            micro = micro_batches(real, y, z, cfg.train.accumulate)
            r1_w = r1_weight(self.d_updates, gamma=cfg.loss.r1_gamma, every=cfg.loss.r1_every)
            self.opt_d.zero_grad(set_to_none=True)
            sums: dict[str, Tensor] = {}
            for real_i, y_i, z_i, w in micro:
                # On the last D update, G's forward pass is kept with its graph and reused by the G update (one G
                # forward per step instead of two, as in the reference DCGAN code); with accumulation the G update
                # redoes it per micro-batch, so that only one micro-batch's graph is held at a time.
                with self.prec.autocast():
                    with torch.set_grad_enabled(last and len(micro) == 1):
                        fake = self.g_fwd(z_i, y_i)
                    fake_d = fake.detach()
                    d_real = self.d_fwd(self._noisy(aug(real_i), t), y_i)
                    d_fake = self.d_fwd(self._noisy(aug(fake_d), t), y_i)
                    loss_d = loss.d(d_real, d_fake, cfg.loss.label_smoothing)
                parts = {"d/real": d_real.detach().mean(), "d/fake": d_fake.detach().mean()}
                if self.augment is not None:
                    self.augment.update(d_real.detach())  # ADA: p follows how sure D is of the (augmented) reals
                if r1_w:
                    r1 = r1_penalty(lambda x: d(aug(x), y_i), real_i)  # w.r.t. the image before augmentation
                    loss_d = loss_d + r1_w * r1
                    parts["r1"] = r1.detach()
                if loss.gradient_penalty:
                    gp = gradient_penalty(lambda x: d(x, y_i), real_i, fake_d)
                    loss_d = loss_d + cfg.loss.gp_weight * gp
                    parts["gp"] = gp.detach()
                parts["loss/d"] = loss_d.detach()
                # each micro-batch's mean loss weighted by its share: the gradients sum to the whole batch's mean
                self.backward(loss_d if w == 1 else loss_d * w, "d")
                for key, v in parts.items():
                    sums[key] = v if w == 1 else sums.get(key, 0) + v * w
            self.d_updates += 1
            self.update("d")
            out.update(sums)
            if loss.weight_clip:
                with torch.no_grad():
                    for p in d.parameters():
                        p.clamp_(-cfg.loss.clip, cfg.loss.clip)
        # G update: D's weights are frozen so backward skips their gradients.
        set_requires_grad(d, False)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g_sum: Tensor | float = 0.0
        for _, y_i, z_i, w in micro:  # the last D update's noise
            with self.prec.autocast():
                if len(micro) > 1:
                    fake = self.g_fwd(z_i, y_i)
                d_gen = self.d_fwd(self._noisy(aug(fake), t), y_i)
                loss_g = loss.g(d_gen)
            self.backward(loss_g if w == 1 else loss_g * w, "g")
            loss_g_sum = loss_g.detach() if w == 1 else loss_g_sum + loss_g.detach() * w
        self.update("g")
        if self.ema is not None:
            self.ema.update(g)
        out["loss/g"] = loss_g_sum  # type: ignore[assignment]
        if self.augment is not None and self.augment.adaptive:
            out["aug/p"] = torch.full((), self.augment.p, device=self.device)  # beside the other scalars
        return out

    # -- evaluation during training --------------------------------------------------------------------------------
    best_metric = ("eval/fd", "min")  # what the `best` checkpoint keeps

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """FD in the domain classifier's feature space between up to EVAL_N samples and as many real images: the
        held-out ones (``data.holdout``) when there are enough, so `best` does not reward memorising, else training
        images (fixed noise and a fixed subset, so successive values compare). Off unless train.eval_every > 0."""
        if not self.cfg.train.eval_every:
            return {}
        from ..metrics import FDReference, build_extractor  # the feature extractor is only needed with eval_every

        if self._fd_ref is None:
            ref = self.val if self.val is not None and len(self.val) >= EVAL_MIN_HELD else self.data
            n = min(EVAL_N, len(ref))
            pick = torch.randperm(len(ref), generator=torch.Generator().manual_seed(0))[:n]
            ext = build_extractor("classifier" if self.data.num_classes else "pixels", self.data, progress=False)
            self._fd_ref = FDReference(ext, ref.images[pick])
            gen = torch.Generator().manual_seed(self.cfg.seed + 777)
            self._eval_z = sample_noise(n, self.cfg.model.z_dim, self.cfg.model.noise, "cpu", gen)
            self._eval_y = class_sequence(self.class_counts, n) if self.cfg.model.num_classes else None
        return {"eval/fd": self._fd_ref(to_uint8(generate(self.sampler, self._eval_z, self._eval_y)))}

    def images_per_step(self) -> int:
        return self.cfg.train.batch_size * self.cfg.train.d_steps

    # -- pictures ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> dict[str, tuple[Tensor, int]]:
        """name -> (images in [-1, 1], images per row): the fixed-noise grid, and one row per class if conditional."""
        pics = {"step": (generate(self.sampler, self.preview_z, self.preview_labels), 8)}
        if self.class_labels is not None:
            pics["classes"] = (generate(self.sampler, self.class_z, self.class_labels), 8)
        return pics

    def extra_state(self) -> dict[str, Any]:
        """The latent-noise generator, the augmentation's p, ADA accumulator and generator, the D-update count that
        lazy R1 follows, and the fp16 loss scalers."""
        state: dict[str, Any] = {"z_gen": self.z_gen.get_state().tolist(), "d_updates": self.d_updates}
        if self.augment is not None:
            aug = self.augment.state_dict()
            state["augment"] = {**aug, "generator": aug["generator"].tolist()}  # JSON: bytes as ints
        if scalers := self.prec.state_dict():
            state["scalers"] = scalers
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.d_updates = int(state.get("d_updates", 0))
        self.prec.load_state_dict(state.get("scalers", {}))
        if "z_gen" in state:
            self.z_gen.set_state(torch.tensor(state["z_gen"], dtype=torch.uint8))
        if self.augment is not None and "augment" in state:
            aug = dict(state["augment"])
            aug["generator"] = torch.tensor(aug["generator"], dtype=torch.uint8)
            self.augment.load_state_dict(aug)


# ---------------------------------------------------------------------------------------------------------------------
# a trained run


@dataclass
class TrainedGenerator:
    """G of a finished (or running) run, in eval mode, on the CPU unless moved."""

    g: nn.Module
    config: Config
    image_shape: tuple[int, int, int]
    class_names: list[str]
    step: int
    run_dir: Path
    class_counts: list[int] = field(default_factory=list)  # training images per class; empty: classes in turn

    @property
    def num_classes(self) -> int:
        return self.config.model.num_classes

    def noise(self, n: int, seed: int = 0) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return sample_noise(n, self.config.model.z_dim, self.config.model.noise, "cpu", gen)

    def labels(self, n: int, class_id: int | None = None) -> Tensor | None:
        """Requested class for every sample, or for a conditional G the classes in the training data's proportions
        (:func:`class_sequence`; in turn for runs that did not record them)."""
        if not self.num_classes:
            if class_id is not None:
                raise GankitError(f"--class {class_id}: run {self.run_dir} is not conditional (model.num_classes=0)")
            return None
        if class_id is not None:
            if not 0 <= class_id < self.num_classes:
                raise GankitError(f"--class {class_id}: run {self.run_dir} has classes 0..{self.num_classes - 1}")
            return torch.full((n,), class_id, dtype=torch.long)
        counts = self.class_counts if 0 < len(self.class_counts) <= self.num_classes else [1] * self.num_classes
        return class_sequence(counts, n)

    def generate(self, z: Tensor, labels: Tensor | None = None, batch: int = 500) -> Tensor:
        """(N, z_dim) noise -> (N, C, H, W) float in [-1, 1]; batched so N can be large."""
        if z.shape[0] == 0:
            return torch.zeros((0, *self.image_shape))
        return generate(self.g, z, labels, batch)

    def sample(self, n: int, seed: int = 0, class_id: int | None = None) -> Tensor:
        """n images (N, C, H, W) in [-1, 1]; the same (n, seed) gives the same images."""
        return self.generate(self.noise(n, seed), self.labels(n, class_id))

    def export_parts(self) -> tuple[nn.Module, tuple[Tensor, ...], list[str], dict[str, Any]]:
        """(module, example inputs of batch 2, input names, metadata) for gankit.export."""
        conditional = self.num_classes > 0
        z = self.noise(2, seed=0)
        inputs = (z, torch.arange(2) % self.num_classes) if conditional else (z,)
        meta = {
            "family": "gan",
            "kind": "gan",  # kind: the key exports of older gankit carry
            "image_shape": list(self.image_shape),
            "z_dim": self.config.model.z_dim,
            "noise": self.config.model.noise,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
        }
        return ConditionalSampler(self.g, conditional), inputs, ["z", "labels"] if conditional else ["z"], meta


class ConditionalSampler(nn.Module):
    """G with the call signature of an exported graph: conditional models take labels, others do not."""

    def __init__(self, g: nn.Module, conditional: bool) -> None:
        super().__init__()
        self.g = g
        self.conditional = conditional

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.g(z, labels if self.conditional else None)


def load_generator(ck: Checkpoint, run: TrainedRun) -> TrainedGenerator:
    """G of a run (the EMA copy when the run kept one) from one of its checkpoints."""
    shape = tuple(run.meta.get("image_shape", ()))
    if len(shape) != 3:
        raise GankitError(
            f"run {run.run_dir}: its checkpoint does not record the image shape; it was not written by gankit train"
        )
    g = build_models(run.config.model, shape)["g"]  # type: ignore[arg-type]
    load_module(g, ck.tensors["ema" if "ema" in ck.tensors else "g"], "generator", ck)
    g.eval()
    return TrainedGenerator(
        g,
        run.config,
        shape,
        list(run.meta.get("class_names", [])),
        run.step,
        run.run_dir,  # type: ignore[arg-type]
        [int(c) for c in run.meta.get("class_counts", [])],
    )


def evaluate_generator(
    gen: TrainedGenerator,
    cfg: Config,
    *,
    n: int,
    features: str,
    split: str | None,
    inception_path: str | None,
    parzen: bool,
    seed: int,
    progress: bool,
    protocol: str | None = None,
    ref_stats: Any = None,
    save_ref_stats: str | Path | None = None,
    **_: Any,
) -> dict[str, Any]:
    """`gankit eval` of a GAN run: n samples against the run's held-out or test images; writes memorisation.png."""
    from ..metrics import score_samples

    train, test = reference_data(cfg, split)
    labels = gen.labels(n) if gen.num_classes else None
    samples = to_uint8(gen.generate(gen.noise(n, seed), labels))
    res = score_samples(
        samples,
        test,
        train,
        features=features,
        inception_path=inception_path,
        sample_labels=labels,
        parzen=parzen,
        seed=seed,
        progress=progress,
        sheet_path=gen.run_dir / "memorisation.png",
        protocol=protocol,
        ref_stats=ref_stats,
        save_ref_stats=save_ref_stats,
    )
    res.update(run=str(gen.run_dir), step=gen.step, split=split or ("holdout" if cfg.data.holdout else "test"))
    return res


def _next_steps(run_dir: Path) -> list[str]:
    return [f"more samples: gankit sample {run_dir} --n 64 --out grid.png   scores: gankit eval {run_dir}"]


TASKS.add(
    "gan",
    TaskSpec(
        scores_samples=True,
        build=GANTask,
        split_validation=holdout_only,
        load=load_generator,
        evaluate=evaluate_generator,
        use="gankit sample",
        next_steps=_next_steps,
        best_metric=GANTask.best_metric,
        preview_title="Samples over training",
        preview_caption="fixed noise",
        validation_title="Training-time FD (train.eval_every)",
        latent_interpolation=True,
    ),
)
