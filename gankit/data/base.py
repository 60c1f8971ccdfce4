"""In-memory image data and its batcher.

Every data set is read once into a uint8 tensor (N, C, H, W) with int64 labels; batches are index slices of it, so
there is no per-item Python work in the training loop. The batch order is a pure function of (seed, epoch), which
makes the data position two plain integers that a checkpoint can store and resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.errors import GankitError


@dataclass
class ImageData:
    """A data set in memory.

    images: (N, C, H, W) uint8 in [0, 255]. labels: (N,) int64, -1 where unlabelled.
    targets: for paired (image-to-image) data, the B images (N, C', H, W) uint8; None otherwise.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    class_names: list[str] = field(default_factory=list)
    targets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be (N,)")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: slice | torch.Tensor) -> "ImageData":
        return ImageData(
            images=self.images[index],
            labels=self.labels[index],
            name=self.name,
            class_names=self.class_names,
            targets=None if self.targets is None else self.targets[index],
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
        # The whole set lives on the training device once; batches are gathers from it.
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.targets = None if data.targets is None else data.targets.to(self.device)
        self.batches_per_epoch = len(data) // batch_size
        self.epoch = 0
        self.pos = 0  # batches already taken in this epoch
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(len(self.data), generator=g).to(self.device)
        return self._perm

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The next batch: (images uint8 (B, C, H, W), labels (B,), targets or None)."""
        if self.pos >= self.batches_per_epoch:
            self.epoch += 1
            self.pos = 0
            self._perm = None
        idx = self._permutation()[self.pos * self.batch_size : (self.pos + 1) * self.batch_size]
        self.pos += 1
        tgt = None if self.targets is None else self.targets[idx]
        return self.images[idx], self.labels[idx], tgt

    @property
    def progress(self) -> float:
        """Epochs done, fractional."""
        return self.epoch + self.pos / self.batches_per_epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos, self.seed = int(state["epoch"]), int(state["pos"]), int(state["seed"])
        self._perm = None
