"""Score a trained run (or any .npy of samples) against real data: the library side of `gankit eval`."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config, DataConfig
from .data import load_dataset
from .data.base import ImageData, to_float, to_uint8
from .errors import GankitError
from .models import MODELS


def holdout_split(data: ImageData, n: int) -> tuple[ImageData, ImageData]:
    """(training part, held-out part) of ``data``: the held-out ``n`` images are a fixed random choice (seed 0), not
    the tail, because standard splits are often ordered (MNIST's test set puts one writer population first)."""
    if not 0 < n < len(data):
        raise GankitError(f"data.holdout={n} must leave images on both sides (the split has {len(data)})")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    keep, held = perm[: len(data) - n].sort().values, perm[len(data) - n :].sort().values
    return data.subset(keep), data.subset(held)


def split_validation(cfg: Config, data: ImageData, kind: str, say: Any = print) -> tuple[ImageData, ImageData | None]:
    """(training data, validation data or None) of a run, the same in training and in `gankit eval`.

    ``data.holdout=N`` keeps a fixed random N images of the split out of training. Image-to-image runs without it
    validate on the data set's 'val' split, or, when it has none, on a fixed random 10% (at most 100) of the pairs."""
    if cfg.data.holdout:
        return holdout_split(data, cfg.data.holdout)
    if kind != "pix2pix" or cfg.data.split != "train":
        return data, None
    try:
        return data, load_dataset(replace(cfg.data, split="val", limit=0))
    except GankitError:
        n = max(1, min(100, len(data) // 10))
        if n >= len(data):
            raise GankitError(f"data '{cfg.data.name}' has {len(data)} pair(s): too few to train and validate") from None
        say(f"note: data '{cfg.data.name}' has no val split; validating on a fixed random {n} of its pairs "
            f"(set data.holdout to choose how many)")
        return holdout_split(data, n)


# Splits that name the same files for every reader but `paired` (whose val/ and test/ folders may differ).
SAME_FILES = {frozenset({"val", "test"})}


def _overlap(a: str, b: str, data_name: str) -> bool:
    from .data import DATASETS

    if a == b or "all" in (a, b):
        return True
    return frozenset({a, b}) in SAME_FILES and not DATASETS.meta(data_name).get("distinct_val", False)


def reference_data(cfg: Config, split: str | None = None) -> tuple[ImageData, ImageData]:
    """(training images, comparison images) for a run's config. With ``data.holdout`` the run's own held-out images
    are the comparison set; otherwise the data set's ``split`` (default 'test')."""
    run_split = load_dataset(cfg.data)
    if cfg.data.holdout and split is None:
        return holdout_split(run_split, cfg.data.holdout)
    if cfg.data.holdout:
        run_split = holdout_split(run_split, cfg.data.holdout)[0]
    other = split or "test"
    if _overlap(other, cfg.data.split, cfg.data.name):
        raise GankitError(
            f"the run trained on split '{cfg.data.split}', which holds the '{other}' images, so comparing with them "
            f"measures memorisation; pass --split with a disjoint split, or train with data.holdout=N to keep images aside"
        )
    return run_split, load_dataset(replace(cfg.data, split=other, limit=0))


def load_samples_npy(path: str | Path) -> torch.Tensor:
    """A .npy of uint8 (N, H, W, C) images -> uint8 (N, C, H, W); never unpickles."""
    p = Path(path)
    if not p.is_file():
        raise GankitError(f"--samples {p} does not exist")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise GankitError(f"--samples {p} is not a plain .npy array ({str(e).splitlines()[0][:80]})") from None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] not in (1, 3) or arr.shape[1] != arr.shape[2]:
        raise GankitError(
            f"--samples {p} must be uint8 (N, H, W, C) square images with C 1 or 3, got {arr.dtype} {arr.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()


def evaluate_run(
    run_dir: str | Path,
    n: int = 10000,
    features: str = "classifier",
    split: str | None = None,
    data_dir: str | None = None,
    inception_path: str | None = None,
    parzen: bool = True,
    checkpoint: str = "latest",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics of a run's samples (GAN) or translations (pix2pix); also writes memorisation.png for GANs."""
    from .metrics import build_extractor, evaluate, evaluate_paired
    from .sampling import load, load_translator
    from .training import load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if data_dir is not None:
        cfg = cfg.replace(**{"data.dir": data_dir})
    if MODELS.meta(cfg.model.name).get("kind") == "pix2pix":
        tr = load_translator(run_dir, checkpoint)
        if split:
            val = load_dataset(replace(cfg.data, split=split, limit=0))
        else:  # exactly the pairs training validated on
            val = split_validation(cfg, load_dataset(cfg.data), "pix2pix", say=lambda m: None)[1]
        out = to_uint8(tr.translate(to_float(val.images)))
        ext = build_extractor(features if features != "classifier" else "pixels", None, inception_path, None, progress)
        res = evaluate_paired(out, val.targets, ext)
        res.update(run=str(run_dir), step=tr.step, split=split or "val", features=ext.name)
        return res
    gen = load(run_dir, checkpoint)
    train, test = reference_data(cfg, split)
    labels = gen.labels(n) if gen.num_classes else None
    z = gen.noise(n, seed)
    samples = to_uint8(gen.generate(z, labels))
    res = evaluate(samples, test, train, features=features, inception_path=inception_path, sample_labels=labels,
                   parzen=parzen, seed=seed, progress=progress, sheet_path=run_dir / "memorisation.png")
    res.update(run=str(run_dir), step=gen.step, split=split or ("holdout" if cfg.data.holdout else "test"))
    return res


def classifier_and_reference(
    data: str, base: DataConfig, split: str
) -> tuple[ImageData, ImageData, str]:
    """(images that train the classifier, reference images, a sentence naming the former) for scoring samples
    against split ``split`` of data set ``data``.

    The data set's 'train' split trains the classifier when it exists and holds none of the reference images. When it
    is missing (a folder with only the test files) or overlaps ``split``, the one split is cut in two (a fixed random
    half, seed 0, as :func:`holdout_split` cuts): the classifier never sees the images the samples are compared with,
    since features fitted to the reference would make it look closer than other real images."""
    reference = load_dataset(replace(base, split=split, limit=0))
    if not _overlap(split, "train", data):
        try:
            train = load_dataset(replace(base, split="train", limit=0))
            return train, reference, f"{data} 'train' split ({len(train)} images)"
        except GankitError:
            pass  # only the one split is present: cut it below
    n = len(reference)
    if n < 4:
        raise GankitError(f"data '{data}' split '{split}' has {n} image(s): too few to train a classifier and compare")
    train, reference = holdout_split(reference, n // 2)
    return train, reference, (f"{data} '{split}' split, a fixed random {len(train)} of its {n} images (seed 0); "
                              f"the other {len(reference)} are the reference")


def evaluate_npy(
    path: str | Path,
    data: str,
    data_dir: str | None = None,
    split: str = "test",
    features: str = "classifier",
    inception_path: str | None = None,
    parzen: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics of any uint8 (N, H, W, C) .npy of samples against data set ``data``: compare with other tools' output.
    ``classifier_images`` in the result says which images trained the classifier (see
    :func:`classifier_and_reference`)."""
    from .metrics import evaluate

    samples = load_samples_npy(path)
    c, h, _ = samples.shape[1:]
    base = DataConfig(name=data, dir=data_dir, image_size=int(h), channels=int(c))
    from .data import DATASETS

    DATASETS.get(data)
    train, test, described = classifier_and_reference(data, base, split)
    if progress:
        print(f"eval: classifier trained on {described}", file=sys.stderr, flush=True)
    res = evaluate(samples, test, train, features=features, inception_path=inception_path, parzen=parzen, seed=seed,
                   progress=progress)
    res.update(samples=str(path), data=data, split=split, classifier_images=described)
    return res


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    from .runlog import atomic_write_bytes

    p = Path(path)
    if p.is_dir():
        raise GankitError(f"--out {p} is a folder; give a .json file name")
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, json.dumps(results, indent=2, default=float).encode())
    return p
