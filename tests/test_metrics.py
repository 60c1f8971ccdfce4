"""Metrics against known answers: closed forms, brute-force references written here, and hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from gankit.data.base import ImageData
from gankit.core.errors import GankitError
from gankit.metrics import (
    FEATURES,
    FDReference,
    RESULT_KEYS,
    ClassifierFeatures,
    ClassifierTraining,
    InceptionFeatures,
    build_extractor,
    class_coverage,
    score_samples,
    nearest_neighbours,
    score_pairs,
    fd,
    feature_stats,
    format_table,
    frechet_distance,
    image_metrics,
    inception_score,
    kid,
    memorisation_sheet,
    parzen_evaluate,
    parzen_log_likelihood,
    prdc,
    psnr,
    select_sigma,
    ssim,
)
from gankit.metrics import features as features_mod
from gankit.metrics.features import classifier_key, resolve_inception, train_classifier

# ---------------------------------------------------------------------------------------------------------------------
# FD


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fd_diagonal_gaussians_equal_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_fd_random_spd_matches_a_sqrtm_reference() -> None:
    rng = np.random.default_rng(1)
    for d in (2, 5, 20):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_spd(rng, d), random_spd(rng, d)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fd_of_a_set_with_itself_is_zero_even_when_singular() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 16))
    assert fd(x, x) == pytest.approx(0.0, abs=1e-9)
    # fewer samples than dimensions: rank-deficient covariances, where sqrtm struggles
    few = rng.normal(size=(10, 64))
    assert fd(few, few) == pytest.approx(0.0, abs=1e-8)
    assert math.isfinite(fd(few, rng.normal(size=(10, 64))))


def test_fd_of_two_samples_of_one_gaussian_tends_to_the_known_distance() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) * 2.0 + 1.0  # N(1, 4 I): FD = 4·1 + 4·(1 + 4 - 2·2) = 8
    assert fd(a, b) == pytest.approx(8.0, rel=0.03)


def test_feature_stats_do_not_depend_on_the_chunk_size() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1001, 12)) * 3.0 + 100.0  # a large mean makes naive E[xx] - mu mu lose digits
    mu_a, s_a = feature_stats(x, chunk=7)
    mu_b, s_b = feature_stats(x, chunk=4096)
    mu_t, s_t = feature_stats(torch.from_numpy(x).float(), chunk=64)  # float32 tensors are accepted too
    np.testing.assert_allclose(mu_a, mu_b, rtol=1e-13)
    np.testing.assert_allclose(s_a, s_b, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(s_a, np.cov(x, rowvar=False), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(mu_t, mu_a, rtol=1e-5)
    assert mu_a.dtype == s_a.dtype == np.float64


def test_fd_rejects_mismatched_statistics() -> None:
    with pytest.raises(GankitError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---------------------------------------------------------------------------------------------------------------------
# KID, IS


def test_kid_of_identically_distributed_sets_is_zero_within_its_std() -> None:
    # Two independent draws of one distribution. (One array passed twice is not the same thing: subsets of both
    # sides then share points, whose k(x, x) terms enter the cross term only, biasing KID slightly negative.)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    mean, std = kid(x, y, num_subsets=30, subset_size=300, seed=0)
    assert abs(mean) < 3 * std
    assert abs(mean) < 0.02 * kid(x, y + 0.5, num_subsets=10, subset_size=300, seed=0)[0]


def test_kid_of_shifted_sets_is_clearly_positive_and_seeded() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16)) + 0.5
    mean, std = kid(x, y, num_subsets=10, subset_size=200, seed=0)
    assert mean > 10 * std and mean > 0.01
    assert kid(x, y, num_subsets=10, subset_size=200, seed=0) == (mean, std)
    assert kid(x, y, num_subsets=10, subset_size=200, seed=1) != (mean, std)


def test_inception_score_of_uniform_predictions_is_one() -> None:
    assert inception_score(np.full((100, 7), 1 / 7)) == pytest.approx((1.0, 0.0))


def test_inception_score_of_confident_even_predictions_is_the_class_count() -> None:
    k = 5
    probs = np.eye(k)[np.arange(200) % k]  # every split of 20 holds each class 4 times
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(k) and std == pytest.approx(0.0, abs=1e-12)
    # all samples confidently the same class: no diversity, score 1
    assert inception_score(np.eye(k)[np.zeros(50, dtype=int)])[0] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------------------
# precision / recall / density / coverage against a brute-force O(N²) implementation


def brute_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(((a - b) ** 2).sum()))

    def radius(points: np.ndarray, i: int, k: int) -> float:
        others = sorted(dist(points[i], points[j]) for j in range(len(points)) if j != i)
        return others[k - 1]

    r3 = [radius(real, i, k_pr) for i in range(len(real))]
    r5 = [radius(real, i, k_dc) for i in range(len(real))]
    f3 = [radius(fake, j, k_pr) for j in range(len(fake))]
    d = [[dist(r, f) for f in fake] for r in real]
    n, m = len(real), len(fake)
    precision = sum(any(d[i][j] <= r3[i] for i in range(n)) for j in range(m)) / m  # Kynkäänniemi: <=
    recall = sum(any(d[i][j] <= f3[j] for j in range(m)) for i in range(n)) / n
    density = sum(d[i][j] < r5[i] for i in range(n) for j in range(m)) / (k_dc * m)  # Naeem: <
    coverage = sum(min(d[i]) < r5[i] for i in range(n)) / n
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prdc_equals_brute_force_on_random_sets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(40, 3))
    fake = rng.normal(size=(35, 3)) * 1.3 + 0.3
    expected = brute_prdc(real, fake)
    got = prdc(real, fake, block_elements=97)  # tiny blocks exercise the batching
    assert got == pytest.approx(expected, abs=1e-12)
    assert prdc(real, fake) == pytest.approx(expected, abs=1e-12)


def test_prdc_boundary_conventions() -> None:
    # Real points on a line at 0, 1, 2, ..., 6 (exact in float64). With k = 3 the radius of the point at 0 is 3.
    real = np.array([[float(i), 0.0] for i in range(7)])
    fake_on_sphere = np.array([[-3.0, 0.0], [100.0, 0.0], [101.0, 0.0], [102.0, 0.0], [103.0, 0.0], [104.0, 0.0]])
    got = prdc(real, fake_on_sphere, k_pr=3, k_dc=3)
    assert got == pytest.approx(brute_prdc(real, fake_on_sphere, 3, 3), abs=1e-12)
    assert got["precision"] == pytest.approx(1 / 6)  # distance 3 == radius 3 counts as inside for P/R
    assert got["density"] == 0.0 and got["coverage"] == 0.0  # but as outside for D/C
    # Just inside the sphere, every convention agrees it is in.
    fake_inside = fake_on_sphere.copy()
    fake_inside[0, 0] = -2.5
    inside = prdc(real, fake_inside, k_pr=3, k_dc=3)
    assert inside["precision"] == pytest.approx(1 / 6) and inside["coverage"] == pytest.approx(1 / 7)
    # Recall uses the generated points' radii: fake spaced 2 apart has radius 6 for k=3 at the end point.
    fake_line = np.array([[-6.0 - 2.0 * i, 0.0] for i in range(6)])  # -6, -8, ..., -16; radius of -6 is 6
    rec = prdc(real, fake_line, k_pr=3, k_dc=3)
    assert rec == pytest.approx(brute_prdc(real, fake_line, 3, 3), abs=1e-12)
    assert rec["recall"] == pytest.approx(1 / 7)  # only the real point at 0, exactly 6 away, is inside (<=)


def test_prdc_excludes_the_point_itself_but_counts_duplicates() -> None:
    real = np.array([[0.0], [0.0], [1.0], [5.0], [9.0], [20.0], [40.0]])
    fake = np.array([[0.5], [30.0], [2.0], [7.0], [8.0], [50.0]])
    assert prdc(real, fake, 2, 2) == pytest.approx(brute_prdc(real, fake, 2, 2), abs=1e-12)


def test_prdc_of_identical_sets() -> None:
    x = np.random.default_rng(7).normal(size=(50, 4))
    got = prdc(x, x)
    assert got["precision"] == 1.0 and got["recall"] == 1.0 and got["coverage"] == 1.0


def test_nearest_neighbours_equal_brute_force_with_any_blocking() -> None:
    rng = np.random.default_rng(11)
    query = torch.from_numpy(rng.integers(0, 256, size=(13, 1, 3, 3), dtype=np.uint8))
    ref = torch.from_numpy(rng.integers(0, 256, size=(29, 1, 3, 3), dtype=np.uint8))
    q, r = query.reshape(13, -1).double().numpy(), ref.reshape(29, -1).double().numpy()
    d = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1))
    expected_i = np.argsort(d, axis=1, kind="stable")[:, :3]
    for block in (1, 7, 2**24):
        dist, idx = nearest_neighbours(query, ref, k=3, block_elements=block)
        np.testing.assert_array_equal(idx, expected_i)
        np.testing.assert_allclose(dist, np.take_along_axis(d, expected_i, 1), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# Parzen


def direct_parzen(samples: np.ndarray, test: np.ndarray, sigma: float) -> np.ndarray:
    d = samples.shape[1]
    e = -((test[:, None, :] - samples[None, :, :]) ** 2).sum(-1) / (2 * sigma**2)  # (M, N): fine on tiny data
    mx = e.max(1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(e - mx).sum(1))
    return lse - np.log(len(samples)) - d * np.log(sigma * np.sqrt(2 * np.pi))


def test_parzen_equals_a_direct_unbatched_computation() -> None:
    rng = np.random.default_rng(8)
    samples, test = rng.uniform(size=(37, 6)), rng.uniform(size=(23, 6))
    for sigma in (0.05, 0.2, 1.0):
        expected = direct_parzen(samples, test, sigma)
        np.testing.assert_allclose(
            parzen_log_likelihood(samples, test, sigma, batch=4, sample_batch=5), expected, rtol=1e-11
        )
        np.testing.assert_allclose(parzen_log_likelihood(samples, test, sigma), expected, rtol=1e-11)


def test_parzen_scales_uint8_images_to_unit_range() -> None:
    rng = np.random.default_rng(9)
    s = torch.from_numpy(rng.integers(0, 256, size=(12, 1, 3, 3), dtype=np.uint8))
    t = torch.from_numpy(rng.integers(0, 256, size=(5, 1, 3, 3), dtype=np.uint8))
    expected = direct_parzen(s.reshape(12, -1).double().numpy() / 255, t.reshape(5, -1).double().numpy() / 255, 0.3)
    np.testing.assert_allclose(parzen_log_likelihood(s, t, 0.3), expected, rtol=1e-11)


def test_select_sigma_picks_the_argmax_and_evaluate_reports_sem() -> None:
    rng = np.random.default_rng(10)
    samples, val, test = rng.uniform(size=(50, 4)), rng.uniform(size=(30, 4)), rng.uniform(size=(40, 4))
    sigmas = [0.03, 0.1, 0.2, 0.4, 1.0]
    best, table = select_sigma(samples, val, sigmas)
    means = [direct_parzen(samples, val, s).mean() for s in sigmas]
    assert best == sigmas[int(np.argmax(means))]
    assert [s for s, _ in table] == sigmas
    np.testing.assert_allclose([v for _, v in table], means, rtol=1e-11)
    assert best not in (sigmas[0], sigmas[-1])  # a real optimum inside the range, not an edge
    out = parzen_evaluate(samples, val, test, sigmas)
    ll = direct_parzen(samples, test, best)
    assert out == pytest.approx({"sigma": best, "mean": ll.mean(), "sem": ll.std() / np.sqrt(len(ll))}, rel=1e-10)


# ---------------------------------------------------------------------------------------------------------------------
# L1, PSNR, SSIM


def test_ssim_of_identical_images_is_one_and_less_otherwise() -> None:
    x = torch.rand(3, 3, 24, 24) * 2 - 1
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)) < 0.9


def test_ssim_of_constant_images_matches_the_formula() -> None:
    # constant images: no variance, so SSIM = (2ab + C1) / (a² + b² + C1); here in [0, 1] with data_range 1
    a, b = 0.2, 0.7
    c1 = (0.01 * 1.0) ** 2
    x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    assert ssim(x, y, data_range=1.0) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_psnr_and_l1_against_hand_computed_values() -> None:
    x = torch.zeros(2, 1, 16, 16)
    y = x.clone()
    y[0] += 0.5  # MSE 0.25 in image 0
    y[1, 0, :4, :4] = 1.0  # MSE 16/256 in image 1
    # range [-1, 1]: data_range 2 -> PSNR = 10 log10(4 / mse)
    expected = (10 * math.log10(4 / 0.25) + 10 * math.log10(4 / (1 / 16))) / 2
    assert psnr(x, y) == pytest.approx(expected)
    assert psnr(x, y, data_range=1.0) == pytest.approx(expected - 20 * math.log10(2))
    m = image_metrics(y, x)
    assert m["l1"] == pytest.approx((0.5 * 256 + 16.0) / 512)
    assert m["psnr"] == pytest.approx(expected)


def test_evaluate_paired_on_identical_outputs() -> None:
    img = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    out = score_pairs(img, img)
    assert out["l1"] == 0.0 and out["ssim"] == pytest.approx(1.0) and out["psnr"] == 100.0 and out["fd"] is None


# ---------------------------------------------------------------------------------------------------------------------
# Inception: a TorchScript stand-in with the real network's call signature


class InceptionStandIn(torch.nn.Module):
    """Same call as inception-2015-12-05.pt: float NCHW RGB in [0, 255], any size, resized to 299 inside; the last
    layer is called ``output``, as in the real file."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(3, 16, 1)
        self.output = torch.nn.Linear(16, 10)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        batch_size, channels, height, width = img.shape
        assert channels == 3
        assert bool(img.max() > 1.0) or bool(img.max() == 0.0)  # [0, 255], not [0, 1] or [-1, 1]
        x = F.interpolate(img.to(torch.float32), size=[299, 299], mode="bilinear", align_corners=False)
        return self.proj((x - 128) / 128).mean(dim=[2, 3])

    def forward(
        self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False
    ) -> torch.Tensor:
        features = self.features(img)
        if return_features:
            return features
        logits = F.linear(features, self.output.weight) if no_output_bias else self.output(features)
        return torch.softmax(logits, dim=1)


