"""Differentiable augmentation (DiffAugment ops, ADA controller, state), the cutout leak score, and R1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gankit.data.augment import (
    AUG_OPS,
    Augment,
    brightness,
    build_augment,
    color,
    contrast,
    cutout,
    cutout_score,
    cutout_size,
    parse_policy,
    saturation,
    translate,
    translation_shift,
)
from gankit.core.errors import GankitError
from gankit.losses import r1_penalty, r1_weight

ALL = "color,translation,cutout"


def batch(b: int = 4, c: int = 3, size: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g, dtype=dtype) * 2 - 1


# -- shapes, layouts, identity ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", AUG_OPS.names())
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("size", [8, 28])
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_op_keeps_shape_dtype_and_layout(op: str, c: int, size: int, channels_last: bool) -> None:
    x = batch(c=c, size=size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    out = Augment((op,), seed=1)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.is_contiguous(memory_format=fmt)
    assert torch.isfinite(out).all()


def test_policy_changes_the_batch_and_p_zero_is_identity() -> None:
    x = batch()
    aug = Augment(parse_policy(ALL), seed=0)
    assert not torch.equal(aug(x), x)
    aug.p = 0.0
    assert aug(x) is x
    # p = 0 draws nothing, so switching p back on continues the stream as if the p = 0 call never happened.
    aug.p = 1.0
    twin = Augment(parse_policy(ALL), seed=0)
    twin(x)
    assert torch.equal(aug(x), twin(x))


@pytest.mark.parametrize("op", AUG_OPS.names())
def test_p_zero_per_op_leaves_every_sample_alone(op: str) -> None:
    # Inside an op p = 0 must mean "no sample touched" (ADA relies on the per-sample mask, not on skipping).
    x = batch()
    assert torch.equal(AUG_OPS.get(op)(x, 0.0, torch.Generator().manual_seed(3)), x)


def test_per_sample_probability_touches_about_p_of_the_samples() -> None:
    x = batch(b=400, c=1, size=8)
    out = AUG_OPS.get("brightness")(x, 0.3, torch.Generator().manual_seed(0))
    changed = (out != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.22 < changed < 0.38


def test_saturation_is_identity_for_grey_and_contrast_keeps_the_mean() -> None:
    x = batch(c=1)
    assert torch.allclose(saturation(x, torch.full((4,), 1.7)), x)
    y = batch(c=3)
    out = contrast(y, torch.full((4,), 0.5))
    assert torch.allclose(out.mean(dim=(1, 2, 3)), y.mean(dim=(1, 2, 3)), atol=1e-6)
    assert (out.std(dim=(1, 2, 3)) < y.std(dim=(1, 2, 3))).all()


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_color_is_brightness_then_saturation_then_contrast(c: int, channels_last: bool) -> None:
    # The fused transform is the three applied in turn, up to rounding, for any parameters (neutral ones included).
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = batch(b=6, c=c, size=12).contiguous(memory_format=fmt)
    delta = torch.tensor([0.0, 0.4, -0.3, 0.0, 0.1, -0.5])
    sat = torch.tensor([1.0, 0.0, 1.9, 1.0, 0.7, 1.3])
    con = torch.tensor([1.0, 1.4, 0.5, 0.6, 1.0, 1.2])
    expected = contrast(saturation(brightness(x, delta), sat), con)
    assert torch.allclose(color(x, delta, sat, con), expected, atol=2e-6)
    # Neutral parameters leave the image bit for bit (ADA's untouched samples).
    assert torch.equal(color(x, torch.zeros(6), torch.ones(6), torch.ones(6)), x)


def test_color_op_draws_as_the_three_ops_in_turn() -> None:
    # "color" and "brightness,saturation,contrast" draw the same parameters from the same stream, p < 1 included.
    x = batch(b=64, c=3, size=8)
    fused = Augment(("color",), seed=5, p=0.5)
    apart = Augment(("brightness", "saturation", "contrast"), seed=5, p=0.5)
    for _ in range(2):
        assert torch.allclose(fused(x), apart(x), atol=2e-6)
    assert torch.equal(fused.gen.get_state(), apart.gen.get_state())


# -- exact geometry ---------------------------------------------------------------------------------------------------
def test_translation_is_an_exact_pixel_shift_with_zero_fill() -> None:
    x = batch(b=2, c=3, size=8)
    out = translate(x, torch.tensor([[2, -1], [0, 3]]))
    # sample 0: down 2, left 1
    assert torch.equal(out[0, :, 2:, :7], x[0, :, :6, 1:])
    assert (out[0, :, :2] == 0).all() and (out[0, :, :, 7] == 0).all()
    # sample 1: right 3
    assert torch.equal(out[1, :, :, 3:], x[1, :, :, :5])
    assert (out[1, :, :, :3] == 0).all()
    assert torch.equal(translate(x, torch.zeros(2, 2, dtype=torch.long)), x)


@pytest.mark.parametrize(
    "h,w,dtype",
    [
        (28, 28, torch.float32),
        (64, 64, torch.float32),
        (255, 255, torch.float32),
        (12, 31, torch.float32),
        (1, 9, torch.float32),
        (64, 28, torch.float64),
        (64, 64, torch.bfloat16),
        (256, 256, torch.float16),
    ],
)
def test_translation_matches_padding_and_slicing(h: int, w: int, dtype: torch.dtype) -> None:
    # translate samples at whole-pixel coordinates; rounding must never land on a neighbour, in any dtype or shape,
    # and shifts as large as the image (or larger) leave only zeros.
    s = max(h, w) + 3
    shifts = torch.tensor([[dy, dx] for dy in (-h - 3, -h, -1, 0, 3, h) for dx in (-w, 0, 2, w + 3)])
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(len(shifts), 3, h, w, generator=g) * 2 - 1).to(dtype)
    padded = F.pad(x, (s, s, s, s))
    expected = torch.stack(
        [padded[i, :, s - dy : s - dy + h, s - dx : s - dx + w] for i, (dy, dx) in enumerate(shifts.tolist())]
    )
    out = translate(x, shifts)
    assert out.dtype == dtype and torch.equal(out, expected)


def test_translation_gradient_is_the_reverse_shift() -> None:
    # d/dx sum(translate(x, s) * y) = translate(y, -s), exactly (each kept pixel has one source).
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 10, 13, generator=g, requires_grad=True)
    y = torch.rand(4, 3, 10, 13, generator=g)
    shifts = torch.tensor([[2, -3], [0, 0], [-9, 12], [1, 5]])
    (translate(x, shifts) * y).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, translate(y, -shifts))


def test_translation_op_stays_within_an_eighth() -> None:
    assert translation_shift(32) == 4 and translation_shift(8) == 1 and translation_shift(64) == 8
    # A single bright pixel in the middle moves by at most 4 pixels at 32x32 and, over many draws, by all of them.
    x = torch.full((256, 1, 32, 32), -1.0)
    x[:, :, 16, 16] = 1.0
    out = AUG_OPS.get("translation")(x, 1.0, torch.Generator().manual_seed(0))
    pos = (out[:, 0] == 1.0).flatten(1).float().argmax(dim=1)
    dy, dx = pos // 32 - 16, pos % 32 - 16
    assert dy.abs().max() == 4 and dx.abs().max() == 4
    assert set(dy.tolist()) == set(range(-4, 5))


def test_cutout_zeros_exactly_a_square() -> None:
    x = batch(b=2, c=3, size=16) * 0.5 + 0.6  # no zeros of its own
    out = cutout(x, torch.tensor([[3, 5], [-4, 12]]), 8)
    zero = out == 0
    assert zero[0].all(dim=0).sum() == 64 and zero[0, :, 3:11, 5:13].all()
    assert zero[1].all(dim=0).sum() == 4 * 4 and zero[1, :, 0:4, 12:16].all()  # clipped by the corner
    assert torch.equal(out[~zero], x[~zero])


def test_cutout_op_square_is_half_the_size_and_at_least_half_visible() -> None:
    assert cutout_size(32) == 16 and cutout_size(28) == 14 and cutout_size(8) == 4
    x = torch.ones(300, 1, 32, 32)
    out = AUG_OPS.get("cutout")(x, 1.0, torch.Generator().manual_seed(0))
    area = (out == 0).flatten(1).sum(dim=1)
    assert area.max() == 256 and area.min() >= 64  # fully inside somewhere; never less than 8x8 visible
    assert (area < 256).any()  # and sometimes clipped by the border, as DiffAugment's centre draw gives


# -- gradients --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", ALL])
def test_gradients_reach_the_input(policy: str) -> None:
    x = batch(c=3, size=8).requires_grad_(True)
    out = Augment(parse_policy(policy), seed=2)(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("op", ["brightness", "saturation", "contrast", "translation", "cutout"])
def test_ops_match_finite_differences(op: str) -> None:
    x = batch(b=2, c=3, size=8, dtype=torch.float64).requires_grad_(True)
    # A fresh generator per call: the op is then a fixed function of x, which gradcheck needs.
    f = lambda t: AUG_OPS.get(op)(t, 1.0, torch.Generator().manual_seed(4))
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


# -- determinism and resume -------------------------------------------------------------------------------------------
def test_same_seed_same_outputs_other_seed_other_outputs() -> None:
    x = batch()
    a, b, c = (Augment(parse_policy(ALL), seed=s) for s in (7, 7, 8))
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), b(x))
    assert not torch.equal(Augment(parse_policy(ALL), seed=7)(x), c(x))


def test_state_dict_round_trip_gives_identical_next_outputs() -> None:
    x = batch()
    a = build_augment("ada", seed=3, speed_kimg=0.05, interval=2)
    assert a is not None
    for _ in range(3):  # p moves; the accumulator is left mid-interval
        a.update(torch.full((4,), 2.0))
    a(x)
    assert 0 < a.p < 1 and a._calls == 1
    state = a.state_dict()
    b = build_augment("ada", seed=999, speed_kimg=0.05, interval=2)
    assert b is not None
    b.load_state_dict(state)
    assert torch.equal(a(x), b(x))
    a.update(torch.full((4,), -1.0))
    b.update(torch.full((4,), -1.0))
    assert a.p == b.p and a.rt == b.rt
    assert torch.equal(a(x), b(x))


def test_state_dict_survives_torch_save(tmp_path) -> None:
    a = build_augment("color,translation", seed=0)
    assert a is not None
    a(batch())
    torch.save(a.state_dict(), tmp_path / "aug.pt")
    b = build_augment("color,translation", seed=1)
    assert b is not None
    b.load_state_dict(torch.load(tmp_path / "aug.pt", weights_only=True))
    x = batch(seed=5)
    assert torch.equal(a(x), b(x))


# -- ADA controller ---------------------------------------------------------------------------------------------------
def test_ada_p_rises_when_d_is_overconfident_on_reals_and_falls_otherwise() -> None:
    a = build_augment("ada", seed=0, target=0.6, speed_kimg=1.0, interval=4)
    assert a is not None and a.adaptive and a.p == 0.0
    for _ in range(3):
        a.update(torch.full((8,), 3.0))
        assert a.p == 0.0  # nothing moves before the interval
    a.update(torch.full((8,), 3.0))
    # r_t = 1 > 0.6: p += 8 images * 4 calls / 1000
    assert a.p == pytest.approx(0.032) and a.rt == 1.0
    for _ in range(4):
        a.update(torch.full((8,), -3.0))
    assert a.p == pytest.approx(0.0)
    for _ in range(4):
        a.update(torch.full((8,), -3.0))
    assert a.p == 0.0  # clamped at 0
    # Mean sign 0.25: below 0.6 -> falls; exactly at target -> stays.
    a.p = 0.5
    for _ in range(4):
        a.update(torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0]))  # mean sign 0.25
    assert a.p == pytest.approx(0.5 - 0.032)
    a.target = 0.25
    for _ in range(4):
        a.update(torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0]))
    assert a.p == pytest.approx(0.5 - 0.032)
    a.p = 0.999
    for _ in range(4):
        a.update(torch.full((8,), 3.0))
    assert a.p == 1.0  # clamped at 1
    assert a.stats() == {"aug/p": 1.0, "aug/rt": 1.0}


def test_ada_step_counts_images_not_patch_scores() -> None:
    a = build_augment("ada", seed=0, speed_kimg=1.0, interval=2)
    assert a is not None
    for _ in range(2):
        a.update(torch.ones(8, 1, 3, 3))  # a PatchGAN D: 9 scores per image
    assert a.p == pytest.approx(16 / 1000) and a.rt == 1.0


def test_fixed_policy_ignores_update() -> None:
    a = build_augment(ALL, seed=0)
    assert a is not None and a.p == 1.0 and not a.adaptive
    for _ in range(8):
        a.update(torch.full((4,), 5.0))
    assert a.p == 1.0 and a.stats() == {"aug/p": 1.0}


# -- parsing ----------------------------------------------------------------------------------------------------------
def test_build_augment_specs() -> None:
    assert build_augment("none", seed=0) is None and build_augment("", seed=0) is None
    a = build_augment("ada", seed=0)
    assert a is not None and a.ops == ("color", "translation", "cutout") and a.adaptive
    b = build_augment("ada:translation, cutout", seed=0)
    assert b is not None and b.ops == ("translation", "cutout") and b.adaptive and b.p == 0.0
    c = build_augment("translation", seed=0)
    assert c is not None and c.ops == ("translation",) and not c.adaptive


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("color,zoom", ["zoom", "translation", "cutout"]),
        ("ada:colour", ["colour", "color"]),
        ("color,,cutout", ["empty"]),
        ("color,color", ["repeats"]),
    ],
)
def test_bad_specs_are_user_errors_naming_the_problem(spec: str, words: list[str]) -> None:
    with pytest.raises(GankitError) as err:
        build_augment(spec, seed=0)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words)


def test_too_small_images_are_a_user_error() -> None:
    with pytest.raises(GankitError, match="8x8"):
        Augment(("translation",))(torch.zeros(2, 1, 7, 7))


# -- leak check -------------------------------------------------------------------------------------------------------
def digits32() -> torch.Tensor:
    """sklearn's bundled 8x8 digits, upscaled to (N, 1, 32, 32) in [-1, 1]: real images without flat grey areas."""
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images[:200]).float().unsqueeze(1) / 8.0 - 1.0  # [0, 16] -> [-1, 1]
    return F.interpolate(x, size=32, mode="bilinear", align_corners=False)


