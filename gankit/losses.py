"""GAN objectives as pure functions of discriminator outputs (logits / critic scores), in one registry.

Each loss gives D's loss from (real, fake) scores and G's loss from fake scores; both return scalar tensors.
Conventions: scores are (B,) raw logits; D's loss is the sum of its real and fake terms (the 2014 paper's value
function), so the minimax/non-saturating numbers compare directly with most published curves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .core.registry import Registry


@dataclass(frozen=True)
class GANLoss:
    d: Callable[..., Tensor]  # d(real, fake, smoothing=0.0) -> scalar
    g: Callable[[Tensor], Tensor]  # g(fake) -> scalar
    gradient_penalty: bool = False  # add loss.gp_weight * gradient_penalty(...) to D's loss
    weight_clip: bool = False  # clip D's weights to [-loss.clip, loss.clip] after each D step
    floor_zero: bool = True  # D's loss is >= 0 (so "D loss near 0" means D wins); False for Wasserstein critics
    smoothing: bool = True  # label smoothing has a meaning (a target to move); not for hinge or Wasserstein
    doc: str = ""


LOSSES: Registry[GANLoss] = Registry("loss")


def _bce_d(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    # One-sided label smoothing (Salimans et al. 2016): only the real target moves, to 1 - smoothing.
    real_t = torch.full_like(real, 1.0 - smoothing)
    return F.binary_cross_entropy_with_logits(real, real_t) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def minimax_g(fake: Tensor) -> Tensor:
    """G minimises E[log(1 - D(G(z)))] = E[-softplus(l)] — saturates when D is confident, as the paper warns."""
    return -F.softplus(fake).mean()


def non_saturating_g(fake: Tensor) -> Tensor:
    """G maximises E[log D(G(z))]: loss E[softplus(-l)]."""
    return F.softplus(-fake).mean()


def lsgan_d(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    return 0.5 * ((real - (1.0 - smoothing)) ** 2).mean() + 0.5 * (fake**2).mean()


def lsgan_g(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1.0) ** 2).mean()


def hinge_d(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def wasserstein_d(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """The critic maximises E[C(x)] - E[C(G(z))]: loss E[C(G(z))] - E[C(x)]."""
    return fake.mean() - real.mean()


def wasserstein_g(fake: Tensor) -> Tensor:
    return -fake.mean()


LOSSES.add("minimax", GANLoss(_bce_d, minimax_g, doc="2014 minimax: G minimises log(1 - D(G(z)))"))
LOSSES.add("non_saturating", GANLoss(_bce_d, non_saturating_g, doc="BCE; G maximises log D(G(z))"))
LOSSES.add("lsgan", GANLoss(lsgan_d, lsgan_g, doc="least squares, targets 1 (real) and 0 (fake)"))
LOSSES.add("hinge", GANLoss(hinge_d, wasserstein_g, smoothing=False, doc="hinge D, -D(G(z)) for G"))
LOSSES.add(
    "wgan",
    GANLoss(
        wasserstein_d,
        wasserstein_g,
        weight_clip=True,
        floor_zero=False,
        smoothing=False,
        doc="WGAN with weight clipping",
    ),
)
LOSSES.add(
    "wgan-gp",
    GANLoss(
        wasserstein_d,
        wasserstein_g,
        gradient_penalty=True,
        floor_zero=False,
        smoothing=False,
        doc="WGAN with gradient penalty",
    ),
)


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """WGAN-GP penalty E[(||grad_x C(x_hat)||_2 - 1)^2], x_hat = a*real + (1-a)*fake.

    The weight ``a`` is drawn once per sample (B, 1, ..., 1), not per pixel, and the norm is taken over each sample's
    whole gradient — the two mistakes often made in public code.

    Runs in fp32 with autocast off, on the unscaled scores (as :func:`r1_penalty`): under mixed precision the
    gradient norm of half-precision activations is a known NaN source (StudioGAN #175, lightweight-gan #92), and
    a GradScaler's scale must not enter the norm. With fp32 inputs and no autocast this is the plain computation.
    """
    b = real.shape[0]
    real, fake = real.detach(), fake.detach()
    if real.dtype in (torch.float16, torch.bfloat16):
        real = real.float()
    if fake.dtype != real.dtype:
        fake = fake.to(real.dtype)
    a = torch.rand((b,) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (a * real + (1.0 - a) * fake).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        scores = critic(x_hat)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
        norms = grad.reshape(b, -1).norm(2, dim=1)
        return ((norms - 1.0) ** 2).mean()


def r1_penalty(d_fn: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): E_x[ ||grad_x D(x)||_2^2 ] at real images, zero-centred. Scalar tensor.

    d_fn: x (B, C, H, W) -> scores (B,) or (B, 1); close over labels (``lambda x: d(x, y)``) and over the
    augmentation when D sees augmented reals (``lambda x: d(augment(x), y)``, as stylegan2-ada does: the gradient is
    taken w.r.t. the image before augmentation). The graph is kept (create_graph) so D's weights train on the penalty.

    Runs in fp32 with autocast off: the squared gradient underflows in half precision, and the gradient is taken
    with autograd.grad on the unscaled scores, so a GradScaler's loss scale never enters it (the scaler scales
    the total loss afterwards, as for any other term).

    How to add it to D's loss (StyleGAN's convention, gamma as in their papers): ``(gamma / 2) * r1_penalty(...)``.
    Lazy R1 (StyleGAN2): compute it only on steps where ``step % every == 0`` and multiply by ``every`` so its
    average weight is unchanged — ``r1_weight(step, gamma=..., every=...)`` gives that factor (0 on other steps).
    """
    x = real.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    x = x.requires_grad_(True)
    with torch.autocast(device_type=x.device.type, enabled=False):
        scores = d_fn(x)
        (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
        return grad.square().reshape(x.shape[0], -1).sum(dim=1).mean()


def r1_weight(step: int, *, gamma: float, every: int = 1) -> float:
    """The factor for ``r1_penalty`` on this step: gamma / 2 * every when ``step % every == 0``, else 0.

    gamma = 0 turns R1 off (always 0, and the caller can skip the extra backward pass).
    """
    if gamma < 0 or every < 1:
        raise ValueError(f"R1 needs gamma >= 0 and every >= 1, got gamma={gamma}, every={every}")
    if gamma == 0 or step % every:
        return 0.0
    return gamma / 2.0 * every
