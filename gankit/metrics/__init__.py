"""Metrics for generated images, as pure stages: images -> features -> statistics -> numbers.

- :mod:`.features`: the FEATURES registry (``classifier``, ``inception``) of uint8 images -> (features, probabilities)
- :mod:`.fd`: Fréchet distance (float64, trace of the square root from eigenvalues) and batched feature statistics
- :mod:`.kid`, :mod:`.inception_score`, :mod:`.prdc`: KID, IS, precision/recall, density/coverage
- :mod:`.parzen`: Parzen-window log-likelihood with the 2014 GAN paper's protocol
- :mod:`.image`: L1, PSNR, SSIM for image-to-image models
- :mod:`.suite`: all of the above on one set of samples, the printed table, the memorisation sheet
"""

from __future__ import annotations

from .suite import (
    RESULT_KEYS,
    FDReference,
    class_coverage,
    score_pairs,
    score_samples,
    format_table,
    memorisation_sheet,
)
from .fd import fd, feature_stats, frechet_distance
from .features import (
    FEATURES,
    INCEPTION_URL,
    ClassifierFeatures,
    ClassifierTraining,
    FeatureExtractor,
    InceptionFeatures,
    build_extractor,
    cache_root,
)
from .image import image_metrics, psnr, ssim
from .inception_score import inception_score
from .kid import kid
from .parzen import SIGMAS, parzen_evaluate, parzen_log_likelihood, select_sigma
from .prdc import knn_radii, nearest_neighbours, prdc

__all__ = [
    "FEATURES",
    "FDReference",
    "INCEPTION_URL",
    "RESULT_KEYS",
    "SIGMAS",
    "ClassifierFeatures",
    "ClassifierTraining",
    "FeatureExtractor",
    "InceptionFeatures",
    "build_extractor",
    "cache_root",
    "class_coverage",
    "score_samples",
    "score_pairs",
    "fd",
    "feature_stats",
    "format_table",
    "frechet_distance",
    "image_metrics",
    "inception_score",
    "kid",
    "knn_radii",
    "memorisation_sheet",
    "nearest_neighbours",
    "parzen_evaluate",
    "parzen_log_likelihood",
    "prdc",
    "psnr",
    "select_sigma",
    "ssim",
]