class InceptionStandInNoOutput(InceptionStandIn):
    """The same without an ``output`` attribute: probabilities then need the network's own second pass."""

    def __init__(self) -> None:
        super().__init__()
        del self.output
        self.fc = torch.nn.Linear(16, 10)

    def forward(
        self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False
    ) -> torch.Tensor:
        features = self.features(img)
        if return_features:
            return features
        logits = F.linear(features, self.fc.weight) if no_output_bias else self.fc(features)
        return torch.softmax(logits, dim=1)


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # torch.jit.script is deprecated; the real file is TorchScript
def test_inception_stand_in_loads_and_resizes(tmp_path) -> None:
    torch.manual_seed(0)
    for i, standin in enumerate([InceptionStandIn(), InceptionStandInNoOutput()]):
        model = torch.jit.script(standin)
        path = tmp_path / f"standin-{i}.pt"
        model.save(str(path))
        ext = build_extractor("inception", inception_path=path, progress=False)
        assert isinstance(ext, InceptionFeatures) and ext.identity.startswith("inception-")
        gray = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
        feats, probs = ext(gray, batch_size=2)
        assert feats.shape == (5, 16) and probs.shape == (5, 10)
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
        rgb = gray.expand(-1, 3, -1, -1).float()
        with torch.no_grad():
            np.testing.assert_allclose(feats, model(rgb, return_features=True).numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(probs, model(rgb, no_output_bias=True).numpy(), rtol=1e-4, atol=1e-6)
        assert ext(torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8))[0].shape == (2, 16)


