from __future__ import annotations

import math

import pytest
import torch

from gankit.losses import LOSSES, gradient_penalty

real = torch.tensor([2.0, -1.0])
fake = torch.tensor([0.5, -3.0])


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bce_losses_by_hand():
    # D: mean softplus(-real) + mean softplus(fake)
    d = (sp(-2.0) + sp(1.0)) / 2 + (sp(0.5) + sp(-3.0)) / 2
    assert LOSSES.get("non_saturating").d(real, fake).item() == pytest.approx(d, rel=1e-6)
    assert LOSSES.get("minimax").d(real, fake).item() == pytest.approx(d, rel=1e-6)
    assert LOSSES.get("non_saturating").g(fake).item() == pytest.approx((sp(-0.5) + sp(3.0)) / 2, rel=1e-6)
    # minimax G minimises log(1 - sigmoid(l)) = -softplus(l)
    assert LOSSES.get("minimax").g(fake).item() == pytest.approx(-(sp(0.5) + sp(-3.0)) / 2, rel=1e-6)


def test_label_smoothing_moves_only_the_real_target():
    s = 0.1
    expect = ((0.9 * sp(-2.0) + 0.1 * sp(2.0)) + (0.9 * sp(1.0) + 0.1 * sp(-1.0))) / 2 + (sp(0.5) + sp(-3.0)) / 2
    assert LOSSES.get("non_saturating").d(real, fake, s).item() == pytest.approx(expect, rel=1e-6)


def test_lsgan_hinge_wgan_by_hand():
    assert LOSSES.get("lsgan").d(real, fake).item() == pytest.approx(0.5 * (1 + 4) / 2 + 0.5 * (0.25 + 9) / 2)
    assert LOSSES.get("lsgan").g(fake).item() == pytest.approx(0.5 * (0.25 + 16) / 2)
    assert LOSSES.get("hinge").d(real, fake).item() == pytest.approx((0 + 2) / 2 + (1.5 + 0) / 2)
    assert LOSSES.get("hinge").g(fake).item() == pytest.approx(1.25)
    assert LOSSES.get("wgan").d(real, fake).item() == pytest.approx(-1.25 - 0.5)
    assert LOSSES.get("wgan").weight_clip and LOSSES.get("wgan-gp").gradient_penalty


def test_gradient_penalty_matches_finite_differences():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    critic = critic.double()
    f = lambda x: critic(x).squeeze(1)  # noqa: E731
    real_x = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    fake_x = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    gp = gradient_penalty(f, real_x, fake_x, generator=g)
    # Same interpolation weights, drawn once per sample.
    a = torch.rand((3, 1, 1, 1), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x_hat = a * real_x + (1 - a) * fake_x
    eps, expect = 1e-6, 0.0
    for i in range(3):
        grad = torch.zeros(12, dtype=torch.float64)
        flat = x_hat[i].flatten()
        for j in range(12):
            up, dn = flat.clone(), flat.clone()
            up[j] += eps
            dn[j] -= eps
            grad[j] = (f(up.view(1, 3, 2, 2)) - f(dn.view(1, 3, 2, 2))).item() / (2 * eps)
        expect += (grad.norm().item() - 1) ** 2
    assert gp.item() == pytest.approx(expect / 3, rel=1e-5)


def test_gradient_penalty_is_differentiable():
    critic = torch.nn.Linear(4, 1)
    gp = gradient_penalty(lambda x: critic(x).squeeze(1), torch.randn(5, 4), torch.randn(5, 4))
    gp.backward()
    assert critic.weight.grad is not None and torch.isfinite(critic.weight.grad).all()
