"""Export a run's sampling network to ONNX or TorchScript, so it runs without gankit (or without Python).

The exported graph is the network `gankit sample` / `gankit translate` use (the EMA generator when the run kept one),
in eval mode, with a dynamic batch dimension:

- GAN: ``z`` (B, z_dim) float32 [+ ``labels`` (B,) int64 for conditional models] -> ``images`` (B, C, H, W) in [-1, 1]
- pix2pix: ``inputs`` (B, C_A, H, W) float32 in [-1, 1] -> ``images`` (B, C_B, H, W) in [-1, 1]
- cyclegan: the same, with the A -> B generator, or B -> A with ``--direction BtoA`` (one file per direction)

Metadata (z size and noise distribution, classes, image shape, value range, ...) travels inside the file: ONNX
``metadata_props``, TorchScript ``_extra_files["gankit.json"]``. ONNX allows only string values, so each value is
JSON-encoded (strings included): ``json.loads`` decodes every one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.errors import GankitError
from .core.io import atomic_write_bytes, atomic_writer

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported inside the functions: `gankit export --help` (whose choices come from here) must stay instant.
FORMATS = ("onnx", "torchscript")
EXTRA_FILE = "gankit.json"  # the TorchScript extra file that carries the metadata


@dataclass
class Exportable:
    """One network ready to export: the module, example inputs (batch 2), their names, and the metadata."""

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    metadata: dict[str, Any]


def exportable(run_dir: str | Path, checkpoint: str = "latest", direction: str | None = None) -> Exportable:
    """The sampling network of ``run_dir`` with example inputs, as its task describes it (a GAN's G takes noise and
    labels when conditional, pix2pix's takes images). Raises GankitError when ``run_dir`` is not a run."""
    from . import __version__
    from .config import to_dict
    from .tasks import load

    model = load(run_dir, checkpoint)
    if direction is not None:  # a translator's own choice (cyclegan: either generator; pix2pix: AtoB only)
        toward = getattr(model, "toward", None)
        if toward is None:
            raise GankitError(f"--direction is for image-to-image runs; {run_dir} samples from noise")
        model = toward(direction)
    module, inputs, names, meta = model.export_parts()
    common = {
        "gankit_version": __version__,
        "model": model.config.model.name,
        "value_range": [-1.0, 1.0],
        "model_config": to_dict(model.config.model),
        "step": model.step,
        "inputs": names,
    }
    return Exportable(module.eval(), inputs, names, {**common, **meta})


def _as_strings(meta: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in meta.items()}  # strings too, so a reader decodes every value alike


def _write_onnx(ex: Exportable, out: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise GankitError(
            "ONNX export needs the onnx package: pip install 'gankit[export]' (or pip install onnx onnxscript)"
        ) from None
    import torch

    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet():
            prog = torch.onnx.export(
                ex.module,
                ex.inputs,
                dynamo=True,
                dynamic_shapes=tuple({0: batch} for _ in ex.inputs),
                input_names=ex.input_names,
                output_names=["images"],
                verbose=False,
            )
    except ImportError as e:
        raise GankitError(f"ONNX export needs onnxscript: pip install 'gankit[export]' ({e})") from None
    model = prog.model_proto
    for k, v in _as_strings(ex.metadata).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    atomic_write_bytes(out, model.SerializeToString())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter logs warnings about optional packages (torchvision ops) and deprecations that concern torch, not
    the user; keep the command's output to what gankit says."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _write_torchscript(ex: Exportable, out: Path) -> None:
    # Tracing records the graph for the example batch; every op in gankit's generators reads the batch size from its
    # input (no Python ints baked in), which the export tests check at two batch sizes.
    import torch

    with torch.no_grad(), _quiet():
        traced = torch.jit.trace(ex.module, ex.inputs, check_trace=False)
    with _quiet(), atomic_writer(out) as f:
        torch.jit.save(traced, f, _extra_files={EXTRA_FILE: json.dumps(ex.metadata)})


WRITERS: dict[str, Callable[[Exportable, Path], None]] = {"onnx": _write_onnx, "torchscript": _write_torchscript}


def export_generator(
    run_dir: str | Path, fmt: str, out: str | Path, checkpoint: str = "latest", direction: str | None = None
) -> Path:
    """Write the run's sampling network to ``out`` as ``fmt`` ("onnx" or "torchscript"); returns ``out``.
    ``direction`` (AtoB, BtoA): which generator of a cyclegan run (default AtoB)."""
    if fmt not in WRITERS:
        raise GankitError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise GankitError(
            f"--out {out} is a folder; give a file name such as {out / ('generator.' + ('onnx' if fmt == 'onnx' else 'pt'))}"
        )
    ex = exportable(run_dir, checkpoint, direction)
    out.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[fmt](ex, out)
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported file (either format), values decoded from JSON where they were encoded."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return {k: _decode(v) for k, v in props.items()}
    import torch

    files = {EXTRA_FILE: ""}
    with _quiet():
        torch.jit.load(str(path), _extra_files=files)
    return json.loads(files[EXTRA_FILE])


def _decode(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v
