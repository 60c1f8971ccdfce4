"""Training the domain classifier: a fixed recipe and seed on the data set's labelled training split, on one thread,
so the same data always gives the same weights (and every FD they score is reproducible)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ...core.errors import GankitError
from ...data.base import ImageData, to_float
from .base import _say
from .classifier_net import (
    DEFAULT_RECIPE,
    NORM_IMAGES,
    ClassifierTraining,
    DomainClassifier,
    _prepare,
    fit_normalisation,
    input_size,
)


def _lr_schedule(recipe: ClassifierTraining, total_steps: int) -> Callable[[int], float]:
    """step -> learning rate for ``recipe.schedule``."""
    if recipe.schedule == "constant":
        return lambda step: recipe.lr
    if recipe.schedule != "onecycle":
        raise GankitError(f"classifier recipe: schedule '{recipe.schedule}' is not one of constant, onecycle")
    warm = max(1, int(0.2 * total_steps))

    def lr_at(step: int) -> float:
        if step < warm:
            return recipe.lr * (step + 1) / warm
        return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))

    return lr_at


def translate(images: torch.Tensor, max_px: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) -> each image shifted by its own random (dy, dx) in [-max_px, max_px], edges replicated."""
    if max_px <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images.to(torch.float32), (max_px,) * 4, mode="replicate")  # (B, C, H + 2p, W + 2p)
    dy, dx = torch.randint(0, 2 * max_px + 1, (2, b, 1), generator=generator)
    rows = (torch.arange(h) + dy)[:, :, None]  # (B, H, 1)
    cols = (torch.arange(w) + dx)[:, None, :]  # (B, 1, W)
    out = padded[torch.arange(b)[:, None, None], :, rows, cols]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).to(torch.uint8).contiguous()


def train_classifier(
    data: ImageData, recipe: ClassifierTraining = DEFAULT_RECIPE, progress: bool = True
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train the domain classifier on labelled ``data`` with ``recipe``; returns the network (eval mode, features
    normalised on its training images) and its metadata (held-out accuracy, sizes, recipe). Shows a progress bar on
    stderr when ``progress``. Trains on one thread, so the weights (and every FD they score) are the same whatever
    thread count the caller runs with: oneDNN splits a convolution's sums by thread, and 1 and 2 threads trained
    classifiers of different accuracies on MNIST (docs/notes/code-comments.md). The cache key does not hold a thread
    count, so this is what makes the cache sound. The
    caller's thread count and global RNG state are left untouched."""
    with one_thread():
        return _train_classifier(data, recipe, progress)


@contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_classifier(
    data: ImageData, recipe: ClassifierTraining, progress: bool
) -> tuple[DomainClassifier, dict[str, Any]]:
    labels = data.labels.to(torch.int64)
    if len(data) < 10 or bool((labels < 0).any()):
        raise GankitError(
            f"classifier features need a labelled training split of at least 10 images; '{data.name}' has "
            f"{int((labels >= 0).sum())} labelled of {len(data)} (use --features inception)"
        )
    num_classes = max(data.num_classes, int(labels.max()) + 1)
    in_channels = 1 if data.images.shape[1] == 1 else 3
    size = input_size(int(data.images.shape[2]), int(data.images.shape[3]), recipe)
    start = time.perf_counter()
    g = torch.Generator().manual_seed(recipe.seed)
    order = torch.randperm(len(data), generator=g)[: recipe.max_images]
    n_hold = max(1, int(round(len(order) * recipe.holdout)))
    hold_idx, train_idx = order[:n_hold], order[n_hold:]
    images = _prepare(data.images[order], in_channels, size)  # uint8 (n, C, size, size)
    x_hold, y_hold = images[:n_hold], labels[hold_idx]
    x_train, y_train = images[n_hold:], labels[train_idx]

    with torch.random.fork_rng(devices=[]):  # weights from the recipe's seed, without disturbing the caller's RNG
        torch.manual_seed(recipe.seed)
        net = DomainClassifier(in_channels, num_classes, recipe.width, recipe.feature_dim, recipe.batchnorm)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = -(-len(x_train) // recipe.batch_size)
    lr_at = _lr_schedule(recipe, recipe.epochs * steps_per_epoch)
    shift = int(round(recipe.translate * size))  # pixels
    _say(
        progress,
        f"classifier features: training a classifier on {len(x_train)} labelled images of '{data.name}' "
        f"({recipe.epochs} epochs; once, then cached)",
    )
    # The first evaluation of a data set spends a minute or two here: a bar says so instead of a silent wait.
    bar = tqdm(
        total=recipe.epochs * steps_per_epoch,
        desc="classifier",
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=1.0,
        leave=False,
    )
    net.train()
    step = 0
    with torch.enable_grad():
        for epoch in range(recipe.epochs):
            perm = torch.randperm(len(x_train), generator=g)
            total, count = 0.0, 0
            for i in range(0, len(perm), recipe.batch_size):
                idx = perm[i : i + recipe.batch_size]
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
                x = translate(x_train[idx], shift, g)
                loss = F.cross_entropy(net(to_float(x)), y_train[idx], label_smoothing=recipe.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                step += 1
                bar.update(1)
            bar.set_postfix(epoch=f"{epoch + 1}/{recipe.epochs}", loss=f"{total / max(count, 1):.4f}")
    bar.close()
    net.eval()
    fit_normalisation(net, x_train[:NORM_IMAGES], recipe.first_share)
    with torch.inference_mode():
        pred = torch.cat([net(to_float(x_hold[i : i + 512])).argmax(1) for i in range(0, n_hold, 512)])
    accuracy = float((pred == y_hold).double().mean())
    meta = {
        "recipe": asdict(recipe),
        "in_channels": in_channels,
        "size": size,
        "num_classes": num_classes,
        "class_names": list(data.class_names),
        "accuracy": accuracy,
        "n_train": int(len(x_train)),
        "n_holdout": int(n_hold),
        "data_name": data.name,
        "data_shape": list(data.images.shape),
        "seconds": time.perf_counter() - start,
    }
    return net, meta
