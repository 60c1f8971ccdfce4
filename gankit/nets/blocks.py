"""Pieces shared by every model: activations, the noise prior, label conditioning, weight init, spectral norm."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..core.registry import Registry

ACTIVATIONS: Registry[type] = Registry("activation")
ACTIVATIONS.add("relu", lambda: nn.ReLU(inplace=True))
ACTIVATIONS.add("leaky_relu", lambda: nn.LeakyReLU(0.2, inplace=True))
ACTIVATIONS.add("leaky_relu_0.3", lambda: nn.LeakyReLU(0.3, inplace=True))  # Keras' default slope
ACTIVATIONS.add("elu", lambda: nn.ELU(inplace=True))
ACTIVATIONS.add("gelu", lambda: nn.GELU())
ACTIVATIONS.add("tanh", lambda: nn.Tanh())
ACTIVATIONS.add("sigmoid", lambda: nn.Sigmoid())
ACTIVATIONS.add("silu", lambda: nn.SiLU(inplace=True))


def activation(name: str) -> nn.Module:
    return ACTIVATIONS.get(name)()


def sample_noise(
    n: int, z_dim: int, kind: str, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> Tensor:
    """The prior p(z): (n, z_dim) from N(0, I) or U[-1, 1]."""
    if kind == "normal":
        return torch.randn(n, z_dim, device=device, generator=generator)
    if kind == "uniform":
        return torch.rand(n, z_dim, device=device, generator=generator).mul_(2).sub_(1)
    raise ValueError(f"unknown noise prior {kind!r}")


def one_hot(y: Tensor, num_classes: int) -> Tensor:
    return F.one_hot(y.long(), num_classes).to(torch.float32)


def with_label(z: Tensor, y: Tensor | None, num_classes: int) -> Tensor:
    """G's input: z (B, z_dim), joined by the one-hot label (B, K) when the model is conditional."""
    return torch.cat([z, one_hot(y, num_classes).to(z)], 1) if num_classes else z


def join_planes(x: Tensor, v: Tensor, memory_format: torch.memory_format) -> Tensor:
    """Images (B, C, H, W) joined by constant planes holding v (B, K) -> (B, C + K, H, W) in ``memory_format``.

    Written into one tensor of the conv's memory format rather than ``torch.cat``: cat returns NCHW when x has one
    channel (a 1-channel tensor is both layouts), and a channels_last conv then copied its whole input again."""
    b, c, h, w = x.shape
    out = torch.empty((b, c + v.shape[1], h, w), dtype=x.dtype, device=x.device, memory_format=memory_format)
    out[:, :c] = x
    out[:, c:] = v[:, :, None, None]
    return out


def first_format(module: nn.Module) -> torch.memory_format:
    """The memory format of a module's first 4-d parameter (its first conv's weight): channels_last or contiguous."""
    for p in module.parameters():
        if p.ndim == 4:
            return (
                torch.channels_last
                if not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
                else torch.contiguous_format
            )
    return torch.contiguous_format


class DenseTranspose2d(nn.ConvTranspose2d):
    """DCGAN's first G layer, a transposed conv from a 1x1 input (z) to a k x k map, computed as the matrix product it
    is. Parameters, state dict and results are nn.ConvTranspose2d's; on the CPU oneDNN runs the conv form several
    times slower and copies the weight to another layout on every call (docs/notes/time-to-quality-round-5.md,
    "A faster DCGAN step, same results").
    Any other input shape falls back to the transposed conv."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if (
            x.ndim != 4
            or x.shape[2] != 1
            or x.shape[3] != 1
            or output_size is not None
            or self.groups != 1
            or self.stride != (1, 1)
            or self.padding != (0, 0)
            or self.output_padding != (0, 0)
            or self.dilation != (1, 1)
        ):
            return super().forward(x, output_size)
        w, (cin, cout, kh, kw) = self.weight, self.weight.shape
        z = x.reshape(x.shape[0], cin)
        if w.is_contiguous():  # (Cin, Cout*kh*kw): the output comes out NCHW
            out = (z @ w.reshape(cin, cout * kh * kw)).view(-1, cout, kh, kw)
        else:  # a channels_last weight is (Cin, kh, kw, Cout) in memory: the output comes out channels_last
            out = (z @ w.permute(0, 2, 3, 1).reshape(cin, kh * kw * cout)).view(-1, kh, kw, cout).permute(0, 3, 1, 2)
        return out if self.bias is None else out + self.bias[:, None, None]


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: conv and linear weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    for m in module.modules():  # after the loop above, which took their tables for plain embeddings
        if isinstance(m, ClassBatchNorm2d):
            nn.init.normal_(m.scale.weight, 1.0, 0.02)
            nn.init.zeros_(m.shift.weight)


def add_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every conv and linear layer of ``module``."""
    from torch.nn.utils.parametrizations import spectral_norm

    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            setattr(module, name, spectral_norm(child))
        else:
            add_spectral_norm(child)
    return module


class Projection(nn.Module):
    """The projection discriminator's class term (Miyato & Koyama 2018): <embed(y), h>, h the final features."""

    def __init__(self, num_classes: int, features: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, features)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:  # h (B, F) -> (B,)
        return (self.embed(y.long()) * h).sum(1)


class LabelConditioning(nn.Module):
    """How a discriminator sees the class (``num_classes`` > 0), shared by every D: "concat" joins one-hot labels to
    D's input (constant label planes for images, a vector for flat inputs); "projection" adds <embed(y), h> to the
    logit, h being D's final features (B, F)."""

    def __init__(self, num_classes: int, conditioning: str) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.concat = num_classes > 0 and conditioning == "concat"
        self.extra_inputs = num_classes if self.concat else 0  # channels (or units) D's first layer must accept
        self.projection: Projection | None = None

    def set_features(self, features: int) -> None:
        """Called once D's feature width is known; creates the projection embedding when conditioning needs it."""
        if self.num_classes and not self.concat:
            self.projection = Projection(self.num_classes, features)

    def join(self, x: Tensor, y: Tensor | None, memory_format: torch.memory_format = torch.contiguous_format) -> Tensor:
        """D's input with the class joined ("concat"); images come out in ``memory_format``, the first conv's."""
        if not self.concat:
            return x
        if x.ndim == 4:
            return join_planes(x, one_hot(y, self.num_classes).to(x), memory_format)
        return torch.cat([x, one_hot(y, self.num_classes).to(x)], 1)

    def logit(self, logit: Tensor, h: Tensor, y: Tensor | None) -> Tensor:
        return logit if self.projection is None else logit + self.projection(h, y)


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018): one extra feature map holding how much the features vary
    across groups of ``group`` images, so D can see a batch with too little variety. Groups are whole-batch when the
    batch does not divide."""

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = self.group if b % self.group == 0 else b
        y = x.float().reshape(g, b // g, c, h, w)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (b // g,)
        y = y.to(x.dtype).repeat(g)[:, None, None, None].expand(b, 1, h, w)
        return torch.cat([x, y], 1)


class ClassBatchNorm2d(nn.Module):
    """Class-conditional BatchNorm (de Vries et al. 2017, as in SNGAN and BigGAN's G): statistics shared, the scale
    and shift looked up per class, starting at the plain BatchNorm's 1 and 0."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(features, affine=False)
        self.scale = nn.Embedding(num_classes, features)
        self.shift = nn.Embedding(num_classes, features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        y = y.long()
        return self.norm(x) * self.scale(y)[:, :, None, None] + self.shift(y)[:, :, None, None]
