"""Named FID protocols for the Inception extractor, and reference statistics files (``.npz`` with ``mu``, ``sigma``).

An FID is only comparable with another computed the same way: the same network file, the same way images reach its
299x299 input, the same number of samples and the same real images (or reference statistics). Published numbers
use one of two resize conventions, both named after clean-fid's modes (Parmar et al. 2022, "On Aliased Resizing and
Surprising Subtleties in GAN Evaluation"):

- ``legacy-tensorflow``: the images go into the TorchScript network at their own size, as floats in [0, 255], and
  the network resizes them itself with its emulation of TensorFlow 1's bilinear resize (no antialiasing), then
  scales to [-1, 1]. This is what TTUR's and stylegan2-ada's FIDs (and most papers before 2021) used.
- ``clean``: each channel is resized to 299x299 on its own as a float image with PIL's bicubic filter (which widens
  its kernel when shrinking, so it antialiases), clipped to [0, 255] and not rounded to integers; the result, scaled
  by (x - 128) / 128, goes into the network's layers, skipping its own resize.

Reference statistics files hold ``mu`` (F,) and ``sigma`` (F, F), as the files published with TTUR, clean-fid and
stylegan2-ada's metrics do. They are read with ``allow_pickle=False`` (an object array is refused, nothing executes)
and checked for the keys, shapes and finite values. Files gankit writes also record the protocol, the feature file's
identity and N, and a file whose recorded protocol differs from the one asked for is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..core.errors import GankitError
from ..core.io import atomic_write_bytes, open_regular
from ..core.registry import Registry

INCEPTION_SIZE = 299
MAX_STATS_BYTES = 1 << 30  # a 2048-d mu/sigma in float64 is 34 MB; even 8192-d features stay below this


def resize_clean(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, C, size, size) in [0, 255]: every channel resized alone as a 32-bit float
    image with PIL's bicubic filter (antialiased when shrinking), clipped, not quantised (clean-fid's 'clean')."""
    arr = images.numpy()
    out = np.empty((arr.shape[0], arr.shape[1], size, size), dtype=np.float32)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            plane = Image.fromarray(arr[i, c].astype(np.float32), mode="F")
            out[i, c] = np.asarray(plane.resize((size, size), resample=Image.Resampling.BICUBIC), dtype=np.float32)
    return torch.from_numpy(np.clip(out, 0.0, 255.0))


@dataclass(frozen=True)
class Protocol:
    """How images reach the Inception network; ``features(model, uint8 RGB batch)`` -> (B, 2048) float32."""

    resize: str  # the resize, as recorded in every result
    features: Callable[[Any, torch.Tensor], torch.Tensor]
    doc: str


def _legacy_tf(model: Any, x: torch.Tensor) -> torch.Tensor:
    return model(x.to(torch.float32), return_features=True)  # [0, 255]; the network resizes and scales


def _clean(model: Any, x: torch.Tensor) -> torch.Tensor:
    layers = getattr(model, "layers", None)
    if layers is None:
        raise GankitError(
            "protocol 'clean' needs the Inception network's `layers` (inception-2015-12-05.pt has them); "
            "this file has none: use --protocol legacy-tensorflow"
        )
    y = resize_clean(x)
    return layers((y - 128.0) / 128.0).reshape(y.shape[0], -1)


PROTOCOLS: Registry[Protocol] = Registry("FID protocol", Protocol)
PROTOCOLS.add(
    "legacy-tensorflow",
    Protocol(
        "network's own TF1-style bilinear to 299x299 (no antialiasing)",
        _legacy_tf,
        "as TTUR and stylegan2-ada: the network resizes the images itself",
    ),
)
PROTOCOLS.add(
    "clean",
    Protocol(
        "PIL bicubic per channel in float32 to 299x299 (antialiased), clipped, not quantised",
        _clean,
        "as clean-fid's 'clean' mode",
    ),
)
DEFAULT_PROTOCOL = "legacy-tensorflow"


# ---------------------------------------------------------------------------------------------------------------------
# reference statistics files


