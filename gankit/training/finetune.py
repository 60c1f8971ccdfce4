"""Starting a run from another run's weights (``train.init_from``): fine-tuning a trained model on new data.

Only weights (and buffers, such as BatchNorm statistics) come across: the optimizer state, the step, the data
position and the RNGs start fresh, as stylegan2-ada's ``--resume`` does for transfer learning. The source is read
through :func:`gankit.training.checkpoint.read` (safetensors and JSON, every file's SHA256 checked; nothing
executes). Where the new run starts is recorded in its run.json (``init_from``) and shown in its report.

The config keeps ``train.init_from`` as the resolved checkpoint folder, so ``gankit train RUN/config.yaml`` starts
from the same weights again; a resumed run takes its weights from its own checkpoint and never re-applies the init.

``train.freeze_d N`` keeps the first N weight layers of D (counted from the image side, with the normalisation
layers that follow each) fixed, as stylegan2-ada's ``--freezed`` (Mo et al. 2020, "Freeze the Discriminator").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..core.errors import GankitError
from .checkpoint import Checkpoint, candidates, read

PARTS = ("g", "d", "ema")  # what --init-parts may name for a GAN; any family may name its own networks (its modules)


def resolve_source(path: str | Path) -> Path:
    """The checkpoint folder ``path`` names: a checkpoint folder itself, or a run folder (its ``final`` checkpoint,
    else its newest good one). One-line GankitError when it is neither."""
    p = Path(path).expanduser()
    if (p / "state.json").is_file():
        return p.resolve()
    ckdir = p / "checkpoints"
    if not p.is_dir():
        raise GankitError(f"--init-from {path}: no such run folder")
    if not ckdir.is_dir():
        raise GankitError(
            f"--init-from {path}: not a gankit run (no checkpoints/ folder) nor a checkpoint (no "
            f"state.json); give a run folder made by gankit train"
        )
    found = candidates(ckdir)
    final = [c for c in found if c.name == "final"]
    for c in final + [c for c in found if c.name != "final"]:
        if (c / "state.json").is_file():
            return c.resolve()
    raise GankitError(f"--init-from {path}: the run has no checkpoints (it was stopped before its first save)")


def load_source(folder: Path) -> Checkpoint:
    """The verified checkpoint at ``folder``; a damaged one is a one-line error naming it (nothing is trained)."""
    try:
        return read(folder)
    except GankitError as e:
        raise GankitError(f"--init-from: {e}") from None


def check_compatible(ck: Checkpoint, family: str, model: dict[str, Any], image_shape: tuple[int, ...]) -> None:
    """Refuse clearly what no tensor-by-tensor copy could make sense of: another model family or architecture, a
    conditional model into an unconditional one (or back), another number of image channels."""
    src_cfg = ck.state.get("config", {}).get("model", {})
    src_meta = ck.state.get("meta", {})
    where = f"--init-from {ck.path}"
    src_family = src_meta.get("family", src_meta.get("recipe", family))  # "recipe": runs of older gankit
    if src_family != family or src_cfg.get("name", model["name"]) != model["name"]:
        raise GankitError(
            f"{where}: that run trained model '{src_cfg.get('name')}', this run builds "
            f"'{model['name']}'; fine-tune with --model {src_cfg.get('name')}"
        )
    src_k, k = int(src_cfg.get("num_classes", 0) or 0), int(model.get("num_classes", 0) or 0)
    if src_k != k:
        kind = lambda n: f"conditional ({n} classes)" if n else "unconditional"  # noqa: E731
        raise GankitError(
            f"{where}: that run's model is {kind(src_k)}, this run's is {kind(k)}; its class "
            f"embedding cannot carry over: set model.num_classes={src_k} (with labelled data) or start "
            f"from a run of the same kind"
        )
    shape = src_meta.get("image_shape")
    if isinstance(shape, list) and len(shape) == 3 and len(image_shape) == 3 and shape[0] != image_shape[0]:
        raise GankitError(
            f"{where}: that run made {shape[0]}-channel images, this data has {image_shape[0]}; set "
            f"data.channels={shape[0]} so the images are converted"
        )


def check_shapes(module: nn.Module, tensors: dict[str, torch.Tensor], part: str, where: str) -> None:
    """Every tensor of ``module`` is in ``tensors`` with the same shape, and nothing else is: else a one-line error
    naming the first mismatching tensor."""
    own = module.state_dict()
    for key, t in own.items():
        if key not in tensors:
            raise GankitError(
                f"{where}: {part} tensor '{key}' is missing there; the models differ (another "
                f"architecture or model.* setting)"
            )
        if tuple(tensors[key].shape) != tuple(t.shape):
            raise GankitError(
                f"{where}: {part} tensor '{key}' is {tuple(tensors[key].shape)} there, "
                f"{tuple(t.shape)} here; set the model.* keys and data.image_size of that run"
            )
    extra = [k for k in tensors if k not in own]
    if extra:
        raise GankitError(f"{where}: {part} tensor '{extra[0]}' there has no counterpart here; the models differ")


def parse_parts(parts: tuple[str, ...], names: tuple[str, ...] = PARTS) -> tuple[str, ...]:
    """``parts`` without repeats, each one of ``names`` (the task's networks, and 'ema'); else a one-line error."""
    bad = [p for p in parts if p not in names]
    if bad or not parts:
        raise GankitError(
            f"train.init_parts: {bad[0] if bad else 'nothing'} is not a part; name some of "
            f"{', '.join(names)} (e.g. --init-parts {','.join(names[:2])})"
        )
    return tuple(dict.fromkeys(parts))


def apply_init(
    modules: dict[str, nn.Module],
    source: str,
    parts: tuple[str, ...],
    family: str,
    model: dict[str, Any],
    image_shape: tuple[int, ...],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Copy the weights of ``parts`` from checkpoint ``source`` into ``modules`` (the task's, in place). Every check
    runs before the first tensor is copied. Returns the origin for run.json.

    An 'ema' part of a source without an EMA comes from its 'g'; when this run keeps an EMA but 'ema' is not asked
    for, the EMA starts as a copy of the (new) G, as it does in a run from scratch."""
    folder = Path(source)
    ck = load_source(folder)
    where = f"--init-from {folder}"
    check_compatible(ck, family, model, image_shape)
    plan: list[tuple[str, str]] = []  # (our module, source tensors)
    for part in parse_parts(parts, tuple(dict.fromkeys([*modules, "ema"]))):
        if part not in modules:  # 'ema' when this run keeps no EMA (train.ema_half_life=0)
            continue
        src = part if part in ck.tensors else "g" if part == "ema" and "g" in ck.tensors else None
        if src is None:
            raise GankitError(f"{where}: that checkpoint has no '{part}' weights")
        check_shapes(modules[part], ck.tensors[src], part, where)
        plan.append((part, src))
    with torch.no_grad():
        for part, src in plan:
            modules[part].load_state_dict(ck.tensors[src], strict=True)
        if "ema" in modules and "ema" not in parts and "g" in parts:
            modules["ema"].load_state_dict(modules["g"].state_dict(), strict=True)
    tensors = {p: ck.state["files"].get(f"{src}.safetensors", {}).get("sha256") for p, src in plan}
    origin = {
        "checkpoint": str(folder),
        "run": str(folder.parent.parent),
        "step": ck.step,
        "parts": [p for p, _ in plan],
        "sha256": tensors,
        "model": ck.state.get("config", {}).get("model", {}).get("name"),
        "data": ck.state.get("config", {}).get("data", {}).get("name"),
    }
    say(f"initialised {', '.join(p for p, _ in plan)} from {folder} (step {ck.step}); optimizer and step start fresh")
    return origin


def weight_layers(d: nn.Module) -> list[list[nn.Module]]:
    """D's layers with weights in the order they are registered (the image side first in gankit's Ds), each with
    the normalisation layers that follow it before the next weight layer."""
    groups: list[list[nn.Module]] = []
    for m in d.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            groups.append([m])
        elif (
            isinstance(
                m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)
            )
            and groups
        ):
            groups[-1].append(m)
    return groups


def frozen_parameters(d: nn.Module, n: int) -> list[nn.Parameter]:
    """The parameters of D's first ``n`` weight layers (and their norms). One-line error if D has too few: its last
    layer (the score) always trains."""
    groups = weight_layers(d)
    if n >= len(groups):
        raise GankitError(
            f"train.freeze_d={n}: this D has {len(groups)} layers with weights; freeze at most "
            f"{len(groups) - 1} (its last layer must train)"
        )
    return [p for group in groups[:n] for m in group for p in m.parameters()]  # with spectral norm's
