"""``classifier`` features: the domain classifier trained on the data set's labelled training split, cached on disk
under a key that hashes the data and the recipe (:func:`classifier_key`), used as a feature extractor."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.errors import GankitError
from ...data.base import ImageData, to_float
from .base import FEATURES, FeatureExtractor, _say, cache_root
from .classifier_net import DEFAULT_RECIPE, ClassifierTraining, DomainClassifier, _prepare
from .classifier_training import train_classifier


def classifier_key(data: ImageData, recipe: ClassifierTraining) -> str:
    """16 hex digits of SHA256 over the recipe, the image shape and the bytes of images and labels."""
    h = hashlib.sha256()
    h.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    h.update(str(tuple(data.images.shape)).encode())
    h.update(data.images.contiguous().numpy().tobytes())
    h.update(data.labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class ClassifierFeatures(FeatureExtractor):
    """The trained domain classifier as a feature extractor; build with :meth:`from_data`."""

    name = "classifier"
    resize = "antialiased resize to the classifier's input size where it differs"

    def __init__(self, net: DomainClassifier, meta: dict[str, Any]) -> None:
        self.net = net.eval()
        self.meta = meta
        self.recipe = ClassifierTraining(**meta["recipe"])
        self.in_channels = int(meta["in_channels"])
        self.size = int(meta["size"])
        self.identity = f"classifier-{meta['key']}"
        self.dim = int(net.feat_shift.shape[0])
        self.num_classes = int(meta["num_classes"])
        self.accuracy = float(meta["accuracy"])

    @classmethod
    def from_data(
        cls,
        train: ImageData,
        recipe: ClassifierTraining = DEFAULT_RECIPE,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> "ClassifierFeatures":
        """Load the classifier for (``train``, ``recipe``) from the cache, or train it and store it there under
        ``<cache>/classifiers/<key>/`` as ``model.safetensors`` + ``classifier.json``."""
        from safetensors.torch import load_file, save_file

        key = classifier_key(train, recipe)
        folder = cache_root(cache_dir) / "classifiers" / key
        if (folder / "classifier.json").is_file() and (folder / "model.safetensors").is_file():
            meta = json.loads((folder / "classifier.json").read_text())
            net = DomainClassifier(
                meta["in_channels"], meta["num_classes"], recipe.width, recipe.feature_dim, recipe.batchnorm
            )
            net.load_state_dict(load_file(str(folder / "model.safetensors")))
            _say(progress, f"classifier features: loaded {folder} (held-out accuracy {meta['accuracy']:.4f})")
            return cls(net, meta)

        net, meta = train_classifier(train, recipe, progress)
        meta["key"] = key
        # Write into a fresh folder and rename it into place, so a crash or a concurrent run never leaves half a cache.
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "classifier.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process stored the same key first; its files are equivalent
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        _say(
            progress,
            f"classifier features: trained in {meta['seconds']:.1f}s, held-out accuracy {meta['accuracy']:.4f}; cached in {folder}",
        )
        return cls(net, meta)

    def logits_and_features(self, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, H, W) -> logits (N, K), features (N, D)."""
        feats, logits = [], []
        for i in range(0, images.shape[0], batch_size):
            f, lg = self.net.features_and_logits(
                to_float(_prepare(images[i : i + batch_size], self.in_channels, self.size))
            )
            feats.append(f)
            logits.append(lg)
        if not feats:
            return torch.zeros(0, self.num_classes), torch.zeros(0, self.dim)
        return torch.cat(logits), torch.cat(feats)

    def extract(self, images: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        logits, feats = self.logits_and_features(images, batch_size)
        probs = torch.softmax(logits.double(), dim=1)
        return feats.numpy().astype(np.float32), probs.numpy()

    def info(self) -> dict[str, Any]:
        return {**super().info(), "accuracy": self.accuracy, "recipe": asdict(self.recipe)}


@FEATURES.register("classifier")
def _build_classifier(
    train: ImageData | None = None,
    inception_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> FeatureExtractor:
    if train is None:
        raise GankitError("classifier features need the data set's labelled training split")
    return ClassifierFeatures.from_data(train, cache_dir=cache_dir, progress=progress)