@dataclass(frozen=True)
class RefStats:
    """A reference statistics file: mean (F,), covariance (F, F), float64, and what gankit recorded about it."""

    path: Path
    mu: np.ndarray
    sigma: np.ndarray
    sha256: str
    protocol: str | None  # None for files gankit did not write
    features_id: str | None
    n: int | None

    def describe(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "protocol": self.protocol,
            "features_id": self.features_id,
            "n": self.n,
        }


def _text(z: Any, key: str) -> str | None:
    if key not in z.files:
        return None
    a = z[key]
    return str(a.item()) if a.dtype.kind == "U" and a.ndim == 0 else None


def read_ref_stats(path: str | Path, protocol: str | None = None) -> RefStats:
    """Read and check ``path`` (keys mu, sigma; sigma square and matching mu; finite). With ``protocol``, a file that
    records another protocol is refused. Every problem is a one-line GankitError naming the file."""
    p = Path(path)
    where = f"--ref-stats {p}"
    with open_regular(p, "--ref-stats") as f:  # regular files only: a FIFO or device never blocks or streams
        size = os.fstat(f.fileno()).st_size
        if size > MAX_STATS_BYTES:
            raise GankitError(f"{where}: {size} bytes is far more than statistics files hold; not a statistics file")
        data = f.read()
    if not data.startswith(b"PK"):  # an .npz is a zip of .npy arrays; numpy would take anything else for a pickle
        kind = "a pickle, which is never loaded" if data[:1] == b"\x80" else "not an .npz (a zip of .npy arrays)"
        raise GankitError(f"{where}: {kind}; statistics files hold the arrays 'mu' and 'sigma'")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keys = set(z.files)
            missing = [k for k in ("mu", "sigma") if k not in keys]
            if missing:
                raise GankitError(
                    f"{where}: no '{missing[0]}' array (it has {', '.join(sorted(keys)) or 'nothing'}); "
                    f"a statistics file holds 'mu' (F,) and 'sigma' (F, F)"
                )
            mu, sigma = z["mu"], z["sigma"]
            rec_protocol, features_id, n = _text(z, "protocol"), _text(z, "features_id"), _text(z, "n")
    except GankitError:
        raise
    except ValueError as e:
        if "pickle" in str(e):  # numpy: "Object arrays cannot be loaded when allow_pickle=False", or a bare pickle
            raise GankitError(
                f"{where}: holds pickled data, which is never loaded ({str(e).splitlines()[0]})"
            ) from None
        raise GankitError(f"{where}: not a readable .npz ({str(e).splitlines()[0]})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise GankitError(
            f"{where}: not a readable .npz ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if mu.dtype.kind not in "fiu" or sigma.dtype.kind not in "fiu":
        raise GankitError(f"{where}: mu and sigma must be numbers, got {mu.dtype} and {sigma.dtype}")
    if mu.ndim != 1 or sigma.ndim != 2 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise GankitError(f"{where}: mu is {tuple(mu.shape)} and sigma {tuple(sigma.shape)}; expected (F,) and (F, F)")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise GankitError(f"{where}: mu or sigma holds NaN or Inf")
    if protocol is not None and rec_protocol is not None and rec_protocol != protocol:
        raise GankitError(
            f"{where}: made under protocol '{rec_protocol}', this evaluation uses '{protocol}'; pass "
            f"--protocol {rec_protocol} (FIDs under different resizes are not comparable)"
        )
    return RefStats(
        p,
        np.asarray(mu, np.float64),
        np.asarray(sigma, np.float64),
        hashlib.sha256(data).hexdigest(),
        rec_protocol,
        features_id,
        None if n is None else int(n),
    )


def write_ref_stats(
    path: str | Path, mu: np.ndarray, sigma: np.ndarray, *, protocol: str, features_id: str, n: int
) -> Path:
    """Write ``mu``, ``sigma`` (float64) and what made them (as 0-d text arrays, readable without pickles) to
    ``path``, atomically."""
    p = Path(path)
    if p.suffix != ".npz":
        raise GankitError(f"--save-ref-stats {p}: give a file name ending in .npz")
    buf = io.BytesIO()
    np.savez(
        buf,
        mu=np.asarray(mu, np.float64),
        sigma=np.asarray(sigma, np.float64),
        protocol=np.array(protocol),
        features_id=np.array(features_id),
        n=np.array(str(n)),
    )
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, buf.getvalue())
    return p
