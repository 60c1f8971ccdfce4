"""CycleGAN (Zhu et al. 2017): unpaired translation between domains A and B with two generators (A -> B, B -> A),
two PatchGAN discriminators, cycle-consistency and identity L1 losses, and a history of fakes for each D (the image
pool); translating with a trained run in either direction, and its scores.

The data is one :class:`ImageData` whose labels are the domain (gankit/data/unpaired.py). The loop's batcher runs
over both domains together (an epoch is a pass over N_A + N_B images at one batch per step); each step draws its A
batch and its B batch from two streams of their own, pure functions of the step's index (the loop batcher's
position), so the data order needs no state beyond the loop's and a resume is exact. The pools are training state:
they are the "pool" module of every checkpoint (a module the base class keeps, untrained).

The step is plain single-process PyTorch on :class:`~gankit.tasks.base.FamilyTask`: this process's rows of each
domain's batch come from ``self.gather``, the pools see the whole global batch of fakes through ``self.whole`` (so
their draws are the same on every process) and D is shown this process's rows of it (``self.rows``); ``self.update``
steps each optimizer (loss scaling, the gradient all-reduce of several processes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ..config.schema import Config, family_config
from ..core.errors import GankitError
from ..data import load_dataset
from ..data.base import Batcher, ImageData, to_float, to_uint8
from ..data.unpaired import DOMAINS, domain_mask
from ..losses import LOSSES
from ..metrics.fd import fd as frechet_fd
from ..nets import build_models
from ..training.checkpoint import Checkpoint, load_module
from .base import TASKS, FamilyTask, TaskSpec, TrainedRun, set_requires_grad
from .pix2pix import Translator, translate

SHEET_ROWS = 8  # validation images of each domain on the preview sheet
VAL_N = 50  # validation images of each domain scored during training (fixed, evenly spread); `gankit eval` scores all
VAL_FRACTION_MAX = 50  # without a val split: a fixed random 10% of each domain, at most this many, is held out


# ---------------------------------------------------------------------------------------------------------------------
# the family's own config keys (beside the shared ones of gankit/config/schema.py; model.norm and model.patch are
# pix2pix's, whose networks CycleGAN's reuse)


@family_config("model", family="cyclegan")
@dataclass(frozen=True)
class CycleGANModel:
    g_blocks: int = 6  # residual blocks of each generator (the paper: 6 for 128x128, 9 for 256x256)
    pool_size: int = 50  # earlier fakes each D also sees (the paper's image history); 0 = only the newest

    def check(self) -> None:
        if self.g_blocks < 0:
            raise GankitError(
                f"model.g_blocks={self.g_blocks}: use 0 or more residual blocks (the paper: 6 for 128x128, 9 for "
                f"256x256)"
            )
        if self.pool_size < 0:
            raise GankitError(
                f"model.pool_size={self.pool_size}: use 0 (D sees only the newest fakes) or a history size such "
                f"as the paper's 50"
            )


@family_config("loss", family="cyclegan")
@dataclass(frozen=True)
class CycleGANLoss:
    cycle_weight: float = 10.0  # CycleGAN lambda: weight of the cycle-consistency L1 (A -> B -> A and B -> A -> B)
    identity_weight: float = 0.5  # identity L1 (G_AB(b) ~ b, G_BA(a) ~ a), in units of cycle_weight

    def check(self) -> None:
        if self.cycle_weight < 0 or self.identity_weight < 0:
            raise GankitError(
                f"loss.cycle_weight and loss.identity_weight must be >= 0, got {self.cycle_weight} and "
                f"{self.identity_weight}"
            )


# ---------------------------------------------------------------------------------------------------------------------
# losses (pure)


def cycle_loss(reconstructed: Tensor, real: Tensor) -> Tensor:
    """Cycle consistency: mean |F(G(x)) - x| over all pixels, both (B, C, H, W) in [-1, 1]. Scalar."""
    return (reconstructed.float() - real.float()).abs().mean()


def identity_loss(same: Tensor, real: Tensor) -> Tensor:
    """Identity: mean |G(y) - y| for y already of G's output domain (keeps colours when nothing needs changing)."""
    return (same.float() - real.float()).abs().mean()


