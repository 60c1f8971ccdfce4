"""Checkpoints that resume exactly and never execute code when loaded.

A checkpoint is a folder ``checkpoints/<name>/``:
  g.safetensors, d.safetensors, [ema.safetensors]   model weights and buffers
  optim.safetensors                                 optimizer state tensors (non-tensor parts are in state.json)
  state.json                                        config, step, epoch, data position, RNG states as plain ints,
                                                    gankit version, and every file's size and SHA256
It is written into a temp folder beside the others, every file and the folder fsynced, then renamed into place;
``checkpoints/latest`` (a one-line text file) moves only after a complete save. Loading verifies every hash and
falls back to the previous good checkpoint when the newest is damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import GankitError
from .runlog import atomic_write_bytes

FORMAT = 1  # bump when the layout changes; loaders refuse formats they do not know
STEP_RE = re.compile(r"^step-(\d+)$")


def _version() -> str:
    from . import __version__

    return __version__


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------------------
# state <-> tensors + JSON


def flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                plain["state"].setdefault(str(pid), {})[k] = v
    return tensors, plain


def unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for pid, rest in plain.get("state", {}).items():
        state.setdefault(int(pid), {}).update(rest)
    return {"state": state, "param_groups": plain["param_groups"]}


def rng_state() -> dict[str, Any]:
    """Every RNG the training touches, as plain JSON values (so loading needs no pickle)."""
    np_state = np.random.get_state()
    py = random.getstate()
    state = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def module_tensors(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------------------
# save


@dataclass
class Checkpoint:
    """What :func:`load` returns: the folder, its JSON state and its tensors by file stem."""

    path: Path
    state: dict[str, Any]
    tensors: dict[str, dict[str, torch.Tensor]]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def save(
    ckpt_dir: Path,
    name: str,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    move_latest: bool = True,
) -> Path:
    """Write checkpoint ``ckpt_dir/name`` atomically. ``tensors`` maps file stems ('g', 'd', 'optim', ...) to
    tensor dicts; ``state`` is JSON. Returns the final folder."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files: dict[str, dict[str, Any]] = {}
    for stem, tdict in tensors.items():
        path = tmp / f"{stem}.safetensors"
        save_file(tdict, str(path), metadata={"format": "pt"})
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        files[path.name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    full = {"format": FORMAT, "gankit_version": _version(), **state, "files": files}
    atomic_write_bytes(tmp / "state.json", json.dumps(full).encode())
    _fsync_dir(tmp)
    final = ckpt_dir / name
    if final.exists():
        # Move the old one aside first, so a kill between the two renames still leaves one complete copy.
        old = ckpt_dir / f".old-{name}-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    if move_latest:
        atomic_write_bytes(ckpt_dir / "latest", (name + "\n").encode())
        _fsync_dir(ckpt_dir)
    return final


def prune(ckpt_dir: Path, keep_last: int, protect: set[str] = frozenset()) -> None:
    """Keep the newest ``keep_last`` step-N checkpoints (and whatever ``protect`` names); drop stale temp folders."""
    steps = sorted((p for p in ckpt_dir.iterdir() if STEP_RE.match(p.name)), key=lambda p: int(STEP_RE.match(p.name)[1]))
    for p in steps[: max(0, len(steps) - keep_last)]:
        if p.name not in protect:
            shutil.rmtree(p, ignore_errors=True)
    for p in ckpt_dir.glob(".tmp-*"):
        if not p.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------------
# load


def verify(folder: Path) -> dict[str, Any]:
    """The folder's state.json if every listed file is present with the right size and SHA256; else GankitError."""
    sj = folder / "state.json"
    if not sj.is_file():
        raise GankitError(f"checkpoint {folder} has no state.json; it is not a gankit checkpoint")
    try:
        state = json.loads(sj.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GankitError(f"checkpoint {folder}/state.json is damaged (not JSON)") from None
    if not isinstance(state, dict) or "files" not in state:
        raise GankitError(f"checkpoint {folder}/state.json is not a gankit checkpoint state")
    if state.get("format") != FORMAT:
        raise GankitError(
            f"checkpoint {folder} has format {state.get('format')} (gankit {state.get('gankit_version')}); "
            f"this gankit {_version()} reads format {FORMAT}"
        )
    for fname, meta in state["files"].items():
        p = folder / fname
        if not p.is_file():
            raise GankitError(f"checkpoint {folder} is missing {fname}")
        if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
            raise GankitError(f"checkpoint {folder}: {fname} is damaged (SHA256 mismatch)")
    return state


def read(folder: Path) -> Checkpoint:
    state = verify(folder)
    tensors = {}
    for fname in state["files"]:
        try:
            tensors[fname.removesuffix(".safetensors")] = load_file(str(folder / fname))
        except Exception as e:  # safetensors raises its own error types for malformed headers
            raise GankitError(f"checkpoint {folder}: {fname} cannot be read as safetensors ({e})") from None
    return Checkpoint(folder, state, tensors)


def candidates(ckpt_dir: Path) -> list[Path]:
    """Checkpoints newest first: the one `latest` names, then step-N by N descending, then `final`."""
    if not ckpt_dir.is_dir():
        return []
    order: list[Path] = []
    latest = ckpt_dir / "latest"
    if latest.is_file():
        name = latest.read_text().strip()
        if name and "/" not in name and (ckpt_dir / name).is_dir():
            order.append(ckpt_dir / name)
    steps = sorted((p for p in ckpt_dir.iterdir() if STEP_RE.match(p.name) and p.is_dir()),
                   key=lambda p: -int(STEP_RE.match(p.name)[1]))
    for p in [*steps, ckpt_dir / "final"]:
        if p.is_dir() and p not in order:
            order.append(p)
    # `latest` may be older than `final`/a numbered one only after a manual edit; prefer the highest step.
    return order


def load_latest(ckpt_dir: Path, say=print) -> Checkpoint:
    """The newest checkpoint that verifies; damaged ones are reported and skipped."""
    cands = candidates(ckpt_dir)
    if not cands:
        raise GankitError(f"{ckpt_dir.parent} has no checkpoints; it is not a gankit run folder (or it never saved)")
    best: Checkpoint | None = None
    errors = []
    for folder in cands:
        try:
            ck = read(folder)
        except GankitError as e:
            errors.append(str(e))
            say(f"warning: {e}; trying the previous checkpoint")
            continue
        if best is None or ck.step > best.step:
            best = ck
        break
    if best is None:
        raise GankitError(f"no readable checkpoint in {ckpt_dir}: {errors[0]}")
    return best


def load_named(run_dir: Path, which: str) -> Checkpoint:
    """'latest' (newest good), 'final', 'best' or a folder name under checkpoints/."""
    ckpt_dir = run_dir / "checkpoints"
    if which == "latest":
        return load_latest(ckpt_dir, say=lambda m: None)
    folder = ckpt_dir / which
    if not folder.is_dir():
        raise GankitError(f"{run_dir} has no checkpoint '{which}'; available: {', '.join(p.name for p in candidates(ckpt_dir)) or 'none'}")
    return read(folder)


def load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str, ck: Checkpoint) -> None:
    """Load weights, turning a shape/key mismatch into an error that names both models."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        saved = ck.state.get("config", {}).get("model", {})
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise GankitError(
            f"checkpoint {ck.path} holds a different {what} (model '{saved.get('name')}', z_dim {saved.get('z_dim')}, "
            f"gankit {ck.state.get('gankit_version')}) than the one being built: {detail[:160]}"
        ) from None
