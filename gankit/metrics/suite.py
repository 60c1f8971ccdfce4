"""One call that scores a set of generated images against a data set, a printable table, and the memorisation sheet.

:func:`score_samples` is the stage that glues features -> statistics -> numbers; every metric function it calls is pure and
tested on its own. Its result is a flat dict with the keys of :data:`RESULT_KEYS`, always all of them (``None`` where a
metric does not apply), so JSON files from different runs line up.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.base import ImageData, to_float
from ..core.errors import GankitError
from .fd import fd as frechet_fd
from .fd import feature_stats, frechet_distance
from .features import ClassifierFeatures, FeatureExtractor, build_extractor
from .image import image_metrics
from .inception_score import inception_score
from .kid import kid
from .parzen import parzen_evaluate
from .prdc import nearest_neighbours, prdc
from .protocols import RefStats, write_ref_stats

# key -> meaning; the result of score_samples() has exactly these keys, in this order.
RESULT_KEYS: dict[str, str] = {
    "n_samples": "generated images scored",
    "n_real_test": "real images they are compared with (the evaluation split)",
    "n_real_train": "real training images (classifier training, Parzen validation, nearest neighbours)",
    "features": "feature extractor name (classifier or inception)",
    "features_id": "identity of the extractor's weights (classifier cache key, or Inception file hash)",
    "features_dim": "feature dimension",
    "features_sha256": "SHA256 of the feature network's file (Inception; None for the trained classifier and pixels)",
    "protocol": "how images reach the feature network: an FID protocol (legacy-tensorflow, clean) for Inception",
    "resize": "that protocol's resize, in words",
    "fd_reference": "what FD compares with: 'images' (the real comparison images) or the --ref-stats file and its SHA256",
    "classifier_accuracy": "held-out accuracy of the domain classifier (None if none was trained)",
    "fd": "Fréchet distance, samples vs real test, in feature space (lower is better)",
    "kid_mean": "KID, cubic kernel, unbiased MMD² mean over 100 subsets (lower is better)",
    "kid_std": "KID std over the subsets",
    "is_mean": "Inception Score of the samples, 10 splits (higher is better, max = classes)",
    "is_std": "IS std over the splits",
    "is_real_mean": "IS of the real test images, for reference",
    "is_real_std": "its std over the splits",
    "precision": "k-NN precision, k=3 (share of samples on the real manifold)",
    "recall": "k-NN recall, k=3 (share of real images on the sample manifold)",
    "density": "density, k=5 (about 1 for samples distributed like the real data)",
    "coverage": "coverage, k=5 (share of real neighbourhoods holding a sample)",
    "parzen_mean": "Parzen-window log-likelihood of the real test images, nats per image (None if skipped)",
    "parzen_sem": "its standard error",
    "parzen_sigma": "kernel width chosen on the validation images",
    "parzen_n_val": "images of the comparison set used to choose sigma (the mean is over the others)",
    "num_classes": "classes of the domain classifier (None without one)",
    "classes_hit": "classes predicted for at least one sample",
    "label_kl_uniform": "KL(predicted label histogram || uniform), nats (0 = balanced)",
    "label_accuracy": "accuracy of predicted labels w.r.t. the requested classes (conditional models only)",
    "nn_pixel_samples": "mean L2 distance (pixels in [0, 1]) from each sample to its nearest training image",
    "nn_pixel_real": "the same for the real test images (a sample much closer than this suggests copying)",
    "nn_feature_samples": "mean distance in feature space from each sample to its nearest training image",
    "nn_feature_real": "the same for the real test images",
    "seed": "seed of the random subsets (KID, Parzen validation split)",
    "seconds": "wall-clock time of the evaluation",
}


def check_ref_stats(ref: RefStats | None, extractor: FeatureExtractor) -> None:
    """A reference statistics file fits these features: the same dimension and, where the file records them, the
    same feature network and protocol (else FD would compare numbers made differently)."""
    if ref is None:
        return
    if extractor.dim and ref.mu.shape[0] != extractor.dim:
        raise GankitError(
            f"--ref-stats {ref.path}: statistics of {ref.mu.shape[0]}-d features, but the {extractor.name} "
            f"features are {extractor.dim}-d (published FID files need --features inception)"
        )
    if ref.features_id is not None and ref.features_id != extractor.identity:
        raise GankitError(
            f"--ref-stats {ref.path}: made with features {ref.features_id}, this evaluation uses "
            f"{extractor.identity}; the numbers would not be comparable"
        )
    if ref.protocol is not None and ref.protocol != extractor.protocol:
        raise GankitError(
            f"--ref-stats {ref.path}: made under protocol '{ref.protocol}', this evaluation uses "
            f"'{extractor.protocol}'; pass --protocol {ref.protocol}"
        )


NN_TRAIN_MAX = 10_000  # training images searched for nearest neighbours (a seeded sample beyond that)


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"eval: {msg}", file=sys.stderr, flush=True)


def _check_images(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise GankitError(f"{what}: expected uint8 images (N, C, H, W), got {got}")


def class_coverage(probs: np.ndarray, sample_labels: torch.Tensor | np.ndarray | None = None) -> dict[str, Any]:
    """From classifier probabilities (N, K) of generated images: ``{"num_classes", "classes_hit",
    "label_kl_uniform", "label_accuracy"}``; accuracy is against ``sample_labels`` (N,) when given, else None."""
    n, k = probs.shape
    pred = probs.argmax(axis=1)
    hist = np.bincount(pred, minlength=k) / max(n, 1)
    nz = hist > 0
    accuracy = None
    if sample_labels is not None:
        labels = np.asarray(sample_labels.cpu() if isinstance(sample_labels, torch.Tensor) else sample_labels).reshape(
            -1
        )
        if labels.shape[0] != n:
            raise GankitError(f"sample_labels has {labels.shape[0]} entries for {n} samples")
        accuracy = float((pred == labels).mean())
    return {
        "num_classes": int(k),
        "classes_hit": int(nz.sum()),
        "label_kl_uniform": float((hist[nz] * np.log(hist[nz] * k)).sum()),
        "label_accuracy": accuracy,
    }


def score_samples(
    samples: torch.Tensor,
    real_test: ImageData,
    real_train: ImageData,
    features: str = "classifier",
    inception_path: str | Path | None = None,
    sample_labels: torch.Tensor | np.ndarray | None = None,
    parzen: bool = True,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    extractor: FeatureExtractor | None = None,
    sheet_path: str | Path | None = None,
    parzen_val: int = 1000,
    protocol: str | None = None,
    ref_stats: RefStats | None = None,
    save_ref_stats: str | Path | None = None,
) -> dict[str, Any]:
    """Score generated images against a data set; returns a dict with exactly the keys of :data:`RESULT_KEYS`.

    samples: uint8 (N, C, H, W) in [0, 255], the same (C, H, W) as ``real_test`` and ``real_train``.
    real_test: the split the samples are compared with (FD, KID, IS reference, P/R/D/C, Parzen test set).
    real_train: the split the model was trained on (classifier training, Parzen validation, nearest neighbours).
    features: a name in :data:`FEATURES` (ignored when ``extractor`` is given, e.g. one reused across a training run).
    sample_labels: (N,) requested classes of a conditional model, for ``label_accuracy``.
    parzen: compute the Parzen log-likelihood (σ chosen on ``min(parzen_val, 20%)`` of ``real_test``, the mean taken
        over the rest of it).
    sheet_path: also write :func:`memorisation_sheet` there, reusing the computed features.
    protocol: the FID protocol of the Inception extractor (gankit.metrics.protocols; default legacy-tensorflow).
    ref_stats: FD against these statistics (a published reference file) instead of ``real_test``'s features; the
        other metrics still use ``real_test``.
    save_ref_stats: also write the statistics of ``real_test``'s features there (.npz with mu, sigma).
    """
    start = time.perf_counter()
    _check_images(samples, "samples")
    for data, what in ((real_test, "real test images"), (real_train, "real training images")):
        _check_images(data.images, what)
        if tuple(data.images.shape[1:]) != tuple(samples.shape[1:]):
            raise GankitError(
                f"samples are {tuple(samples.shape[1:])} (C, H, W) but the {what} are {tuple(data.images.shape[1:])}; "
                "load the data at the samples' size and channels"
            )
    if extractor is None:
        extractor = build_extractor(features, real_train, inception_path, cache_dir, progress, protocol)
    check_ref_stats(ref_stats, extractor)
    # Class coverage always uses the domain classifier: Inception's 1008 ImageNet classes say nothing about digits.
    classifier: ClassifierFeatures | None = extractor if isinstance(extractor, ClassifierFeatures) else None
    if classifier is None and bool((real_train.labels >= 0).all()) and len(real_train) >= 10:
        classifier = ClassifierFeatures.from_data(real_train, cache_dir=cache_dir, progress=progress)

    # Nearest training neighbours only need a sample of a large training set (50k Inception passes on a CPU do not).
    if len(real_train) > NN_TRAIN_MAX:
        pick = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(real_train))[:NN_TRAIN_MAX]))
        nn_train = real_train.subset(pick)
    else:
        nn_train = real_train
    _say(
        progress,
        f"{extractor.identity} features of {len(samples)} samples, {len(real_test)} test and {len(nn_train)} training images",
    )
    f_s, p_s = extractor(samples)
    f_te, p_te = extractor(real_test.images)
    f_tr, _ = extractor(nn_train.images)

    out: dict[str, Any] = dict.fromkeys(RESULT_KEYS)
    out.update(
        n_samples=len(samples),
        n_real_test=len(real_test),
        n_real_train=len(real_train),
        features=extractor.name,
        features_id=extractor.identity,
        features_dim=extractor.dim,
        features_sha256=getattr(extractor, "sha256", None),
        protocol=extractor.protocol,
        resize=extractor.resize,
        fd_reference="images" if ref_stats is None else f"{ref_stats.path} (sha256 {ref_stats.sha256})",
        classifier_accuracy=None if classifier is None else classifier.accuracy,
        seed=seed,
    )
    _say(progress, "FD, KID, IS")
    if ref_stats is None:
        out["fd"] = frechet_fd(f_s, f_te)
    else:
        out["fd"] = frechet_distance(*feature_stats(f_s), ref_stats.mu, ref_stats.sigma)
    if save_ref_stats is not None:
        write_ref_stats(
            save_ref_stats,
            *feature_stats(f_te),
            protocol=extractor.protocol,
            features_id=extractor.identity,
            n=len(real_test),
        )
        _say(progress, f"wrote the statistics of the {len(real_test)} real comparison images to {save_ref_stats}")
    out["kid_mean"], out["kid_std"] = kid(f_s, f_te, seed=seed)
    if p_s is not None and p_te is not None:
        splits_s, splits_te = min(10, len(samples)), min(10, len(real_test))
        out["is_mean"], out["is_std"] = inception_score(p_s, splits_s)
        out["is_real_mean"], out["is_real_std"] = inception_score(p_te, splits_te)
    _say(progress, "precision, recall, density, coverage")
    out.update(prdc(f_te, f_s))

    if classifier is not None:
        probs = p_s if classifier is extractor else classifier(samples)[1]
        out.update(class_coverage(probs, sample_labels))

    if parzen:
        # sigma is chosen on real images G never saw (a seeded part of the comparison set) and the likelihood is
        # averaged over the rest: choosing it on training images would favour a model that memorises them.
        rng = np.random.default_rng(seed)
        n_val = min(parzen_val, max(1, len(real_test) // 5))
        perm = torch.from_numpy(rng.permutation(len(real_test)))
        val, held = real_test.images[perm[:n_val]], real_test.images[perm[n_val:]]
        _say(progress, f"Parzen window on {len(samples)} samples (sigma from {n_val} held-out images)")
        pz = parzen_evaluate(samples, val, held)
        out.update(parzen_mean=pz["mean"], parzen_sem=pz["sem"], parzen_sigma=pz["sigma"], parzen_n_val=n_val)

    _say(progress, "nearest training neighbours")
    # uint8 in, distances in uint8 units; / 255 puts them on the [0, 1] pixel scale that Parzen uses.
    out["nn_pixel_samples"] = float(nearest_neighbours(samples, nn_train.images)[0].mean()) / 255.0
    out["nn_pixel_real"] = float(nearest_neighbours(real_test.images, nn_train.images)[0].mean()) / 255.0
    out["nn_feature_samples"] = float(nearest_neighbours(f_s, f_tr)[0].mean())
    out["nn_feature_real"] = float(nearest_neighbours(f_te, f_tr)[0].mean())

    if sheet_path is not None:
        memorisation_sheet(samples, nn_train, sheet_path, feats_samples=f_s, feats_train=f_tr)
    out["seconds"] = time.perf_counter() - start
    return out


class FDReference:
    """Feature statistics of real images, computed once, to score sample sets against repeatedly (training-time FD).

    ``ref = FDReference(extractor, real_images)``; then ``ref(samples)`` -> FD, samples uint8 (N, C, H, W).
    """

    def __init__(self, extractor: FeatureExtractor, real_images: torch.Tensor) -> None:
        _check_images(real_images, "real images")
        self.extractor = extractor
        self.n = len(real_images)
        self.mu, self.sigma = feature_stats(extractor(real_images)[0])

    def __call__(self, samples: torch.Tensor) -> float:
        _check_images(samples, "samples")
        return frechet_distance(*feature_stats(self.extractor(samples)[0]), self.mu, self.sigma)


def score_pairs(
    outputs: torch.Tensor, targets: torch.Tensor, extractor: FeatureExtractor | None = None
) -> dict[str, Any]:
    """Image-to-image scores of outputs vs their targets, both uint8 (B, C, H, W): ``{"n", "l1", "psnr", "ssim",
    "fd", "features_id"}``; L1 in [-1, 1] units, PSNR/SSIM with data_range 2; FD (outputs vs targets) only with an
    extractor (else None)."""
    _check_images(outputs, "outputs")
    _check_images(targets, "targets")
    scores: dict[str, Any] = {"n": len(outputs)}
    # In chunks, because SSIM's float64 maps of 256x256 images add up; per-image means are averaged with weights.
    sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
    for i in range(0, len(outputs), 64):
        part = image_metrics(to_float(outputs[i : i + 64]), to_float(targets[i : i + 64]))
        for key in sums:
            sums[key] += part[key] * len(outputs[i : i + 64])
    scores.update({key: value / max(len(outputs), 1) for key, value in sums.items()})
    scores["fd"] = None if extractor is None else frechet_fd(extractor(outputs)[0], extractor(targets)[0])
    scores["features_id"] = None if extractor is None else extractor.identity
    return scores


# ---------------------------------------------------------------------------------------------------------------------
# memorisation sheet


def _tile(img: np.ndarray, scale: int) -> Image.Image:
    """(C, H, W) uint8 -> RGB PIL image, enlarged ``scale`` times without smoothing."""
    arr = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
    pil = Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil


def memorisation_sheet(
    samples: torch.Tensor,
    train: ImageData | torch.Tensor,
    path: str | Path,
    k: int = 4,
    n: int = 16,
    extractor: FeatureExtractor | None = None,
    feats_samples: np.ndarray | None = None,
    feats_train: np.ndarray | None = None,
) -> Path:
    """Write a PNG: one row per sample (the first ``n``), the sample, then its ``k`` nearest training images in pixel
    space, then its ``k`` nearest in feature space (when ``extractor`` or precomputed features are given).

    samples: uint8 (N, C, H, W); train: ImageData or uint8 (M, C, H, W) of the same (C, H, W). Returns the path.
    """
    images = train.images if isinstance(train, ImageData) else train
    _check_images(samples, "samples")
    _check_images(images, "training images")
    if tuple(images.shape[1:]) != tuple(samples.shape[1:]):
        raise GankitError(
            f"samples {tuple(samples.shape[1:])} and training images {tuple(images.shape[1:])} differ in shape"
        )
    shown = samples[:n]
    _, pix_idx = nearest_neighbours(shown, images, k)
    feat_idx = None
    if feats_samples is None and extractor is not None:
        feats_samples = extractor(shown)[0]
        feats_train = extractor(images)[0]
    if feats_samples is not None and feats_train is not None:
        _, feat_idx = nearest_neighbours(feats_samples[: len(shown)], feats_train, k)

    h, w = shown.shape[-2:]
    scale = max(1, 64 // max(h, w))
    th, tw = h * scale, w * scale
    pad, gap, header = 2, 12, 14
    groups = 1 + (feat_idx is not None)
    width = pad + tw + gap + groups * (k * (tw + pad)) + (groups - 1) * gap
    height = header + len(shown) * (th + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x_pix = pad + tw + gap
    x_feat = x_pix + k * (tw + pad) + gap
    draw.text((pad, 1), "sample", fill=(0, 0, 0))
    draw.text((x_pix, 1), "nearest training images (pixels)", fill=(0, 0, 0))
    if feat_idx is not None:
        draw.text((x_feat, 1), "nearest training images (features)", fill=(0, 0, 0))
    src = shown.numpy()
    ref = images.numpy()
    for r in range(len(shown)):
        y = header + r * (th + pad)
        sheet.paste(_tile(src[r], scale), (pad, y))
        for j in range(pix_idx.shape[1]):
            sheet.paste(_tile(ref[pix_idx[r, j]], scale), (x_pix + j * (tw + pad), y))
        if feat_idx is not None:
            for j in range(feat_idx.shape[1]):
                sheet.paste(_tile(ref[feat_idx[r, j]], scale), (x_feat + j * (tw + pad), y))
    from ..core.io import atomic_write_bytes
    from ..viz import encode

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, encode(sheet))  # RUN/memorisation.png: a kill never leaves half of it
    return path


# ---------------------------------------------------------------------------------------------------------------------
# table


def _num(v: Any, fmt: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, fmt)


def format_table(results: dict[str, Any]) -> str:
    """The result of :func:`score_samples` as aligned text lines, one metric per line (missing values shown as '-')."""
    r = results
    acc = r.get("classifier_accuracy")
    rows = [
        (
            "samples",
            f"{r.get('n_samples')} vs {r.get('n_real_test')} real test images ({r.get('n_real_train')} training)",
        ),
        (
            "features",
            f"{r.get('features_id')} ({r.get('features_dim')}-d"
            + (f", held-out accuracy {acc:.4f})" if acc is not None else ")"),
        ),
        ("protocol", f"{r.get('protocol')}: {r.get('resize')}"),
        (
            "FD",
            _num(r.get("fd"), ".4f")
            + ("" if r.get("fd_reference") in (None, "images") else f"   (against {r.get('fd_reference')})"),
        ),
        ("KID", f"{_num(r.get('kid_mean'), '.5f')} ± {_num(r.get('kid_std'), '.5f')}"),
        (
            "IS",
            f"{_num(r.get('is_mean'), '.3f')} ± {_num(r.get('is_std'), '.3f')}   (real: {_num(r.get('is_real_mean'), '.3f')})",
        ),
        ("precision / recall", f"{_num(r.get('precision'), '.4f')} / {_num(r.get('recall'), '.4f')}"),
        ("density / coverage", f"{_num(r.get('density'), '.4f')} / {_num(r.get('coverage'), '.4f')}"),
        (
            "Parzen log-likelihood",
            f"{_num(r.get('parzen_mean'), '.2f')} ± {_num(r.get('parzen_sem'), '.2f')}   (sigma {_num(r.get('parzen_sigma'), '.4f')})",
        ),
        ("classes hit", f"{_num(r.get('classes_hit'), 'd')} / {_num(r.get('num_classes'), 'd')}"),
        ("KL(labels || uniform)", _num(r.get("label_kl_uniform"), ".4f")),
        ("label accuracy", _num(r.get("label_accuracy"), ".4f")),
        (
            "NN distance, pixels",
            f"samples {_num(r.get('nn_pixel_samples'), '.4f')}   real {_num(r.get('nn_pixel_real'), '.4f')}",
        ),
        (
            "NN distance, features",
            f"samples {_num(r.get('nn_feature_samples'), '.4f')}   real {_num(r.get('nn_feature_real'), '.4f')}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