# ---------------------------------------------------------------------------------------------------------------------
# the image pool


class ImagePool(nn.Module):
    """The history of fakes a D is shown (Shrivastava et al. 2017, as CycleGAN uses it): until it holds ``size``
    images, every fake is stored and passed on; after that each fake is, with probability 1/2, swapped for a random
    stored one (which D sees instead) and otherwise passed on. ``size`` 0 passes everything on.

    The images are training state, saved with every checkpoint. They are kept as the raw float32 bits in an int32
    buffer: the loop averages floating buffers across processes after each step (for BatchNorm statistics), and
    that average of identical values may move the last bit; integer buffers are left alone.
    """

    def __init__(self, size: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("bits", torch.zeros((size, *shape), dtype=torch.int32))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def query(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """images (B, C, H, W) -> (B, C, H, W) for D, float32; the draws come from ``generator`` (CPU)."""
        images = images.detach().float()
        if self.size == 0:
            return images
        n = images.shape[0]
        coin = torch.rand(n, generator=generator)
        pick = torch.randint(0, self.size, (n,), generator=generator)
        out = images.clone()
        stored = self.bits.view(torch.float32)  # the same memory, read as floats
        count = int(self.count)
        for i in range(n):
            if count < self.size:
                stored[count] = images[i]
                count += 1
            elif float(coin[i]) > 0.5:
                j = int(pick[i])
                out[i] = stored[j]
                stored[j] = images[i]
        self.count.fill_(count)
        return out


# ---------------------------------------------------------------------------------------------------------------------
# data


class DomainStream:
    """The A (or B) batches of a run: step k's batch is a pure function of k. Batch k of the stream is batch
    k mod (n // batch) of a permutation of the domain's rows seeded by (seed, k // (n // batch), domain)."""

    def __init__(self, rows: Tensor, batch: int, seed: int, domain: int) -> None:
        self.rows, self.batch, self.seed, self.domain = rows, batch, seed, domain
        self.per_epoch = len(rows) // batch
        self._perm: tuple[int, Tensor] | None = None

    def indices(self, k: int) -> Tensor:
        """Rows of the joint data set for step ``k``, int64 (batch,)."""
        epoch, pos = divmod(k, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 2 + self.domain)
            self._perm = (epoch, torch.randperm(len(self.rows), generator=g))
        return self.rows[self._perm[1][pos * self.batch : (pos + 1) * self.batch]]


def split_domains(cfg: Config, data: ImageData, say: Any) -> tuple[ImageData, ImageData | None]:
    """(training data, validation data) with both domains in each. ``data.holdout=N`` keeps a fixed random N images
    of each domain out of training; without it, training on 'train' validates on the data set's 'val' split, or,
    when it has none, on a fixed random 10% (at most 50) of each domain. Used by training and `gankit eval` alike."""
    if not cfg.data.holdout and cfg.data.split == "train":
        try:
            return data, load_dataset(replace(cfg.data, split="val", limit=0))
        except GankitError:
            counts = [len(domain_mask(data, d)) for d in (0, 1)]
            n = [max(1, min(VAL_FRACTION_MAX, c // 10)) for c in counts]
            say(
                f"note: data '{cfg.data.name}' has no val split; validating on a fixed random {n[0]} A and {n[1]} B "
                f"images (set data.holdout to choose how many)"
            )
            return _hold_out(data, n)
    if cfg.data.holdout:
        return _hold_out(data, [cfg.data.holdout] * 2)
    return data, None


def _hold_out(data: ImageData, n: list[int]) -> tuple[ImageData, ImageData]:
    keep, held = [], []
    for d in (0, 1):
        rows = domain_mask(data, d)
        if not 0 < n[d] < len(rows):
            raise GankitError(
                f"data.holdout={n[d]} must leave images of domain {DOMAINS[d]} on both sides (it has {len(rows)})"
            )
        perm = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(d))]
        keep.append(perm[: len(rows) - n[d]])
        held.append(perm[len(rows) - n[d] :])
    return data.subset(torch.cat(keep).sort().values), data.subset(torch.cat(held).sort().values)


def _spread(rows: Tensor, n: int) -> Tensor:
    """At most n of ``rows``, evenly spread (the same ones at every validation, so the scores compare)."""
    return rows if len(rows) <= n else rows[torch.linspace(0, len(rows) - 1, n).round().long()]


# ---------------------------------------------------------------------------------------------------------------------
# training


class CycleGANTask(FamilyTask):
    def __init__(self, cfg: Config, data: ImageData, device: torch.device, val: ImageData | None = None) -> None:
        if data.class_names != list(DOMAINS):
            raise GankitError(f"model {cfg.model.name} needs unpaired data (domains A and B); '{data.name}' is not")
        loss = LOSSES.get(cfg.loss.name)
        if loss.gradient_penalty or loss.weight_clip:
            raise GankitError(
                f"loss.name={cfg.loss.name} is not supported by cyclegan; use lsgan (the paper's), "
                f"non_saturating or hinge"
            )
        if cfg.train.accumulate > 1 or cfg.train.freeze_d:
            raise GankitError(
                f"train.accumulate and train.freeze_d are not supported by {cfg.model.name} (GAN "
                f"models only); set them to 1 and 0 (--init-from works)"
            )
        self.loss = loss
        self.image_shape = data.shape
        bs = cfg.train.batch_size
        rows = [domain_mask(data, d) for d in (0, 1)]
        for d in (0, 1):
            if len(rows[d]) < bs:
                raise GankitError(
                    f"train.batch_size={bs} is larger than domain {DOMAINS[d]} ({len(rows[d])} "
                    f"training images); lower it"
                )
        self.streams = [DomainStream(rows[d], bs, cfg.seed, d) for d in (0, 1)]
        # "g" holds both generators and "d" both discriminators: one optimizer steps both Gs, as in the paper.
        nets = build_models(cfg.model, self.image_shape, self.image_shape[0])
        # pools[0] holds fakes of domain A (shown to D_A), pools[1] those of B
        self.pools = nn.ModuleList([ImagePool(cfg.model.pool_size, self.image_shape) for _ in (0, 1)])
        super().__init__(cfg, device, nets, channels_last=cfg.train.channels_last, kept={"pool": self.pools})
        self.g, self.d = nets["g"], nets["d"]
        self.g_ab, self.g_ba = self.compiled(self.g.ab), self.compiled(self.g.ba)
        self.d_a, self.d_b = self.compiled(self.d.a), self.compiled(self.d.b)
        self.val = val if val is not None and len(val) else None
        src = self.val if self.val is not None else data
        self.val_rows = [_spread(domain_mask(src, d), VAL_N) for d in (0, 1)]
        self.val_images = [src.images[r] for r in self.val_rows]  # uint8, CPU
        self.sheet = [to_float(x[:SHEET_ROWS]).to(device) for x in self.val_images]

    @property
    def sampler(self) -> nn.Module:
        return self.g

    def images_per_step(self) -> int:
        return 2 * self.cfg.train.batch_size  # a batch of A and a batch of B

    def _batch(self, batcher: Batcher, k: int, domain: int) -> Tensor:
        images, _, _ = self.gather(batcher, self.streams[domain].indices(k))  # this process's rows
        return to_float(images).contiguous(memory_format=self.memory_format)

    def step(self, batcher: Batcher, t: float) -> dict[str, Tensor]:
        cfg = self.cfg
        k = batcher.epoch * batcher.batches_per_epoch + batcher.pos  # this step's index: the steps taken so far
        batcher.next_indices()  # the loop's position (epochs over both domains) moves one batch, as in every family
        a, b = self._batch(batcher, k, 0), self._batch(batcher, k, 1)  # (B, C, H, W) each, this process's rows
        self.g.train()
        self.d.train()
        lam, lam_idt = cfg.loss.cycle_weight, cfg.loss.cycle_weight * cfg.loss.identity_weight

        # G: both directions, with both Ds fixed. (With gankit's lsgan, G's adversarial term is 1/2 E[(D - 1)^2],
        # half the paper's MSE; the weights lam and lam_idt are the paper's.)
        set_requires_grad(self.d, False)
        with self.prec.autocast():
            fake_b, fake_a = self.g_ab(a), self.g_ba(b)
            rec_a, rec_b = self.g_ba(fake_b), self.g_ab(fake_a)
            gan = self.loss.g(self.d_b(fake_b)) + self.loss.g(self.d_a(fake_a))
            cyc = cycle_loss(rec_a, a) + cycle_loss(rec_b, b)
            loss_g = gan + lam * cyc
            idt = torch.zeros((), device=a.device)
            if lam_idt > 0:
                idt = identity_loss(self.g_ab(b), b) + identity_loss(self.g_ba(a), a)
                loss_g = loss_g + lam_idt * idt
        self.opts["g"].zero_grad(set_to_none=True)
        self.update("g", loss_g)

        # D: real images against fakes from the pools (the history of G's outputs, the newest among them). A pool
        # sees the whole batch of fakes, so its draws and contents are those of one process.
        set_requires_grad(self.d, True)
        shown = []
        for domain, fake in ((1, fake_b), (0, fake_a)):
            gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + k) * 2 + domain)
            whole = self.pools[domain].query(self.whole(fake.detach().float()), gen)
            shown.append(self.rows(whole).contiguous(memory_format=self.memory_format))
        with self.prec.autocast():
            loss_d = self.loss.d(self.d_b(b), self.d_b(shown[0]), cfg.loss.label_smoothing) + self.loss.d(
                self.d_a(a), self.d_a(shown[1]), cfg.loss.label_smoothing
            )
        self.opts["d"].zero_grad(set_to_none=True)
        self.update("d", loss_d)
        return {
            "loss/d": loss_d.detach(),
            "loss/g": loss_g.detach(),
            "loss/g_gan": gan.detach(),
            "cycle": cyc.detach(),
            "identity": idt.detach(),
        }

    @torch.no_grad()
    def preview(self) -> dict[str, tuple[Tensor, int]]:
        """One row per validation pair of images: A | A->B | A->B->A | B | B->A | B->A->B."""
        a, b = self.sheet
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        ab = translate(self.g.ab, a).to(self.device)
        ba = translate(self.g.ba, b).to(self.device)
        aba = translate(self.g.ba, ab).to(self.device)
        bab = translate(self.g.ab, ba).to(self.device)
        rows = torch.stack([a, ab, aba, b, ba, bab], 1)  # (R, 6, C, H, W)
        return {"step": (rows.flatten(0, 1), 6)}

    best_metric = ("eval/fd_ab", "min")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """FD (16x16 pixel features) of A -> B translations against real B images and of B -> A against real A, and
        the cycle L1 of each domain, on at most VAL_N fixed validation images per domain."""
        if self.val is None:
            return {}
        res = score_translations(self.g.ab, self.g.ba, *self.val_images, pixel_extractor())
        return {f"eval/{k}": float(res[k]) for k in ("fd_ab", "fd_ba", "cycle_l1_a", "cycle_l1_b")}

    # Checkpoints: the base class saves the networks, the pools and the fp16 loss scalers; nothing else is state
    # (the data streams and the pools' draws are seeded by the step's index).


# ---------------------------------------------------------------------------------------------------------------------
# scores


def pixel_extractor() -> Any:
    from ..metrics import build_extractor

    return build_extractor("pixels", None, None, None, False)


@torch.no_grad()
def score_translations(
    g_ab: nn.Module, g_ba: nn.Module, real_a: Tensor, real_b: Tensor, extractor: Any, batch: int = 32
) -> dict[str, Any]:
    """real_a (N_A, C, H, W) and real_b (N_B, C, H, W) uint8 -> {"fd_ab": FD of G_AB(A) vs B, "fd_ba": FD of
    G_BA(B) vs A (in ``extractor``'s features, on the uint8 translations), "cycle_l1_a": mean |G_BA(G_AB(a)) - a|,
    "cycle_l1_b" likewise (in [-1, 1] units), "n_a", "n_b"}."""
    out: dict[str, Any] = {"n_a": len(real_a), "n_b": len(real_b)}
    for key, real, fwd, back, other in (("a", real_a, g_ab, g_ba, real_b), ("b", real_b, g_ba, g_ab, real_a)):
        x = to_float(real)
        y = translate(fwd, x, batch)
        rec = translate(back, y, batch)
        out[f"cycle_l1_{key}"] = float(cycle_loss(rec, x))
        # FD needs two images on each side for a covariance
        fd_key = "fd_ab" if key == "a" else "fd_ba"
        out[fd_key] = (
            frechet_fd(extractor(to_uint8(y))[0], extractor(other)[0])
            if min(len(real), len(other)) >= 2
            else float("nan")
        )
    return out


# ---------------------------------------------------------------------------------------------------------------------
# a trained run


@dataclass
class CycleTranslator(Translator):
    """Both generators of a CycleGAN run; ``g`` translates in ``direction``, ``reverse`` back."""

    reverse: nn.Module | None = None
    direction: str = "AtoB"
    directions = ("AtoB", "BtoA")

    def toward(self, direction: str) -> "CycleTranslator":
        if direction not in self.directions:
            raise GankitError(f"--direction {direction!r}: use AtoB or BtoA")
        if direction == self.direction:
            return self
        return replace(self, g=self.reverse, reverse=self.g, direction=direction)

    def export_parts(self) -> tuple[nn.Module, tuple[Tensor, ...], list[str], dict[str, Any]]:
        module, inputs, names, meta = super().export_parts()
        return module, inputs, names, {**meta, "kind": "cyclegan", "direction": self.direction}


def load_cycle_translator(ck: Checkpoint, run: TrainedRun) -> CycleTranslator:
    shape = tuple(run.meta["image_shape"])
    g = build_models(run.config.model, shape, shape[0])["g"]  # type: ignore[arg-type]
    load_module(g, ck.tensors["g"], "generators", ck)
    g.eval()
    return CycleTranslator(g.ab, run.config, shape[0], shape, run.step, run.run_dir, reverse=g.ba)  # type: ignore[arg-type]


def evaluate_cycle(
    tr: CycleTranslator,
    cfg: Config,
    *,
    features: str,
    split: str | None,
    inception_path: str | None,
    progress: bool,
    **_: Any,
) -> dict[str, Any]:
    """`gankit eval` of a CycleGAN run: FD of A -> B translations against the real B images (and B -> A against A)
    and the cycle L1 of each domain, on the images training validated on, or on ``split``. Features: pixels,
    inception, or classifier (a classifier of the two domains, trained on the run's training images)."""
    from ..metrics import build_extractor

    train = load_dataset(cfg.data)
    if split:
        val = load_dataset(replace(cfg.data, split=split, limit=0))
    else:  # exactly the images training validated on
        train, held = split_domains(cfg, train, lambda m: None)
        if held is None:
            raise GankitError(
                f"run {tr.run_dir} trained on split '{cfg.data.split}' without held-out images; pass "
                f"--split with another split"
            )
        val = held
    ab = tr.toward("AtoB")
    ext = build_extractor(features, train, inception_path, None, progress)
    res = score_translations(ab.g, ab.reverse, val.images[domain_mask(val, 0)], val.images[domain_mask(val, 1)], ext)
    res.update(run=str(tr.run_dir), step=tr.step, split=split or "val", features=ext.name, features_id=ext.identity)
    return res


def _next_steps(run_dir: Path) -> list[str]:
    return [
        f"translate: gankit translate {run_dir} IMAGE_OR_FOLDER --out DIR [--direction BtoA]   "
        f"scores: gankit eval {run_dir}"
    ]


TASKS.add(
    "cyclegan",
    TaskSpec(
        build=CycleGANTask,
        split_validation=split_domains,
        load=load_cycle_translator,
        evaluate=evaluate_cycle,
        use="gankit translate",
        next_steps=_next_steps,
        validate_with_previews=True,
        best_metric=CycleGANTask.best_metric,
        preview_title="A | A→B | A→B→A | B | B→A | B→A→B over training",
        preview_caption="each row: a validation A image, its translation to B and back; a B image, to A and back",
        validation_title="FD (pixel features) of translations vs the real target domain, and cycle L1",
    ),
)
