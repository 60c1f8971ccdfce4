"""Feature extractors: uint8 images (N, C, H, W) -> features (N, F) and class probabilities (N, K) or None.

Two are registered in :data:`FEATURES`:

- ``classifier``: a small CNN that gankit trains on the data set's labelled training split with a fixed recipe and seed,
  cached on disk under a key that hashes the data and the recipe. It sees images at their own resolution; its features
  join the response energy of every conv layer (the first one sees fine detail, so blur shows) to the 128-d penultimate
  layer, each block normalised on real images; its softmax gives the class probabilities (for IS and class coverage).
  Works offline, on a CPU, in a minute or two, and means something on digits, where Inception features do not.
- ``inception``: the TorchScript Inception-v3 that stylegan2-ada and clean-fid use for FID (2048-d pool features and
  1008-way softmax), from an explicit path or the cache.

Every extractor has an ``identity`` string that pins what produced the features (the classifier's cache key, the
Inception file's SHA256), written to the results JSON so numbers are only compared when they are comparable.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..data.base import ImageData, to_float
from ..data.download import cache_dir as data_cache_dir
from ..data.download import fetch
from ..data.safety import open_user_file
from ..data.transforms import convert_channels, resize
from ..core.errors import GankitError
from ..core.registry import Registry
from .protocols import DEFAULT_PROTOCOL, PROTOCOLS


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """gankit's cache folder: ``cache_dir`` if given, else $GANKIT_CACHE, else ~/.cache/gankit (as downloads use)."""
    return data_cache_dir(None if cache_dir is None else str(cache_dir))


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


