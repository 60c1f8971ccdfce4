"""``inception`` features: the TorchScript Inception-v3 that stylegan2-ada and clean-fid use for FID, from an
explicit path or the cache, checked to be TorchScript before PyTorch parses it."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ...core.errors import GankitError
from ...data.base import ImageData
from ...data.download import fetch
from ...data.safety import open_user_file
from ..protocols import DEFAULT_PROTOCOL, PROTOCOLS
from .base import FEATURES, FeatureExtractor, _say, cache_root


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
        raise GankitError(
            f"{where} is not a TorchScript file PyTorch {version} can load (a damaged archive, or one "
            f"saved by an incompatible version); expected {expected}"
        ) from None


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
            raise GankitError(
                f"{self.path}: SHA256 {self.sha256} is not that of {INCEPTION_FILE}; download it again from {INCEPTION_URL}"
            )
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