def test_missing_inception_file_is_a_user_error_naming_the_url(tmp_path, monkeypatch) -> None:
    with pytest.raises(GankitError, match="inception-2015-12-05.pt"):
        resolve_inception(tmp_path / "nope.pt")
    with pytest.raises(GankitError, match="--inception PATH"):
        resolve_inception(None, cache_dir=tmp_path, download=False)

    def offline(*args, **kwargs):
        raise GankitError("download of https://... failed: no network")

    monkeypatch.setattr(features_mod.inception, "fetch", offline)  # where the inception extractor looks it up
    with pytest.raises(GankitError, match="--inception PATH"):
        build_extractor("inception", cache_dir=tmp_path, progress=False)
    cached = tmp_path / "weights" / "inception-2015-12-05.pt"
    cached.parent.mkdir()
    cached.write_bytes(b"x")
    assert resolve_inception(None, cache_dir=tmp_path) == cached
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    with pytest.raises(GankitError, match="TorchScript"):
        InceptionFeatures(tmp_path / "bad.pt")


# ---------------------------------------------------------------------------------------------------------------------
# the domain classifier


TINY = ClassifierTraining(max_size=16, width=8, feature_dim=16, epochs=3, batch_size=32, lr=3e-3)


def toy_data(n: int = 160, size: int = 12, seed: int = 0, channels: int = 1) -> ImageData:
    """Four classes: a bright bar in one of four image quadrants, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    x = torch.randint(0, 60, (n, channels, size, size), generator=g)
    h = size // 2
    for c in range(4):
        r, col = divmod(c, 2)
        x[labels == c, :, r * h : (r + 1) * h, col * h : (col + 1) * h] += 180
    return ImageData(x.clamp(0, 255).to(torch.uint8), labels, "toy", ["a", "b", "c", "d"])


def test_classifier_trains_caches_and_reloads(tmp_path, monkeypatch) -> None:
    data = toy_data()
    ext = ClassifierFeatures.from_data(data, TINY, cache_dir=tmp_path, progress=False)
    assert ext.accuracy >= 0.9
    feats, probs = ext(data.images)
    assert feats.shape == (160, ext.dim) and probs.shape == (160, 4) and ext.dim == 8 + 16 + 32 + 16
    folder = tmp_path / "classifiers" / classifier_key(data, TINY)
    meta = json.loads((folder / "classifier.json").read_text())
    assert (folder / "model.safetensors").is_file() and meta["accuracy"] == ext.accuracy
    assert ext.identity == f"classifier-{meta['key']}" and ext.info()["accuracy"] == ext.accuracy

    def no_training(*args, **kwargs):
        raise AssertionError("the second call must load from the cache")

    monkeypatch.setattr(features_mod.classifier, "train_classifier", no_training)
    again = ClassifierFeatures.from_data(data, TINY, cache_dir=tmp_path, progress=False)
    feats2, probs2 = again(data.images)
    np.testing.assert_array_equal(feats, feats2)
    np.testing.assert_array_equal(probs, probs2)
    assert again.identity == ext.identity


def test_classifier_key_changes_with_the_data_and_the_recipe() -> None:
    data = toy_data()
    key = classifier_key(data, TINY)
    changed = data.images.clone()
    changed[0, 0, 0, 0] ^= 1
    assert classifier_key(ImageData(changed, data.labels, "toy", data.class_names), TINY) != key
    relabelled = data.labels.clone()
    relabelled[0] = 3 - relabelled[0]
    assert classifier_key(ImageData(data.images, relabelled, "toy", data.class_names), TINY) != key
    assert classifier_key(data, ClassifierTraining(**{**TINY.__dict__, "epochs": 4})) != key
    assert classifier_key(toy_data(), TINY) == key


def test_translate_shifts_each_image_by_its_own_offset_with_replicated_edges() -> None:
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.uint8).view(2, 3, 5, 5)
    g = torch.Generator().manual_seed(0)
    out = features_mod.translate(x, 2, g)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="replicate").to(torch.uint8)
    for b in range(2):  # every image is a 5x5 window of its padded self, the same window for all channels
        windows = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[b], padded[b, :, dy : dy + 5, dx : dx + 5])
        ]
        assert len(windows) == 1, windows
    assert torch.equal(features_mod.translate(x, 2, torch.Generator().manual_seed(0)), out)  # seeded
    assert features_mod.translate(x, 0, g) is x


def test_onecycle_schedule_warms_up_peaks_and_decays_to_zero() -> None:
    recipe = ClassifierTraining(lr=1e-2, schedule="onecycle")
    lr_at = features_mod._lr_schedule(recipe, 100)  # 20 warm-up steps
    assert lr_at(0) == pytest.approx(1e-2 / 20) and lr_at(19) == pytest.approx(1e-2)
    assert lr_at(60) == pytest.approx(0.5e-2 * (1 + math.cos(math.pi * 40 / 80)))
    assert lr_at(99) < 1e-5
    assert features_mod._lr_schedule(ClassifierTraining(lr=1e-3, schedule="constant"), 100)(50) == 1e-3
    with pytest.raises(GankitError, match="schedule 'cosine'"):
        features_mod._lr_schedule(ClassifierTraining(schedule="cosine"), 100)


def test_classifier_handles_rgb_and_other_sizes(tmp_path) -> None:
    ext = ClassifierFeatures.from_data(toy_data(channels=1), TINY, cache_dir=tmp_path, progress=False)
    rgb = toy_data(n=8, size=20, channels=3, seed=1).images  # RGB at another size reach the gray 12x12 network
    assert ext.size == 12 and ext(rgb)[0].shape == (8, ext.dim)


def test_classifier_needs_labels(tmp_path) -> None:
    data = toy_data()
    unlabelled = ImageData(data.images, torch.full_like(data.labels, -1), "toy")
    with pytest.raises(GankitError, match="labelled"):
        build_extractor("classifier", unlabelled, cache_dir=tmp_path, progress=False)
    with pytest.raises(GankitError, match="unknown feature extractor"):
        FEATURES.get("inceptoin")


# ---------------------------------------------------------------------------------------------------------------------
# class coverage, score_samples, table, sheet


def test_class_coverage_known_answer() -> None:
    probs = np.eye(4)[[0, 0, 1, 1]]
    out = class_coverage(probs, sample_labels=np.array([0, 1, 1, 1]))
    assert out == pytest.approx(
        {"num_classes": 4, "classes_hit": 2, "label_kl_uniform": math.log(2), "label_accuracy": 0.75}
    )
    assert class_coverage(np.eye(4)[[0, 1, 2, 3]])["label_kl_uniform"] == pytest.approx(0.0)


def test_evaluate_end_to_end_on_toy_data(tmp_path) -> None:
    train, test = toy_data(n=200, seed=1), toy_data(n=80, seed=2)
    ext = ClassifierFeatures.from_data(train, TINY, cache_dir=tmp_path, progress=False)
    good = toy_data(n=60, seed=3)
    noise = torch.randint(0, 256, good.images.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    sheet = tmp_path / "sheet.png"
    r_good = score_samples(
        good.images, test, train, extractor=ext, sample_labels=good.labels, progress=False, sheet_path=sheet
    )
    r_noise = score_samples(noise, test, train, extractor=ext, parzen=True, progress=False)
    assert list(r_good) == list(RESULT_KEYS) and list(r_noise) == list(RESULT_KEYS)
    assert r_good["fd"] < r_noise["fd"] and r_good["kid_mean"] < r_noise["kid_mean"]
    assert r_good["precision"] > r_noise["precision"] and r_good["parzen_mean"] > r_noise["parzen_mean"]
    assert r_good["classes_hit"] == 4 and r_good["label_accuracy"] >= 0.9 and r_noise["label_accuracy"] is None
    assert r_good["features_id"] == ext.identity and r_good["classifier_accuracy"] == ext.accuracy
    assert sheet.is_file() and sheet.stat().st_size > 0
    json.dumps(r_good)  # JSON-ready
    table = format_table(r_good)
    assert "FD" in table and "Parzen" in table and "precision / recall" in table
    no_parzen = score_samples(good.images, test, train, extractor=ext, parzen=False, progress=False)
    assert no_parzen["parzen_mean"] is None and "-" in format_table(no_parzen)


def test_evaluate_rejects_samples_of_another_shape(tmp_path) -> None:
    train = toy_data()
    ext = ClassifierFeatures.from_data(train, TINY, cache_dir=tmp_path, progress=False)
    with pytest.raises(GankitError, match="size and channels"):
        score_samples(torch.zeros(4, 1, 10, 10, dtype=torch.uint8), train, train, extractor=ext, progress=False)


def test_memorisation_sheet_finds_copied_training_images(tmp_path) -> None:
    train = toy_data(n=40)
    path = memorisation_sheet(train.images[:16].clone(), train, tmp_path / "m.png", k=2)
    from PIL import Image

    img = Image.open(path)
    assert img.mode == "RGB" and img.height > 16 * 12


def test_fd_reference_scores_like_fd_and_paired_fd(tmp_path) -> None:
    train, test = toy_data(n=120, seed=1), toy_data(n=60, seed=2)
    ext = ClassifierFeatures.from_data(train, TINY, cache_dir=tmp_path, progress=False)
    ref = FDReference(ext, test.images)
    samples = toy_data(n=50, seed=3).images
    assert ref(samples) == pytest.approx(fd(ext(samples)[0], ext(test.images)[0]), rel=1e-12)
    paired = score_pairs(samples, test.images[:50], extractor=ext)
    assert (
        paired["fd"] == pytest.approx(fd(ext(samples)[0], ext(test.images[:50])[0]))
        and paired["features_id"] == ext.identity
    )


# ---------------------------------------------------------------------------------------------------------------------
# issue 14.12: the classifier's feature space sees blur (the shipped recipe, on the embedded digits at their own 8x8)


def box_blur5(images: torch.Tensor) -> torch.Tensor:
    """Each pixel the mean of itself and its 4 neighbours (edges replicated), as the issue's measurement blurs."""
    k = torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]]).div(5).view(1, 1, 3, 3)
    x = F.pad(images.to(torch.float32), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(x, k).round_().clamp_(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def digits_sharpness(tmp_path_factory):
    """Classifier (shipped recipe) on a fixed random 997 digits; FD of each row against 400 others."""
    from gankit.config import DataConfig
    from gankit.data import load_dataset

    data = load_dataset(DataConfig(name="digits", split="all", image_size=8))  # 1797 digits, native 8x8
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    part, ref, real = data.subset(perm[:997]), data.images[perm[997:1397]], data.images[perm[1397:]]
    ext = ClassifierFeatures.from_data(part, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    g = torch.Generator().manual_seed(1)
    rows = {
        "real": real,
        "blur": box_blur5(real),
        "blur2": box_blur5(box_blur5(real)),
        "noise": torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=g),
        "mean": part.images.float().mean(0, keepdim=True).round().to(torch.uint8).expand(len(real), -1, -1, -1),
    }
    f_ref = ext(ref)[0]
    return {name: fd(ext(x)[0], f_ref) for name, x in rows.items()}


def test_classifier_fd_sees_blur_on_digits(digits_sharpness) -> None:
    d = digits_sharpness
    # Recipe 1 (resized, last layer only) scored blurred digits about as close as real ones; the issue asks for 3x.
    assert d["blur"] >= 3 * d["real"], d
    assert d["blur2"] > 1.5 * d["blur"], d  # more blur, further away
    assert d["noise"] > 100 * d["real"] and d["mean"] > 100 * d["real"], d
    # At 8x8 one box blur wipes out much of a digit (FD about 100x real's), yet noise and the mean image stay further
    # (recipe 3, whose first block weighs double: noise 1.4x, mean 1.8x the blurred row's FD; recipe 2: 5x and 2.2x).
    assert d["noise"] > 1.2 * d["blur"] and d["mean"] > 1.2 * d["blur"], d


def test_classifier_features_are_normalised_per_block(tmp_path) -> None:
    data = toy_data()
    ext = ClassifierFeatures.from_data(data, TINY, cache_dir=tmp_path, progress=False)
    feats = ext(data.images)[0].astype(np.float64)
    dims = ext.net.block_dims
    assert ext.dim == sum(dims)
    shares = [TINY.first_share] + [1.0] * (len(dims) - 1)
    assert TINY.first_share == 2.0
    start = 0
    for d, share in zip(dims, shares):  # on (a superset of) the normalising images: mean ~0, total variance its share
        block = feats[:, start : start + d]
        assert np.abs(block.mean(0)).max() < 0.5
        assert block.var(0, ddof=1).sum() == pytest.approx(ext.dim * share / sum(shares), rel=0.35)
        start += d


def test_classifier_training_shows_progress(tmp_path, capsys) -> None:
    ClassifierFeatures.from_data(toy_data(), TINY, cache_dir=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "training a classifier on" in err and "classifier" in err and "batch" in err
    ClassifierFeatures.from_data(toy_data(), TINY, cache_dir=tmp_path / "other", progress=False)
    assert capsys.readouterr().err == ""


def test_classifier_weights_do_not_depend_on_the_callers_thread_count() -> None:
    """Convolutions sum in a thread-dependent order; training pins one thread so the judge is the same for everyone."""
    before = torch.get_num_threads()
    try:
        nets = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            nets.append(train_classifier(toy_data(n=400), TINY, progress=False)[0].state_dict())
            assert torch.get_num_threads() == threads  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)
    for k in nets[0]:
        assert torch.equal(nets[0][k], nets[1][k]), k