class FeatureExtractor(ABC):
    """uint8 images -> (features (N, F) float32, class probabilities (N, K) float64 or None)."""

    name: str  # the registry name
    identity: str  # pins the weights that made the features
    dim: int  # F
    num_classes: int  # K (0 when the extractor gives no probabilities)
    batch_size: int = 256  # images per forward pass unless the caller says otherwise
    protocol: str = "native"  # how images reach the network (FID protocols: gankit.metrics.protocols)
    resize: str = "none"  # that resize, in words, as results record it

    @abstractmethod
    def extract(self, images: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """images: uint8 (N, C, H, W) in [0, 255], any size. Returns features (N, F), probabilities (N, K) or None."""

    def __call__(self, images: torch.Tensor, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (N, F) float32 and probabilities (N, K) float64 (or None) of uint8 images (N, C, H, W)."""
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise GankitError(f"feature extraction needs uint8 images (N, C, H, W), got {got}")
        with torch.inference_mode():
            return self.extract(images.cpu(), batch_size or self.batch_size)

    def info(self) -> dict[str, Any]:
        """JSON-ready description for results files."""
        return {"name": self.name, "identity": self.identity, "dim": self.dim, "num_classes": self.num_classes,
                "protocol": self.protocol, "resize": self.resize}


# A builder takes the labelled training data (None when the extractor needs none) and where to find or keep weights.
Builder = Callable[..., FeatureExtractor]
FEATURES: Registry[Builder] = Registry("feature extractor")


def build_extractor(
    name: str,
    train: ImageData | None = None,
    inception_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    protocol: str | None = None,
) -> FeatureExtractor:
    """The extractor registered as ``name``; ``train`` is needed by ``classifier``, ``inception_path`` by ``inception``
    when the file is not in the cache; ``protocol`` (an FID protocol name) only applies to ``inception``."""
    builder = FEATURES.get(name)
    if protocol is None:
        return builder(train=train, inception_path=inception_path, cache_dir=cache_dir, progress=progress)
    PROTOCOLS.get(protocol)  # an unknown name is a one-line error before any network is loaded
    if name != "inception":
        raise GankitError(f"--protocol {protocol} names how images reach the Inception network; use it with "
                          f"--features inception (the {name} features have a resize of their own)")
    return builder(train=train, inception_path=inception_path, cache_dir=cache_dir, progress=progress,
                   protocol=protocol)


# ---------------------------------------------------------------------------------------------------------------------
# classifier


@dataclass(frozen=True)
class ClassifierTraining:
    """Everything that decides the classifier's weights besides the data; hashed into the cache key.

    Bump ``version`` whenever the network or the training loop changes in a way these fields do not capture.
    """

    version: str = "3"  # 3: BatchNorm, one-cycle AdamW, shifted training images (2: native resolution, multi-layer
    # features, trained 5 epochs at lr 1e-3, 94-96 % on MNIST; 1: resized to 32, last layer only)
    max_size: int = 64  # larger images are shrunk to this; smaller ones are used at their own size, never enlarged
    width: int = 32  # channels of the first conv; doubled by each of the next two
    feature_dim: int = 128  # the penultimate layer
    epochs: int = 8
    batch_size: int = 128
    lr: float = 5e-3  # the peak of the schedule
    schedule: str = "onecycle"  # or "constant"; onecycle: linear warm-up over the first 20 % of steps, cosine to 0
    weight_decay: float = 1e-2  # AdamW's decoupled weight decay
    translate: float = 0.07  # training images shifted at random by up to this share of their side (2 px at 28-32)
    label_smoothing: float = 0.0
    batchnorm: bool = True  # BatchNorm after each conv (running statistics at evaluation)
    first_share: float = 2.0  # the first conv block's share of the feature variance, relative to each other block's
    holdout: float = 0.1  # share of the labelled images kept out of training to measure accuracy
    max_images: int = 20_000  # a fixed random subset of larger sets, to bound the training time
    seed: int = 0


# Images whose feature statistics set the normalisation of each block (a fixed subset of the training images).
NORM_IMAGES = 5000


class DomainClassifier(nn.Module):
    """A stride-1 convolution at the input's own resolution, two stride-2 ones (each followed by BatchNorm when
    ``batchnorm``), a ``feature_dim`` ReLU layer, a head.

    Input (B, in_channels, H, W) float in [-1, 1], any H, W >= 1; ``forward`` returns logits (B, K).

    ``features`` (B, D) concatenates four blocks: the root-mean-square over the image of every channel of each conv
    layer (``width``, ``2 width``, ``4 width`` values), then the penultimate layer (``feature_dim``). The last layer
    alone is trained to ignore anything that does not change the class, so blur, which keeps the class, barely moves
    it; the energy of the first layer's 3x3 responses at full resolution is what blur lowers. Each block is centred
    and scaled (buffers ``feat_shift``, ``feat_scale``, set by :func:`fit_normalisation` on real training images) to
    a set share of the total variance D there (by default each block D / 5, the first 2 D / 5): a layer weighs what
    its share says in FD whatever its width, and the features have unit variance on average, the scale KID's
    polynomial kernel assumes. The first block gets twice the share because a well-trained network's deeper layers
    learn to ignore blur too (recipe 3's, trained to 98.9 %, keep much less of it than recipe 2's at 96 %).
    """

    grid = 4  # the last conv's map is average-pooled to grid x grid before the penultimate layer

    def __init__(
        self, in_channels: int, num_classes: int, width: int = 32, feature_dim: int = 128, batchnorm: bool = False
    ) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width]
        strides = [1, 2, 2]  # the first at full resolution: strokes and edges
        self.convs = nn.ModuleList([
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=s, padding=1, bias=not batchnorm),
                nn.BatchNorm2d(c_out) if batchnorm else nn.Identity(),
            )
            for c_in, c_out, s in zip(chans[:-1], chans[1:], strides)
        ])
        self.fc = nn.Linear(4 * width * self.grid**2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)
        self.block_dims = [width, 2 * width, 4 * width, feature_dim]
        dim = sum(self.block_dims)
        self.register_buffer("feat_shift", torch.zeros(dim))
        self.register_buffer("feat_scale", torch.ones(dim))

    def blocks(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Raw feature blocks [(B, width), (B, 2 width), (B, 4 width), (B, feature_dim)] and logits (B, K)."""
        out = []
        for conv in self.convs:
            x = F.relu(conv(x))  # (B, C, H', W')
            out.append(x.square().mean(dim=(2, 3)).sqrt())  # per-channel RMS: response energy, position-free
        penultimate = F.relu(self.fc(F.adaptive_avg_pool2d(x, self.grid).flatten(1)))
        out.append(penultimate)
        return out, self.head(penultimate)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features (B, D) and logits (B, K)."""
        blocks, logits = self.blocks(x)
        return (torch.cat(blocks, dim=1) - self.feat_shift) * self.feat_scale, logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) only: training skips the energies, which its loss does not use."""
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.head(F.relu(self.fc(F.adaptive_avg_pool2d(x, self.grid).flatten(1))))


def fit_normalisation(
    net: DomainClassifier, images: torch.Tensor, first_share: float = 1.0, batch_size: int = 512
) -> None:
    """Set ``net``'s feature normalisation from real uint8 images (N, C, H, W) at the network's input size: each
    block's mean goes to 0 and its total variance to D times its share (``first_share`` for the first block, 1 for the
    others) over the sum of the shares. A constant block is only centred."""
    with torch.inference_mode():
        raw = torch.cat([torch.cat(net.blocks(to_float(images[i : i + batch_size]))[0], dim=1)
                         for i in range(0, len(images), batch_size)]).double()
    shift = raw.mean(0)
    scale = torch.ones_like(shift)
    shares = [first_share] + [1.0] * (len(net.block_dims) - 1)
    start = 0
    for d, s in zip(net.block_dims, shares):
        target = sum(net.block_dims) * s / sum(shares)
        total_var = float(raw[:, start : start + d].var(dim=0).sum()) if len(raw) > 1 else 0.0
        if total_var > 1e-12:
            scale[start : start + d] = (target / total_var) ** 0.5
        start += d
    net.feat_shift.copy_(shift.float())
    net.feat_scale.copy_(scale.float())


def input_size(height: int, width: int, recipe: ClassifierTraining) -> int:
    """The square side the classifier sees: the images' own size, shrunk to ``recipe.max_size`` when larger."""
    return min(max(height, width), recipe.max_size)


def _prepare(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, channels, size, size): gray <-> RGB, then an antialiased resize only when the
    size differs (as the data pipeline resizes, so real and generated images reach the network the same way)."""
    c = images.shape[1]
    if c not in (1, 3) and c != channels:
        raise GankitError(f"the classifier takes 1- or 3-channel images, got {c} channels")
    return resize(convert_channels(images, channels), size)


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
        recipe: ClassifierTraining = ClassifierTraining(),
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
            net = DomainClassifier(meta["in_channels"], meta["num_classes"], recipe.width, recipe.feature_dim, recipe.batchnorm)
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
        _say(progress, f"classifier features: trained in {meta['seconds']:.1f}s, held-out accuracy {meta['accuracy']:.4f}; cached in {folder}")
        return cls(net, meta)

    def logits_and_features(self, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, H, W) -> logits (N, K), features (N, D)."""
        feats, logits = [], []
        for i in range(0, images.shape[0], batch_size):
            f, lg = self.net.features_and_logits(to_float(_prepare(images[i : i + batch_size], self.in_channels, self.size)))
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
    data: ImageData, recipe: ClassifierTraining = ClassifierTraining(), progress: bool = True
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train the domain classifier on labelled ``data`` with ``recipe``; returns the network (eval mode, features
    normalised on its training images) and its metadata (held-out accuracy, sizes, recipe). Shows a progress bar on
    stderr when ``progress``. Trains on one thread, so the weights (and every FD they score) are the same whatever
    thread count the caller runs with: oneDNN splits a convolution's sums by thread, and 1 and 2 threads gave 98.75 %
    and 98.38 % on MNIST. The cache key does not hold a thread count, so this is what makes the cache sound. The
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


def _train_classifier(data: ImageData, recipe: ClassifierTraining, progress: bool) -> tuple[DomainClassifier, dict[str, Any]]:
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
    _say(progress, f"classifier features: training a classifier on {len(x_train)} labelled images of '{data.name}' "
                   f"({recipe.epochs} epochs; once, then cached)")
    # The first evaluation of a data set spends a minute or two here: a bar says so instead of a silent wait.
    bar = tqdm(total=recipe.epochs * steps_per_epoch, desc="classifier", unit="batch", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, mininterval=1.0, leave=False)
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


# ---------------------------------------------------------------------------------------------------------------------
# inception

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_FILE = "inception-2015-12-05.pt"
# NVIDIA publishes no checksum for this file and none could be found documented elsewhere; the SHA256 of the file
# actually used is computed on load and recorded in the extractor's identity instead.
INCEPTION_SHA256: str | None = None


def resolve_inception(
    path: str | Path | None = None, cache_dir: str | Path | None = None, download: bool = True, progress: bool = True
) -> Path:
    """The Inception TorchScript file: ``path`` if given, else ``<cache>/weights/inception-2015-12-05.pt``, downloaded
    there first (when ``download`` and online) if missing."""
    if path is not None:
        p = Path(path).expanduser()
        if not os.path.lexists(p):
            raise GankitError(f"--inception {p}: no such file (it is {INCEPTION_URL})")
        return p  # InceptionFeatures opens it with open_user_file: a FIFO or a device is refused there
    cached = cache_root(cache_dir) / "weights" / INCEPTION_FILE
    if cached.is_file():
        return cached
    hint = f"pass --inception PATH to a copy of {INCEPTION_URL}"
    if not download:
        raise GankitError(f"the Inception weights are not in {cached}; {hint}")
    try:
        fetch(INCEPTION_URL, cached, sha256=INCEPTION_SHA256, progress=progress)
    except GankitError as e:
        raise GankitError(f"could not download the Inception weights ({e}); {hint}") from None
    if not cached.is_file():
        raise GankitError(f"the Inception weights are not in {cached}; {hint}")
    return cached


INCEPTION_MAX_BYTES = 2 << 30  # the real file is ~92 MiB


def torchscript_problem(f: BinaryIO) -> str | None:
    """What keeps an open file from being TorchScript, in gankit's words, or None when it looks like TorchScript:
    a zip archive holding ``code/`` and ``constants.pkl``. Reads the first bytes and the zip's directory only."""
    f.seek(0)
    head = f.read(8)
    if not head.startswith(b"PK\x03\x04"):
        return f"it is not a zip archive (it starts with {head!r})"
    f.seek(0)
    try:
        names = zipfile.ZipFile(f).namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        return f"a damaged or truncated zip archive ({e})"
    if not any(n.endswith("/constants.pkl") for n in names) or not any("/code/" in n for n in names):
        return "a zip archive without TorchScript code (a torch.save checkpoint or state dict?)"
    return None


def check_torchscript(path: str | Path, what: str, expected: str) -> None:
    """GankitError unless ``path`` is a regular file (see :func:`open_user_file`) that looks like TorchScript: cheap
    enough to run before any slow work, so a wrong file is named at once."""
    with open_user_file(path, what, max_bytes=INCEPTION_MAX_BYTES) as f:
        problem = torchscript_problem(f)
    if problem:
        raise GankitError(f"{what} {path} is not a TorchScript file: {problem}; expected {expected}")


def load_torchscript(raw: bytes, where: str, expected: str) -> torch.jit.ScriptModule:
    """A TorchScript module from a file's bytes, on the CPU, in eval mode; or a GankitError in gankit's words saying
    what the file is not and what is expected (never PyTorch's zip-reader text): anything that is not a zip archive
    with TorchScript code is refused before PyTorch parses it."""
    problem = torchscript_problem(io.BytesIO(raw))
    if problem:
        raise GankitError(f"{where} is not a TorchScript file: {problem}; expected {expected}")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format this file ships in
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(io.BytesIO(raw), map_location="cpu").eval()
    except Exception:  # noqa: BLE001 - PyTorch's reader fails in many ways on a damaged archive; its text says nothing
        version = torch.__version__.split("+")[0]
        raise GankitError(f"{where} is not a TorchScript file PyTorch {version} can load (a damaged archive, or one "
                          f"saved by an incompatible version); expected {expected}") from None


class InceptionFeatures(FeatureExtractor):
    """stylegan2-ada's TorchScript Inception-v3: 2048-d pool3 features and 1008-way probabilities.

    The network takes float NCHW RGB in [0, 255] at any size and resizes to 299x299 itself (emulating TensorFlow's
    bilinear resize), so images are passed as they are, gray expanded to 3 channels. Features come from
    ``model(x, return_features=True)``; probabilities are those of ``model(x, no_output_bias=True)``, which is what
    stylegan2-ada's IS uses, taken from the same pass as softmax(features · output.weightᵀ) when the network exposes
    its ``output`` layer.
    """

    name = "inception"
    batch_size = 32  # 299x299 activations: a CPU-friendly amount of memory

    def __init__(self, path: str | Path, protocol: str = DEFAULT_PROTOCOL) -> None:
        self.protocol, self.resize = protocol, PROTOCOLS.get(protocol).resize
        self._features = PROTOCOLS.get(protocol).features
        self.path = Path(path)
        with open_user_file(self.path, "--inception", max_bytes=INCEPTION_MAX_BYTES) as f:
            raw = f.read()  # ~100 MB, read once: hashed and loaded from the same bytes
        self.sha256 = hashlib.sha256(raw).hexdigest()  # recorded in the identity, so results name the exact file
        if INCEPTION_SHA256 is not None and self.sha256 != INCEPTION_SHA256:
            raise GankitError(f"{self.path}: SHA256 {self.sha256} is not that of {INCEPTION_FILE}; download it again from {INCEPTION_URL}")
        self.model = load_torchscript(raw, f"--inception {self.path}", f"{INCEPTION_FILE} from {INCEPTION_URL}")
        weight = getattr(getattr(self.model, "output", None), "weight", None)
        self._head = weight.detach().double() if isinstance(weight, torch.Tensor) else None  # (K, F)
        self.identity = f"inception-{self.sha256[:16]}"
        self.dim = 2048 if self._head is None else int(self._head.shape[1])
        self.num_classes = 1008 if self._head is None else int(self._head.shape[0])

    def extract(self, images: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        c = images.shape[1]
        if c not in (1, 3):
            raise GankitError(f"Inception features take 1- or 3-channel images, got {c} channels")
        # probabilities: from the output layer applied to the features, or (a file without it, legacy protocol
        # only) from the network's own second output; none otherwise
        own_probs = self._head is None and self.protocol == DEFAULT_PROTOCOL
        feats, probs = [], []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].expand(-1, 3, -1, -1)  # gray as RGB, uint8 [0, 255]
            f = self._features(self.model, x)  # the protocol's resize, then the network
            feats.append(f.float())
            if self._head is not None:
                probs.append(torch.softmax(f.double() @ self._head.T, dim=1))
            elif own_probs:
                probs.append(self.model(x.to(torch.float32), no_output_bias=True).double())
        if not feats:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, self.num_classes))
        return torch.cat(feats).numpy(), (torch.cat(probs).numpy() if probs else None)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "sha256": self.sha256, "url": INCEPTION_URL}


@FEATURES.register("inception")
def _build_inception(
    train: ImageData | None = None,
    inception_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    protocol: str = DEFAULT_PROTOCOL,
) -> FeatureExtractor:
    path = resolve_inception(inception_path, cache_dir, progress=progress)
    _say(progress, f"inception features: {path} (protocol {protocol})")
    return InceptionFeatures(path, protocol)


# ---------------------------------------------------------------------------------------------------------------------
# pixels


class PixelFeatures(FeatureExtractor):
    """Images resized to size x size, flattened, in [0, 1]: a weights-free feature space for data without labels
    (paired image-to-image data), where neither a domain classifier nor Inception is at hand."""

    name = "pixels"
    resize = "antialiased resize to 16x16"

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.identity = f"pixels-{size}"
        self.dim = 0  # set on first use: size * size * channels
        self.num_classes = 0

    def extract(self, images: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        x = resize(images, self.size).to(torch.float32).div_(255.0).flatten(1)
        self.dim = int(x.shape[1])
        return x.numpy(), None


@FEATURES.register("pixels")
def _pixels(train: ImageData | None = None, **_: Any) -> FeatureExtractor:
    return PixelFeatures()
