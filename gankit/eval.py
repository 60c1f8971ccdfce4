"""`gankit eval` as a library: score a trained run (through its task) or any .npy of samples against real data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config.schema import DataConfig
from .core.errors import GankitError
from .core.io import write_json as write_json_file
from .data import DATASETS
from .data.safety import load_npy_checked
from .data.splits import classifier_and_reference
from .tasks import load, task_of
from .training.rundir import load_run_config


def load_samples_npy(path: str | Path) -> torch.Tensor:
    """A .npy of uint8 (N, H, W, C) images -> uint8 (N, C, H, W); never unpickles."""
    p = Path(path)
    # Regular files only, header checked against the file size and free memory before anything is allocated.
    arr = load_npy_checked(p, "--samples")
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] not in (1, 3) or min(arr.shape[1:3]) < 1:
        raise GankitError(f"--samples {p} must be uint8 (N, H, W, C) images with C 1 or 3, got {arr.dtype} {arr.shape}")
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
    protocol: str | None = None,
    ref_stats: str | Path | None = None,
    save_ref_stats: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of a run: the run's task scores its own inference (samples for GANs, translations for pix2pix).
    ``protocol``, ``ref_stats`` and ``save_ref_stats``: see :func:`gankit.metrics.score_samples` (GAN runs)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if data_dir is not None:
        cfg = cfg.replace(**{"data.dir": data_dir})
    fid = fid_options(features, protocol, ref_stats, save_ref_stats)
    if fid and not task_of(cfg).scores_samples:
        raise GankitError(
            f"--protocol/--ref-stats/--save-ref-stats score generated samples; run {run_dir} is a "
            f"{cfg.model.name} (image-to-image) run"
        )
    model = load(run_dir, checkpoint)
    return task_of(cfg).evaluate(
        model,
        cfg,
        n=n,
        features=features,
        split=split,
        inception_path=inception_path,
        parzen=parzen,
        seed=seed,
        progress=progress,
        **fid,
    )


def fid_options(
    features: str, protocol: str | None, ref_stats: str | Path | None, save_ref_stats: str | Path | None
) -> dict[str, Any]:
    """The FID protocol keyword arguments of score_samples, checked before anything is computed: a known protocol
    (Inception only), a readable and sane statistics file, a .npz name to write."""
    from .metrics.protocols import DEFAULT_PROTOCOL, PROTOCOLS, read_ref_stats

    out: dict[str, Any] = {}
    if protocol is not None:
        PROTOCOLS.get(protocol)
        if features != "inception":
            raise GankitError(
                f"--protocol {protocol} names how images reach the Inception network; add --features inception"
            )
        out["protocol"] = protocol
    if ref_stats is not None:
        want = protocol or (DEFAULT_PROTOCOL if features == "inception" else "native")
        out["ref_stats"] = read_ref_stats(ref_stats, want)
    if save_ref_stats is not None:
        if Path(save_ref_stats).suffix != ".npz":
            raise GankitError(f"--save-ref-stats {save_ref_stats}: give a file name ending in .npz")
        out["save_ref_stats"] = save_ref_stats
    return out


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
    protocol: str | None = None,
    ref_stats: str | Path | None = None,
    save_ref_stats: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of any uint8 (N, H, W, C) .npy of samples against data set ``data``: compare with other tools' output.
    ``classifier_images`` in the result says which images trained the classifier (see
    :func:`gankit.data.splits.classifier_and_reference`)."""
    from .metrics import score_samples

    fid = fid_options(features, protocol, ref_stats, save_ref_stats)
    samples = load_samples_npy(path)
    c, h, w = samples.shape[1:]
    # the reference images at the samples' size: width x height (data.image_height 0 keeps squares as they were)
    base = DataConfig(name=data, dir=data_dir, image_size=int(w), image_height=int(h) if h != w else 0, channels=int(c))
    DATASETS.get(data)
    train, test, described = classifier_and_reference(data, base, split)
    if progress:
        print(f"eval: classifier trained on {described}", file=sys.stderr, flush=True)
    res = score_samples(
        samples,
        test,
        train,
        features=features,
        inception_path=inception_path,
        parzen=parzen,
        seed=seed,
        progress=progress,
        **fid,
    )
    res.update(samples=str(path), data=data, split=split, classifier_images=described)
    return res


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise GankitError(f"--out {p} is a folder; give a .json file name")
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json_file(p, results)
    return p