def test_cutout_score_sees_cutout_in_augmented_reals_and_not_in_clean_ones() -> None:
    real = digits32()
    assert cutout_score(real) == 0.0
    rgb = batch(b=64, c=3, size=32)  # noise images: nothing flat anywhere
    assert cutout_score(rgb) == 0.0
    assert cutout_score(build_augment(ALL, seed=0)(real)) == 1.0  # type: ignore[misc]
    assert cutout_score(build_augment(ALL, seed=0)(rgb)) == 1.0  # type: ignore[misc]
    # Translation's zero border is narrower than the window, so it alone does not look like a leak.
    assert cutout_score(build_augment("color,translation", seed=0)(real)) == 0.0  # type: ignore[misc]
    # Half augmented -> about half.
    half = Augment(parse_policy("cutout"), seed=0, p=0.5)(real)
    assert 0.35 < cutout_score(half) < 0.65
    # uint8 input works the same way.
    u8 = ((half + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert cutout_score(u8) == cutout_score(half)


def test_cutout_score_sees_noisy_painted_squares() -> None:
    # What a leaking G would draw: a grey square, not exactly 0.
    x = digits32()[:10].clone()
    x[:5, :, 4:14, 10:22] = 0.05 * torch.randn(5, 1, 10, 12, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert cutout_score(x) == pytest.approx(0.5)


# -- R1 ---------------------------------------------------------------------------------------------------------------
def test_r1_of_a_linear_d_is_the_squared_weight_norm() -> None:
    w = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
    # D(x) = <w, x>: grad_x D = w for every sample.
    d = lambda x: (x * w).sum(dim=(1, 2, 3))
    r1 = r1_penalty(d, batch(b=5, c=3, size=4))
    assert r1.item() == pytest.approx(w.square().sum().item(), rel=1e-6)


def test_r1_matches_finite_differences_and_trains_d() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)
    ).double()
    d = lambda x: net(x).squeeze(1)
    real = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    r1 = r1_penalty(d, real)
    eps, expect = 1e-6, 0.0
    for i in range(3):
        flat = real[i].flatten()
        for j in range(12):
            up, dn = flat.clone(), flat.clone()
            up[j] += eps
            dn[j] -= eps
            g = (d(up.view(1, 3, 2, 2)) - d(dn.view(1, 3, 2, 2))).item() / (2 * eps)
            expect += g * g
    assert r1.item() == pytest.approx(expect / 3, rel=1e-6)
    r1.backward()  # create_graph: D's weights get a gradient from the penalty
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0
    assert not real.requires_grad  # the caller's tensor is left alone


def test_r1_through_augmentation_reaches_d() -> None:
    net = torch.nn.Conv2d(3, 1, 3)
    aug = build_augment(ALL, seed=0)
    assert aug is not None
    r1 = r1_penalty(lambda x: net(aug(x)).mean(dim=(1, 2, 3)), batch(c=3, size=8))
    r1.backward()
    assert r1.item() > 0 and net.weight.grad is not None and net.weight.grad.abs().sum() > 0


def test_r1_runs_in_fp32_under_autocast_and_for_half_inputs() -> None:
    w = torch.randn(3, 4, 4)
    seen: list[torch.dtype] = []

    def d(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.dtype)
        return torch.nn.functional.linear(x.flatten(1), w.flatten()[None]).squeeze(1)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        r1 = r1_penalty(d, batch(b=2, c=3, size=4).bfloat16())
    assert seen == [torch.float32] and r1.dtype == torch.float32
    assert r1.item() == pytest.approx(w.square().sum().item(), rel=1e-5)


def test_lazy_r1_weight() -> None:
    assert [r1_weight(s, gamma=0.2, every=4) for s in range(5)] == [
        pytest.approx(0.4),
        0.0,
        0.0,
        0.0,
        pytest.approx(0.4),
    ]
    assert r1_weight(3, gamma=0.2) == pytest.approx(0.1)
    assert r1_weight(0, gamma=0.0, every=4) == 0.0
    with pytest.raises(ValueError):
        r1_weight(0, gamma=1.0, every=0)
