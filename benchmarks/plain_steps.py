"""The reports' and recommended recipes' training steps written as plain PyTorch, as a user would write them from a
report: nn.Sequential G and D with the same layer shapes as gankit's, plain torch.optim (Adam, RMSprop) with its
defaults, BCE with logits (or the Wasserstein loss with weight clipping), default memory format, D's weights left
trainable during G's update (the PyTorch DCGAN example's structure: one G forward per D/G step, D(fake.detach())
for D, D(fake) for G). Nothing here imports gankit: this is the baseline gankit is measured against
(``benchmarks/train_speed.py --against plain``).

Each builder takes plain numbers (read from a gankit config by train_speed.py) and returns (G, D); every G maps
(z (B, nz), labels (B,) or None) to images (B, C, H, W) in [-1, 1], every D maps (images, labels) to logits (B,).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def one_hot(y: torch.Tensor | None, k: int, like: torch.Tensor) -> torch.Tensor | None:
    return None if y is None or not k else F.one_hot(y.long(), k).to(like)


class Cond(nn.Module):
    """G: one-hot label concatenated to z; then the body. (The reports' conditional GAN.)"""

    def __init__(self, body: nn.Module, k: int) -> None:
        super().__init__()
        self.body, self.k = body, k

    def forward(self, z, y=None):
        oh = one_hot(y, self.k, z)
        return self.body(z if oh is None else torch.cat([z, oh], 1))


class CondD(nn.Module):
    """D: one-hot label as constant planes concatenated to the image (conv D) or to the flat image (MLP D)."""

    def __init__(self, body: nn.Module, k: int, flat: bool) -> None:
        super().__init__()
        self.body, self.k, self.flat = body, k, flat

    def forward(self, x, y=None):
        if self.flat:
            x = x.flatten(1)
        oh = one_hot(y, self.k, x)
        if oh is not None:
            x = torch.cat([x, oh if self.flat else oh[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        return self.body(x).view(-1)


class ClassBN(nn.Module):
    """Class-conditional BatchNorm: shared statistics, per-class scale and shift."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c, affine=False)
        self.scale, self.shift = nn.Embedding(k, c), nn.Embedding(k, c)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x, y):
        return self.bn(x) * self.scale(y)[:, :, None, None] + self.shift(y)[:, :, None, None]


class ClassBNG(nn.Module):
    """A DCGAN G whose BatchNorms are class-conditional (the recommended conditional MNIST recipe)."""

    def __init__(self, layers: list[nn.Module], k: int) -> None:
        super().__init__()
        self.layers, self.k = nn.ModuleList(layers), k

    def forward(self, z, y):
        h = torch.cat([z, F.one_hot(y.long(), self.k).to(z)], 1)[:, :, None, None]
        for m in self.layers:
            h = m(h, y) if isinstance(m, ClassBN) else m(h)
        return h


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU(True), "leaky_relu": nn.LeakyReLU(0.2, True), "leaky_relu_0.3": nn.LeakyReLU(0.3, True)}[
        name
    ]


def dcgan(
    size: int,
    nc: int,
    nz: int,
    ngf: int,
    ndf: int,
    g_bn: bool,
    d_bn: bool,
    k: int = 0,
    class_norm: bool = False,
    max_ch: int = 1024,
) -> tuple[nn.Module, nn.Module]:
    """Radford et al.: G ConvT(k4 s2) stack with BN+ReLU, D Conv(k4 s2) stack with BN (not the first)+LeakyReLU 0.2."""
    base, n = (7, 2) if size == 28 else (4, int(math.log2(size)) - 2)
    w = [min(ngf * 2**i, max_ch) for i in range(n)][::-1]
    g: list[nn.Module] = [nn.ConvTranspose2d(nz + k, w[0], base, 1, 0, bias=not g_bn)]
    for i in range(n):
        if g_bn:
            g.append(ClassBN(w[i], k) if class_norm else nn.BatchNorm2d(w[i]))
        last = i == n - 1
        g += [nn.ReLU(True), nn.ConvTranspose2d(w[i], nc if last else w[i + 1], 4, 2, 1, bias=last or not g_bn)]
    g.append(nn.Tanh())
    if class_norm:
        G: nn.Module = ClassBNG(g, k)
    else:
        G = Cond(nn.Sequential(nn.Unflatten(1, (nz + k, 1, 1)), *g), k)
    wd = [min(ndf * 2**i, max_ch) for i in range(n)]
    d: list[nn.Module] = []
    c_in = nc + k
    for i in range(n):
        bn = d_bn and i > 0
        d.append(nn.Conv2d(c_in, wd[i], 4, 2, 1, bias=not bn))
        if bn:
            d.append(nn.BatchNorm2d(wd[i]))
        d.append(nn.LeakyReLU(0.2, True))
        c_in = wd[i]
    d.append(nn.Conv2d(c_in, 1, base, 1, 0))
    return G, CondD(nn.Sequential(*d), k, flat=False)


def dcgan_tf(
    size: int, nc: int, nz: int, ngf: int, ndf: int, g_bn: bool, d_bn: bool, d_drop: float, k: int = 0
) -> tuple[nn.Module, nn.Module]:
    """The TensorFlow DCGAN tutorial (report 004): Dense 7x7x256, ConvT 5x5 128 s1, 64 s2, C s2; D Conv 5x5 64, 128 s2
    with dropout, Dense(1). LeakyReLU 0.3 (Keras' default)."""
    b = size // 4
    c0, c1, c2 = ngf * 4, ngf * 2, ngf
    G = nn.Sequential(
        nn.Linear(nz + k, c0 * b * b, bias=not g_bn),
        *([nn.BatchNorm1d(c0 * b * b)] if g_bn else []),
        nn.LeakyReLU(0.3, True),
        nn.Unflatten(1, (c0, b, b)),
        nn.ConvTranspose2d(c0, c1, 5, 1, 2, bias=not g_bn),
        *([nn.BatchNorm2d(c1)] if g_bn else []),
        nn.LeakyReLU(0.3, True),
        nn.ConvTranspose2d(c1, c2, 5, 2, 2, output_padding=1, bias=not g_bn),
        *([nn.BatchNorm2d(c2)] if g_bn else []),
        nn.LeakyReLU(0.3, True),
        nn.ConvTranspose2d(c2, nc, 5, 2, 2, output_padding=1, bias=False),
        nn.Tanh(),
    )
    D = nn.Sequential(
        nn.Conv2d(nc + k, ndf, 5, 2, 2),
        nn.LeakyReLU(0.3, True),
        nn.Dropout(d_drop),
        nn.Conv2d(ndf, ndf * 2, 5, 2, 2, bias=not d_bn),
        *([nn.BatchNorm2d(ndf * 2)] if d_bn else []),
        nn.LeakyReLU(0.3, True),
        nn.Dropout(d_drop),
        nn.Flatten(),
        nn.Linear(ndf * 2 * b * b, 1),
    )
    return Cond(G, k), CondD(D, k, flat=False)


def dcgan_3conv(size: int, nc: int, nz: int, ngf: int, ndf: int, g_drop: float) -> tuple[nn.Module, nn.Module]:
    """Report 002's TensorFlow DCGAN: Dense 7x7x256, ConvT 5x5 128 s2, 64 s2, dropout, C s1; D Conv 5x5 64/128/256 s2
    (BN from the second), Dense(1). LeakyReLU 0.2."""
    b = size // 4
    G = nn.Sequential(
        nn.Linear(nz, ngf * 4 * b * b, bias=False),
        nn.BatchNorm1d(ngf * 4 * b * b),
        nn.LeakyReLU(0.2, True),
        nn.Unflatten(1, (ngf * 4, b, b)),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 5, 2, 2, output_padding=1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.LeakyReLU(0.2, True),
        nn.ConvTranspose2d(ngf * 2, ngf, 5, 2, 2, output_padding=1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.LeakyReLU(0.2, True),
        nn.Dropout(g_drop),
        nn.ConvTranspose2d(ngf, nc, 5, 1, 2, bias=False),
        nn.Tanh(),
    )
    s = math.ceil(math.ceil(math.ceil(size / 2) / 2) / 2)  # three 'same' stride-2 convs
    D = nn.Sequential(
        nn.Conv2d(nc, ndf, 5, 2, 2),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 5, 2, 2, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, ndf * 4, 5, 2, 2, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, True),
        nn.Flatten(),
        nn.Linear(ndf * 4 * s * s, 1),
    )
    return Cond(G, 0), CondD(D, 0, flat=False)


def dcgan_upsample(
    size: int, nc: int, nz: int, ngf: int, ndf: int, g_drop: float, d_drop: float
) -> tuple[nn.Module, nn.Module]:
    """Report 002's Keras DCGAN: Dense, [Upsample x2, Conv3] x 2 cells, LeakyReLU and dropout; D mirrors it."""
    b = size // 4
    c0, c1, c2 = ngf * 4, ngf * 2, ngf
    lr = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731
    G = nn.Sequential(
        nn.Linear(nz, c0 * b * b),
        lr(),
        nn.Unflatten(1, (c0, b, b)),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(c0, c1, 3, 1, 1),
        lr(),
        nn.Dropout(g_drop),
        nn.Conv2d(c1, c1, 3, 1, 1),
        lr(),
        nn.Dropout(g_drop),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(c1, c2, 3, 1, 1),
        lr(),
        nn.Dropout(g_drop),
        nn.Conv2d(c2, nc, 3, 1, 1),
        nn.Tanh(),
    )
    D = nn.Sequential(
        nn.Conv2d(nc, ndf, 3, 1, 1),
        lr(),
        nn.Dropout(d_drop),
        nn.Conv2d(ndf, ndf, 3, 2, 1),
        lr(),
        nn.Dropout(d_drop),
        nn.Conv2d(ndf, ndf * 2, 3, 1, 1),
        lr(),
        nn.Dropout(d_drop),
        nn.Conv2d(ndf * 2, ndf * 2, 3, 2, 1),
        lr(),
        nn.Dropout(d_drop),
        nn.Flatten(),
        nn.Linear(ndf * 2 * b * b, 1),
    )
    return Cond(G, 0), CondD(D, 0, flat=False)


def _mlp(sizes: list[int], bn: bool, act: str, drop: float) -> list[nn.Module]:
    out: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        out += [
            nn.Linear(a, b, bias=not bn),
            *([nn.BatchNorm1d(b)] if bn else []),
            _act(act),
            *([nn.Dropout(drop)] if drop else []),
        ]
    return out


def mlp(
    shape: tuple[int, int, int],
    nz: int,
    g_hidden: list[int],
    d_hidden: list[int],
    g_bn: bool,
    d_bn: bool,
    g_act: str,
    d_act: str,
    k: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """The 2014 GAN's fully connected G and D (tanh output, one logit)."""
    n = math.prod(shape)
    G = nn.Sequential(
        *_mlp([nz + k, *g_hidden], g_bn, g_act, 0.0), nn.Linear(g_hidden[-1], n), nn.Tanh(), nn.Unflatten(1, shape)
    )
    D = nn.Sequential(*_mlp([n + k, *d_hidden], d_bn, d_act, 0.0), nn.Linear(d_hidden[-1], 1))
    return Cond(G, k), CondD(D, k, flat=True)


class Maxout(nn.Module):
    def __init__(self, a: int, b: int, pieces: int) -> None:
        super().__init__()
        self.lin, self.b, self.p = nn.Linear(a, b * pieces), b, pieces

    def forward(self, x):
        return self.lin(x).view(-1, self.b, self.p).amax(2)


def mlp_maxout(
    shape: tuple[int, int, int], nz: int, g_hidden: list[int], d_hidden: list[int], d_drop: float, pieces: int = 5
) -> tuple[nn.Module, nn.Module]:
    """The 2014 paper's MNIST nets: ReLU MLP G; maxout D with dropout."""
    n = math.prod(shape)
    G = nn.Sequential(
        *_mlp([nz, *g_hidden], False, "relu", 0.0), nn.Linear(g_hidden[-1], n), nn.Tanh(), nn.Unflatten(1, shape)
    )
    sizes = [n, *d_hidden]
    d: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        d += [Maxout(a, b, pieces), nn.Dropout(d_drop)]
    D = nn.Sequential(*d, nn.Linear(sizes[-1], 1))
    return Cond(G, 0), CondD(D, 0, flat=True)


OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
    "adadelta": torch.optim.Adadelta,
    "adagrad": torch.optim.Adagrad,
}


def plain_step(
    G: nn.Module,
    D: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    batch: int,
    nz: int,
    loss: str,
    optim: str,
    lr: tuple[float, float],
    betas: tuple[float, float],
    d_steps: int,
    clip: float,
    ema_beta: float,
    device: str,
) -> Callable[[], int]:
    """One training step as the reports write it; returns a function doing one step and returning images used.

    ``images``: float (N, C, H, W) in [-1, 1] on ``device`` (already converted, the way a user's tensor data set is);
    batches are slices of a fresh permutation each epoch. ``loss``: "bce" (BCE with logits, G non-saturating) or
    "wgan" (critic n_critic times with weight clipping, a fresh G forward for G's update, as the WGAN paper's code).
    ``ema_beta`` > 0 keeps an exponential moving average of G's weights (the recipes that keep one)."""
    G.to(device).train()
    D.to(device).train()
    kind = OPTIMIZERS[optim]
    extra = {"betas": betas} if optim == "adam" else {}
    opt_g = kind(G.parameters(), lr=lr[0], **extra)
    opt_d = kind(D.parameters(), lr=lr[1], **extra)
    ema = None
    if ema_beta > 0:
        import copy

        ema = copy.deepcopy(G).eval().requires_grad_(False)
    n = images.shape[0]
    state = {"perm": torch.randperm(n, device=device), "pos": 0}

    def batch_of() -> tuple[torch.Tensor, torch.Tensor | None]:
        if state["pos"] + batch > n:
            state["perm"], state["pos"] = torch.randperm(n, device=device), 0
        idx = state["perm"][state["pos"] : state["pos"] + batch]
        state["pos"] += batch
        return images[idx], (None if labels is None else labels[idx])

    bce = nn.BCEWithLogitsLoss()

    def step() -> int:
        for _ in range(d_steps):
            real, y = batch_of()
            b = real.shape[0]
            z = torch.randn(b, nz, device=device)
            fake = G(z, y)
            if loss == "wgan":
                loss_d = D(fake.detach(), y).mean() - D(real, y).mean()
            else:
                loss_d = bce(D(real, y), torch.ones(b, device=device)) + bce(
                    D(fake.detach(), y), torch.zeros(b, device=device)
                )
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            if clip:
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-clip, clip)
        if loss == "wgan":  # a fresh sample for G's update
            fake = G(torch.randn(b, nz, device=device), y)
            loss_g = -D(fake, y).mean()
        else:
            loss_g = bce(D(fake, y), torch.ones(b, device=device))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if ema is not None:
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), G.parameters()):
                    pe.lerp_(p, 1 - ema_beta)
                for be, bb in zip(ema.buffers(), G.buffers()):
                    be.copy_(bb)
        return b * d_steps

    return step
