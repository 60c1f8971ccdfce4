"""Image data (in RAM or memory-mapped) and its batcher.

Every data set is read once into a uint8 tensor (N, C, H, W) with int64 labels, either in RAM or mapped from a cache
file on disk (:mod:`gankit.data.memmap`); batches are index gathers from it, so there is no per-item Python work in
the training loop and a mapped set is read only where a batch touches it. The batch order is a pure function of (seed, epoch), which
makes the data position two plain integers that a checkpoint can store and resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import GankitError


@dataclass
class ImageData:
    """A data set in memory or memory-mapped.

    images: (N, C, H, W) uint8 in [0, 255]. labels: (N,) int64, -1 where unlabelled.
    targets: for paired (image-to-image) data, the B images (N, C', H, W) uint8; None otherwise.
    cache_path: the memmap cache folder ``images`` is mapped from (a tensor over a numpy memmap), or None in RAM.
    Gathering rows of a mapped tensor reads only those rows; anything that touches every image (``.to(cuda)``,
    ``.float()``) reads the whole file into memory.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    class_names: list[str] = field(default_factory=list)
    targets: torch.Tensor | None = None
    cache_path: Path | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be (N,)")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> list[int]:
        """Images per class (index = class id); empty when the set has no classes or unlabelled images. Saved with
        every run so a conditional G is sampled in the proportions it was trained on."""
        if not self.num_classes or len(self) == 0 or bool((self.labels < 0).any()):
            return []
        return torch.bincount(self.labels.long(), minlength=self.num_classes).tolist()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def mapped(self) -> bool:
        """Whether ``images`` is read from a memory-mapped cache rather than held in RAM."""
        return self.cache_path is not None

    def subset(self, index: slice | torch.Tensor) -> "ImageData":
        """The images at ``index``. A slice of a mapped set stays mapped (a view); an index tensor gathers the
        chosen images into RAM."""
        return ImageData(
            images=self.images[index],
            labels=self.labels[index],
            name=self.name,
            class_names=self.class_names,
            targets=None if self.targets is None else self.targets[index],
            cache_path=self.cache_path if isinstance(index, slice) else None,
        )


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded and clamped."""
    return x.detach().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


class Batcher:
    """Endless shuffled batches from an :class:`ImageData`, one epoch after another, dropping the ragged tail.

    The permutation of epoch e is drawn from a generator seeded with (seed, e), so (epoch, pos) is the full state.
    ``next()`` is ``gather(next_indices())``; a data-parallel process calls ``next_indices()`` (the same on every
    process), keeps its share (:func:`shard_indices`) and gathers only that, so it reads only its own rows.

    A RAM set is moved to ``device`` once and batches are gathered there. A memory-mapped set stays on disk: rows
    are gathered on the CPU and the batch alone is moved to ``device``.
    """

    def __init__(self, data: ImageData, batch_size: int, seed: int, device: torch.device | str = "cpu") -> None:
        if batch_size > len(data):
            raise GankitError(
                f"train.batch_size={batch_size} is larger than the data set ({len(data)} images); lower it"
            )
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.device = torch.device(device)
        # Where the rows are gathered: the training device for RAM data, the CPU for a map (never copied whole).
        self.store = torch.device("cpu") if data.mapped else self.device
        self.images = data.images.to(self.store)
        self.labels = data.labels.to(self.store)
        self.targets = None if data.targets is None else data.targets.to(self.store)
        self.batches_per_epoch = len(data) // batch_size
        self.epoch = 0
        self.pos = 0  # batches already taken in this epoch
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            # Drawn on the CPU (the same order on every device), moved to where rows are gathered once an epoch: a
            # copy of each batch's indices to an accelerator would wait for the device at every step.
            self._perm = torch.randperm(len(self.data), generator=g).to(self.store)
        return self._perm

    def next_indices(self) -> torch.Tensor:
        """Advance by one batch and return its image indices, int64 (batch_size,), on the device rows are gathered
        on (the training device for RAM data, the CPU for a memory-mapped set)."""
        if self.pos >= self.batches_per_epoch:
            self.epoch += 1
            self.pos = 0
            self._perm = None
        idx = self._permutation()[self.pos * self.batch_size : (self.pos + 1) * self.batch_size]
        self.pos += 1
        return idx

    def gather(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The rows at ``indices`` (any int64 1-D tensor): (images uint8 (B, C, H, W), labels (B,), targets or None),
        on the batcher's device. Reads only those rows of a memory-mapped set."""
        idx = indices.to(self.store)
        out = (self.images[idx], self.labels[idx], None if self.targets is None else self.targets[idx])
        if self.store == self.device:
            return out
        pin = self.device.type == "cuda"  # pinned pages let the copy overlap with compute
        return tuple(
            None if t is None else (t.pin_memory() if pin else t).to(self.device, non_blocking=pin) for t in out
        )  # type: ignore[return-value]

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The next batch: (images uint8 (B, C, H, W), labels (B,), targets or None)."""
        return self.gather(self.next_indices())

    @property
    def progress(self) -> float:
        """Epochs done, fractional."""
        return self.epoch + self.pos / self.batches_per_epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos, self.seed = int(state["epoch"]), int(state["pos"]), int(state["seed"])
        self._perm = None


def shard_indices(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process ``rank``'s share of a global batch's indices: contiguous parts, the first ``len % world_size`` ranks
    taking one more (``torch.tensor_split``), so the shares of all ranks are disjoint and together are the batch."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return torch.tensor_split(indices, world_size)[rank]
