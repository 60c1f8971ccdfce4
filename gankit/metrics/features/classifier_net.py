"""The domain classifier that ``classifier`` features come from: its recipe (:class:`ClassifierTraining`), the
network (:class:`DomainClassifier`), how its feature blocks are normalised on real images, and how images reach it.
Training it is :mod:`.classifier_training`; using it as a feature extractor is :mod:`.classifier`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.errors import GankitError
from ...data.base import to_float
from ...data.transforms import convert_channels, resize


@dataclass(frozen=True)
class ClassifierTraining:
    """Everything that decides the classifier's weights besides the data; hashed into the cache key.

    Bump ``version`` whenever the network or the training loop changes in a way these fields do not capture.
    """

    version: str = "3"  # 3: BatchNorm, one-cycle AdamW, shifted training images (2: native resolution, multi-layer
    # features, trained 5 epochs at lr 1e-3; 1: resized to 32, last layer only). Accuracies of each:
    # docs/notes/fd-sees-blur.md.
    max_size: int = 64  # larger images are shrunk to this; smaller ones are used at their own size, never enlarged
    width: int = 32  # channels of the first conv; doubled by each of the next two
    feature_dim: int = 128  # the penultimate layer
    epochs: int = 8
    batch_size: int = 128
    lr: float = 5e-3  # the peak of the schedule
    schedule: str = "onecycle"  # or "constant"; onecycle: linear warm-up over the first 20 % of steps, cosine to 0
    weight_decay: float = 1e-2  # AdamW's decoupled weight decay
    translate: float = 0.07  # training images shifted at random by up to this share of their side (2 px at 28-32)
    label_smoothing: float = 0.0
    batchnorm: bool = True  # BatchNorm after each conv (running statistics at evaluation)
    first_share: float = 2.0  # the first conv block's share of the feature variance, relative to each other block's
    holdout: float = 0.1  # share of the labelled images kept out of training to measure accuracy
    max_images: int = 20_000  # a fixed random subset of larger sets, to bound the training time
    seed: int = 0


DEFAULT_RECIPE = ClassifierTraining()  # frozen: one shared default is safe

# Images whose feature statistics set the normalisation of each block (a fixed subset of the training images).
NORM_IMAGES = 5000


class DomainClassifier(nn.Module):
    """A stride-1 convolution at the input's own resolution, two stride-2 ones (each followed by BatchNorm when
    ``batchnorm``), a ``feature_dim`` ReLU layer, a head.

    Input (B, in_channels, H, W) float in [-1, 1], any H, W >= 1; ``forward`` returns logits (B, K).

    ``features`` (B, D) concatenates four blocks: the root-mean-square over the image of every channel of each conv
    layer (``width``, ``2 width``, ``4 width`` values), then the penultimate layer (``feature_dim``). The last layer
    alone is trained to ignore anything that does not change the class, so blur, which keeps the class, barely moves
    it; the energy of the first layer's 3x3 responses at full resolution is what blur lowers. Each block is centred
    and scaled (buffers ``feat_shift``, ``feat_scale``, set by :func:`fit_normalisation` on real training images) to
    a set share of the total variance D there (by default each block D / 5, the first 2 D / 5): a layer weighs what
    its share says in FD whatever its width, and the features have unit variance on average, the scale KID's
    polynomial kernel assumes. The first block gets twice the share because a well-trained network's deeper layers
    learn to ignore blur too: recipe 3's, trained to a higher accuracy, keep much less of it than recipe 2's
    (docs/notes/fd-sees-blur.md, "Recipe 3").
    """

    grid = 4  # the last conv's map is average-pooled to grid x grid before the penultimate layer

    def __init__(
        self, in_channels: int, num_classes: int, width: int = 32, feature_dim: int = 128, batchnorm: bool = False
    ) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width]
        strides = [1, 2, 2]  # the first at full resolution: strokes and edges
        self.convs = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, stride=s, padding=1, bias=not batchnorm),
                    nn.BatchNorm2d(c_out) if batchnorm else nn.Identity(),
                )
                for c_in, c_out, s in zip(chans[:-1], chans[1:], strides)
            ]
        )
        self.fc = nn.Linear(4 * width * self.grid**2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)
        self.block_dims = [width, 2 * width, 4 * width, feature_dim]
        dim = sum(self.block_dims)
        self.register_buffer("feat_shift", torch.zeros(dim))
        self.register_buffer("feat_scale", torch.ones(dim))

    def blocks(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Raw feature blocks [(B, width), (B, 2 width), (B, 4 width), (B, feature_dim)] and logits (B, K)."""
        out = []
        for conv in self.convs:
            x = F.relu(conv(x))  # (B, C, H', W')
            out.append(x.square().mean(dim=(2, 3)).sqrt())  # per-channel RMS: response energy, position-free
        penultimate = F.relu(self.fc(F.adaptive_avg_pool2d(x, self.grid).flatten(1)))
        out.append(penultimate)
        return out, self.head(penultimate)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features (B, D) and logits (B, K)."""
        blocks, logits = self.blocks(x)
        return (torch.cat(blocks, dim=1) - self.feat_shift) * self.feat_scale, logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) only: training skips the energies, which its loss does not use."""
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.head(F.relu(self.fc(F.adaptive_avg_pool2d(x, self.grid).flatten(1))))


def fit_normalisation(
    net: DomainClassifier, images: torch.Tensor, first_share: float = 1.0, batch_size: int = 512
) -> None:
    """Set ``net``'s feature normalisation from real uint8 images (N, C, H, W) at the network's input size: each
    block's mean goes to 0 and its total variance to D times its share (``first_share`` for the first block, 1 for the
    others) over the sum of the shares. A constant block is only centred."""
    with torch.inference_mode():
        raw = torch.cat(
            [
                torch.cat(net.blocks(to_float(images[i : i + batch_size]))[0], dim=1)
                for i in range(0, len(images), batch_size)
            ]
        ).double()
    shift = raw.mean(0)
    scale = torch.ones_like(shift)
    shares = [first_share] + [1.0] * (len(net.block_dims) - 1)
    start = 0
    for d, s in zip(net.block_dims, shares):
        target = sum(net.block_dims) * s / sum(shares)
        total_var = float(raw[:, start : start + d].var(dim=0).sum()) if len(raw) > 1 else 0.0
        if total_var > 1e-12:
            scale[start : start + d] = (target / total_var) ** 0.5
        start += d
    net.feat_shift.copy_(shift.float())
    net.feat_scale.copy_(scale.float())


def input_size(height: int, width: int, recipe: ClassifierTraining) -> int:
    """The square side the classifier sees: the images' own size, shrunk to ``recipe.max_size`` when larger."""
    return min(max(height, width), recipe.max_size)


def _prepare(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, channels, size, size): gray <-> RGB, then an antialiased resize only when the
    size differs (as the data pipeline resizes, so real and generated images reach the network the same way)."""
    c = images.shape[1]
    if c not in (1, 3) and c != channels:
        raise GankitError(f"the classifier takes 1- or 3-channel images, got {c} channels")
    return resize(convert_channels(images, channels), size)
