"""Feature extractors: uint8 images (N, C, H, W) -> features (N, F) and class probabilities (N, K) or None.

Three are registered in :data:`FEATURES`, one module each:

- ``classifier`` (:mod:`.classifier`): a small CNN that gankit trains on the data set's labelled training split with a
  fixed recipe and seed (:mod:`.classifier_training`; the network and recipe in :mod:`.classifier_net`), cached on disk
  under a key that hashes the data and the recipe. It sees images at their own resolution; its features join the
  response energy of every conv layer (the first one sees fine detail, so blur shows) to the 128-d penultimate layer,
  each block normalised on real images; its softmax gives the class probabilities (for IS and class coverage). Works
  offline, on a CPU, in a minute or two, and means something on digits, where Inception features do not.
- ``inception`` (:mod:`.inception`): the TorchScript Inception-v3 that stylegan2-ada and clean-fid use for FID
  (2048-d pool features and 1008-way softmax), from an explicit path or the cache.
- ``pixels`` (:mod:`.pixels`): images shrunk to 16x16 and flattened, for data without labels.

Every extractor has an ``identity`` string that pins what produced the features (the classifier's cache key, the
Inception file's SHA256), written to the results JSON so numbers are only compared when they are comparable. The base
class and the registry are in :mod:`.base`.
"""

from __future__ import annotations

from .base import FEATURES, Builder, FeatureExtractor, build_extractor, cache_root

# Importing the extractor modules registers them, in the order the CLI lists them.
from .classifier import ClassifierFeatures, classifier_key
from .classifier_net import NORM_IMAGES, ClassifierTraining, DomainClassifier, fit_normalisation, input_size
from .classifier_training import _lr_schedule, one_thread, train_classifier, translate
from .inception import (
    INCEPTION_FILE,
    INCEPTION_MAX_BYTES,
    INCEPTION_SHA256,
    INCEPTION_URL,
    InceptionFeatures,
    check_torchscript,
    load_torchscript,
    resolve_inception,
    torchscript_problem,
)
from .pixels import PixelFeatures

__all__ = [
    "FEATURES",
    "INCEPTION_FILE",
    "INCEPTION_MAX_BYTES",
    "INCEPTION_SHA256",
    "INCEPTION_URL",
    "NORM_IMAGES",
    "Builder",
    "ClassifierFeatures",
    "ClassifierTraining",
    "DomainClassifier",
    "FeatureExtractor",
    "InceptionFeatures",
    "PixelFeatures",
    "build_extractor",
    "cache_root",
    "check_torchscript",
    "classifier_key",
    "fit_normalisation",
    "input_size",
    "load_torchscript",
    "one_thread",
    "resolve_inception",
    "torchscript_problem",
    "train_classifier",
    "translate",
    "_lr_schedule",
]
