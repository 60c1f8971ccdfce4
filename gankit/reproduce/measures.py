"""What a claim can be checked against: every metric a claims file may name, computed from one run's evaluation
(the result of :func:`gankit.eval.evaluate_run`) and its training log (``metrics.jsonl`` rows).

Registered by name; the claims files are validated against this registry, so a misspelt metric is an error when
the file is read, not a silent blank on the page."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.registry import Registry

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class MetricSpec:
    label: str  # how the page names it
    lower_is_better: bool
    description: str
    compute: Callable[[dict[str, Any], Rows], float | None]  # (evaluation, training log rows) -> value or None


METRICS: Registry[MetricSpec] = Registry("metric", MetricSpec)


def _eval_key(key: str) -> Callable[[dict[str, Any], Rows], float | None]:
    def get(ev: dict[str, Any], rows: Rows) -> float | None:
        v = ev.get(key)
        return None if v is None else float(v)

    return get


def class_share(ev: dict[str, Any], rows: Rows) -> float | None:
    """exp(entropy of the samples' predicted classes) / classes = exp(-KL(labels || uniform)): 1 when every class
    is drawn equally often, 1/K when one class takes everything. Unlike a count of classes hit, a few stray samples
    of other classes do not make a collapsed G look diverse."""
    kl = ev.get("label_kl_uniform")
    return None if kl is None else math.exp(-float(kl))


def nn_ratio(ev: dict[str, Any], rows: Rows) -> float | None:
    """Samples' mean distance to their nearest training image over real unseen images' (pixels): well below 1 means
    the samples sit closer to training images than new real images do (copying)."""
    s, r = ev.get("nn_pixel_samples"), ev.get("nn_pixel_real")
    return None if s is None or not r else float(s) / float(r)


def _second_half(rows: Rows, key: str) -> list[float]:
    xs = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r]
    return xs[len(xs) // 2 :]


def _std(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def d_real_loss_std(ev: dict[str, Any], rows: Rows) -> float | None:
    """Standard deviation, over the second half of training, of D's loss on real images, -log sigmoid(mean logit)
    per logged step (the log keeps D's mean logit on the batch, so this is the loss of that mean)."""
    return _std([_softplus(-x) for x in _second_half(rows, "d/real")])


def d_gap(ev: dict[str, Any], rows: Rows) -> float | None:
    """sigmoid(D's mean logit on real) - sigmoid(on fake), averaged over the last tenth of the logged steps: 0 when
    D can no longer tell them apart."""
    real = [float(r["d/real"]) for r in rows if isinstance(r.get("d/real"), (int, float))]
    fake = [float(r["d/fake"]) for r in rows if isinstance(r.get("d/fake"), (int, float))]
    n = min(len(real), len(fake))
    if n == 0:
        return None
    k = max(1, n // 10)

    def sig(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))

    return sum(sig(a) - sig(b) for a, b in zip(real[n - k : n], fake[n - k : n])) / k


METRICS.add(
    "fd", MetricSpec("FD", True, "Fréchet distance to the held-out reference, classifier features", _eval_key("fd"))
)
METRICS.add("class_share", MetricSpec("class share", False, class_share.__doc__ or "", class_share))
METRICS.add(
    "classes_hit",
    MetricSpec("classes hit", False, "classes predicted for at least one sample", _eval_key("classes_hit")),
)
METRICS.add(
    "label_accuracy",
    MetricSpec(
        "label accuracy",
        False,
        "share of a conditional G's samples classified as the class asked for",
        _eval_key("label_accuracy"),
    ),
)
METRICS.add(
    "parzen_ll",
    MetricSpec(
        "Parzen log-likelihood",
        False,
        "Parzen-window log-likelihood of the held-out images, nats per image (2014 protocol)",
        _eval_key("parzen_mean"),
    ),
)
METRICS.add(
    "coverage",
    MetricSpec("coverage", False, "share of real neighbourhoods holding a sample (k=5)", _eval_key("coverage")),
)
METRICS.add(
    "recall", MetricSpec("recall", False, "share of real images on the samples' manifold (k=3)", _eval_key("recall"))
)
METRICS.add("nn_ratio", MetricSpec("NN distance ratio", False, nn_ratio.__doc__ or "", nn_ratio))
METRICS.add("d_real_loss_std", MetricSpec("D real-loss std", True, d_real_loss_std.__doc__ or "", d_real_loss_std))
METRICS.add("d_gap", MetricSpec("D real-fake gap", True, d_gap.__doc__ or "", d_gap))


def measure(name: str, evaluation: dict[str, Any], rows: Rows) -> float | None:
    """The value of metric ``name`` for one run; None where it does not apply (e.g. label accuracy of an
    unconditional G)."""
    v = METRICS.get(name).compute(evaluation, rows)
    return None if v is None or not math.isfinite(v) else v
