"""Checkpoints that resume exactly and never execute code when loaded.

A checkpoint is a folder ``checkpoints/<name>/``:
  g.safetensors, d.safetensors, [ema.safetensors]   model weights and buffers
  optim_g.safetensors, optim_d.safetensors          optimizer state tensors (non-tensor parts are in state.json)
  state.json                                        config, step, epoch, data position, RNG states as plain ints,
                                                    gankit version, and every file's size and SHA256
It is written into a temp folder beside the others, every file and the folder fsynced, then renamed into place;
``checkpoints/latest`` (a one-line text file) moves only after a complete save. Loading verifies every hash and
falls back to the previous good checkpoint when the newest is damaged. Re-saving an existing name moves the old copy
to ``.old-<name>-<pid>`` first; a kill between the two renames leaves that copy, which stands in for ``<name>`` until
the next save's :func:`tidy` puts it back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from ..core.errors import DivergedError, GankitError
from ..core.io import atomic_write_bytes, fsync_dir, part_file_pid, pid_alive, sha256_file
from .parts import all_finite

FORMAT = 1  # bump when the layout changes; loaders refuse formats they do not know
STEP_RE = re.compile(r"^step-(\d+)$")
OLD_RE = re.compile(r"^\.old-(.+)-(\d+)$")  # the previous copy of a checkpoint while save() replaces it
TMP_RE = re.compile(r"^\.tmp-.+-(\d+)$")  # a checkpoint being written by process N
FILE_RE = re.compile(r"^[A-Za-z0-9_.-]+\.safetensors$")  # what state.json may list: plain names inside the folder


def _version() -> str:
    from .. import __version__

    return __version__


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file. Python's own write (not safetensors' Rust writer) so that a full disk surfaces as
    an OSError with errno ENOSPC."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


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


def match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each loaded per-parameter state tensor (Adam's moments) its parameter's memory layout. Checkpoints store
    them contiguous; a channels_last parameter with contiguous moments is slower, and Adam's fused CPU kernel
    (torch 2.13) pairs their elements wrongly."""
    for p, st in opt.state.items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


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
    tensor dicts; ``state`` is JSON. Returns the final folder.

    A failed write (disk full, permissions) removes the partial folder and raises GankitError naming the file; the
    existing checkpoints and ``latest`` are untouched."""
    for stem, tdict in tensors.items():
        for key, t in tdict.items():
            if not all_finite(t):
                # A checkpoint is what a rollback or a resume trusts; never store a diverged model as one.
                raise DivergedError(
                    f"not saving checkpoint {name}: {stem} tensor '{key}' holds NaN or Inf; the "
                    f"earlier checkpoints in {ckpt_dir} are untouched"
                )
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / f".tmp-{name}-{os.getpid()}"
    path = tmp
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        files: dict[str, dict[str, Any]] = {}
        for stem, tdict in tensors.items():
            path = tmp / f"{stem}.safetensors"
            data = safetensors_bytes(tdict, metadata={"format": "pt"})
            _write_file(path, data)
            files[path.name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        full = {"format": FORMAT, "gankit_version": _version(), **state, "files": files}
        path = tmp / "state.json"
        atomic_write_bytes(path, json.dumps(full).encode())
        fsync_dir(tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        shown = ckpt_dir / name / path.name if path != tmp else ckpt_dir / name  # the name the user will look for
        disk = " (disk full: free some space or point --out at another disk)" if e.errno == errno.ENOSPC else ""
        kept = f"; the earlier checkpoint {prev} is intact" if (prev := latest_name(ckpt_dir)) else ""
        raise GankitError(f"cannot write checkpoint file {shown}: {e.strerror or e}{disk}{kept}") from None
    return _install(ckpt_dir, tmp, name, move_latest)


def _install(ckpt_dir: Path, tmp: Path, name: str, move_latest: bool) -> Path:
    """Rename the complete temp folder ``tmp`` to checkpoint ``name``; then point ``latest`` at it if asked."""
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
    fsync_dir(ckpt_dir)
    if move_latest:
        atomic_write_bytes(ckpt_dir / "latest", (name + "\n").encode())
        fsync_dir(ckpt_dir)
    return final


def alias(
    ckpt_dir: Path, src: str, name: str, move_latest: bool = True, hashes: bool = True, copy: bool = False
) -> Path:
    """Make checkpoint ``name`` hold exactly what ``src`` holds, without serialising the state again. By default by
    hard links (no second copy on disk: ``best`` following a numbered checkpoint costs nothing); ``copy=True`` writes
    independent files, verified against their hashes, so that damage to one name's files (a disk error, a stray
    write into a file) cannot damage the other: ``final`` is such a copy of the last numbered checkpoint. Falls back
    to copying where the file system has no hard links. Atomic like :func:`save`: a temp folder renamed into place.
    ``hashes=False`` checks the source's files by size only (for a source this process has just written and hashed)."""
    source = ckpt_dir / src
    verify(source, hashes)
    tmp = ckpt_dir / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for f in source.iterdir():
            if copy:
                _write_file(tmp / f.name, f.read_bytes())
                continue
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
        fsync_dir(tmp)
        if copy:
            verify(tmp, hashes=True)  # the copy is the good one only if it matches the hashes the save recorded
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GankitError(f"cannot write checkpoint {ckpt_dir / name}: {e.strerror or e}") from None
    except GankitError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _install(ckpt_dir, tmp, name, move_latest)


def latest_name(ckpt_dir: Path) -> str | None:
    """The checkpoint name ``checkpoints/latest`` holds, if it is a plain name."""
    try:
        name = (ckpt_dir / "latest").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if name and "/" not in name and name not in (".", "..") else None


def tidy(ckpt_dir: Path) -> None:
    """Clean up after a killed save: put back a checkpoint that was moved aside (a kill between save()'s two
    renames), drop leftover copies and temp folders/files of processes that are gone. Files of a live process
    (this one, or another that holds them right now) are never touched."""

    def gone(pid: int | None) -> bool:
        return pid is not None and pid != os.getpid() and not pid_alive(pid)

    for p in sorted(ckpt_dir.glob(".old-*")):
        m = OLD_RE.match(p.name)
        if m is None or not gone(int(m[2])):
            continue
        if (ckpt_dir / m[1]).exists():
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.replace(p, ckpt_dir / m[1])
    for p in ckpt_dir.glob(".tmp-*"):
        m = TMP_RE.match(p.name)
        if m is not None and gone(int(m[1])):
            shutil.rmtree(p, ignore_errors=True)
    for p in ckpt_dir.glob(".*.part"):
        if gone(part_file_pid(p.name)):
            p.unlink(missing_ok=True)


def prune(ckpt_dir: Path, keep_last: int, protect: set[str] = frozenset()) -> None:
    """Keep the newest ``keep_last`` step-N checkpoints, the one ``latest`` names and whatever ``protect`` names;
    clean up what killed saves left behind."""
    tidy(ckpt_dir)
    protect = {*protect, latest_name(ckpt_dir)}  # after a resume from an older checkpoint, `latest` is not the newest N
    steps = sorted(
        (p for p in ckpt_dir.iterdir() if STEP_RE.match(p.name)), key=lambda p: int(STEP_RE.match(p.name)[1])
    )
    for p in steps[: max(0, len(steps) - keep_last)]:
        if p.name not in protect:
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------------
# load


def verify(folder: Path, hashes: bool = True) -> dict[str, Any]:
    """The folder's state.json if every listed file is present with the right size and SHA256 (with ``hashes``);
    else GankitError."""
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
            f"checkpoint {folder} has format {state.get('format')!r} (written by gankit {state.get('gankit_version')}); "
            f"this gankit {_version()} reads format {FORMAT}: use the gankit version that wrote it"
        )
    files = state["files"]
    if (
        not isinstance(files, dict)
        or not isinstance(state.get("step"), int)
        or not isinstance(state.get("config"), dict)
    ):
        raise GankitError(f"checkpoint {folder}/state.json is damaged (bad 'files', 'step' or 'config')")
    for fname, meta in files.items():
        # Only plain file names inside the folder: a crafted state.json must not point the loader elsewhere.
        if not FILE_RE.match(fname) or not isinstance(meta, dict):
            raise GankitError(f"checkpoint {folder}/state.json lists {fname!r}; it is damaged or not from gankit")
        p = folder / fname
        if not p.is_file():
            raise GankitError(f"checkpoint {folder} is missing {fname}")
        if p.stat().st_size != meta.get("size") or (hashes and sha256_file(p) != meta.get("sha256")):
            raise GankitError(f"checkpoint {folder}: {fname} is damaged (size or SHA256 differs from state.json)")
    return state


class Vanished(GankitError):
    """A checkpoint folder that was removed or replaced while it was being read: a running `gankit train` pruned it
    or saved it anew. Not damage: a reader lists the checkpoints again."""


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = folder.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def read(folder: Path) -> Checkpoint:
    """The checkpoint in ``folder``, every file verified. GankitError when it is damaged; :class:`Vanished` when a
    training run removed or replaced the folder meanwhile (a replaced one could have mixed two saves' files)."""
    before = _identity(folder)
    if before is None:
        raise Vanished(f"checkpoint {folder} was removed before it could be read")
    try:
        state = verify(folder)
        tensors = {}
        for fname in state["files"]:
            try:
                tensors[fname.removesuffix(".safetensors")] = load_file(str(folder / fname))
            except FileNotFoundError:
                raise
            except Exception as e:  # safetensors raises its own error types for malformed headers
                raise GankitError(f"checkpoint {folder}: {fname} cannot be read as safetensors ({e})") from None
    except (GankitError, FileNotFoundError) as e:
        if _identity(folder) != before:  # pruned or saved anew mid-read: what looked damaged may not be
            raise Vanished(f"checkpoint {folder} was removed or replaced while being read") from None
        if isinstance(e, FileNotFoundError):
            raise GankitError(
                f"checkpoint {folder}: {Path(e.filename or '?').name} disappeared while being read"
            ) from None
        raise
    if _identity(folder) != before:
        raise Vanished(f"checkpoint {folder} was replaced while being read")
    return Checkpoint(folder, state, tensors)


def folders(ckpt_dir: Path) -> dict[str, Path]:
    """Checkpoint name -> folder. A ``.old-<name>-<pid>`` copy stands in for a missing ``<name>``: a kill between
    save()'s two renames leaves the previous complete copy there."""
    if not ckpt_dir.is_dir():
        return {}
    found = {p.name: p for p in ckpt_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for p in sorted(ckpt_dir.glob(".old-*")):
        m = OLD_RE.match(p.name)
        if m is not None and p.is_dir() and m[1] not in found:
            found[m[1]] = p
    return found


def candidates(ckpt_dir: Path) -> list[Path]:
    """Checkpoints to try, newest first: the one `latest` names (it moves only after a complete save), then step-N
    by N descending, then `final`."""
    found = folders(ckpt_dir)
    name = latest_name(ckpt_dir)
    order = [found[name]] if name in found else []
    steps = sorted((n for n in found if STEP_RE.match(n)), key=lambda n: -int(STEP_RE.match(n)[1]))
    for n in [*steps, "final"]:
        if n in found and found[n] not in order:
            order.append(found[n])
    return order


def load_latest(ckpt_dir: Path, say=print) -> Checkpoint:
    """The newest checkpoint that verifies. Damaged ones are reported (``say``) and skipped, and when one was skipped
    a last line says which checkpoint is used instead. A checkpoint that a running training removes while it is read
    (pruned after a newer save) is no damage: the folder is listed again and the newest one now there is read."""
    if not candidates(ckpt_dir):
        raise GankitError(
            f"{ckpt_dir.parent} has no checkpoints (it was stopped before its first save); delete it and train again"
        )
    errors: list[str] = []
    tried: set[Path] = set()
    replaced: dict[Path, int] = {}
    for _ in range(1000):  # each pass reads a folder not tried before (or one saved anew); a bound no run reaches
        fresh = [c for c in candidates(ckpt_dir) if c not in tried]
        if not fresh:
            break
        folder = fresh[0]
        tried.add(folder)
        try:
            ck = read(folder)
        except Vanished:
            replaced[folder] = replaced.get(folder, 0) + 1
            if replaced[folder] < 3:  # saved anew under the same name: read the new one (pruned: it is not listed)
                tried.discard(folder)
            continue
        except GankitError as e:
            errors.append(str(e))
            say(f"warning: {e}; trying the previous checkpoint")
            continue
        if errors:
            untrained = " - an untrained model" if ck.step == 0 else ""
            say(
                f"warning: using checkpoint {folder.name} (step {ck.step}{untrained}) of {ckpt_dir}: the "
                f"{len(errors)} tried before it are damaged"
            )
        return ck
    if not errors:
        raise GankitError(f"{ckpt_dir.parent} has no checkpoints left (they were removed while being read); try again")
    raise GankitError(f"no readable checkpoint in {ckpt_dir} ({len(errors)} tried); the newest: {errors[0]}")


def warn(msg: str) -> None:
    """How loading for inference (sample, eval, export, gankit.load) reports a skipped checkpoint: stderr."""
    print(f"gankit: {msg}", file=sys.stderr, flush=True)


def load_named(run_dir: Path, which: str, say=warn) -> Checkpoint:
    """'latest' (newest good; ``say`` reports what was skipped and what is used), 'final', 'best' or a folder name
    under checkpoints/."""
    ckpt_dir = run_dir / "checkpoints"
    if which == "latest":
        return load_latest(ckpt_dir, say=say)
    found = folders(ckpt_dir)
    if which not in found:
        raise GankitError(f"{run_dir} has no checkpoint '{which}'; available: {', '.join(sorted(found)) or 'none'}")
    try:
        return read(found[which])
    except Vanished:  # replaced while being read (`best` moves aside for a moment when it is renewed)
        again = folders(ckpt_dir)
        if which not in again:
            raise GankitError(f"{run_dir}: checkpoint '{which}' was removed while being read") from None
        return read(again[which])


def load_module(
    module: torch.nn.Module,
    tensors: dict[str, torch.Tensor],
    what: str,
    ck: Checkpoint,
    built: dict[str, Any] | None = None,
) -> None:
    """Load weights, turning a shape/key mismatch into an error that names both models. ``built``: the model section
    of the config the module was built from, so the message can say which settings differ."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        saved = ck.state.get("config", {}).get("model", {})
        lines = str(e).strip().splitlines()
        detail = (lines[1] if len(lines) > 1 else lines[0]).strip()[:160]
        diff = [f"{k} {saved[k]!r} vs {built[k]!r}" for k in built or {} if k in saved and saved[k] != built[k]]
        if diff:
            detail = f"model.{', model.'.join(diff)} (checkpoint vs this config)"
        ours = (
            f"this config builds '{built.get('name')}' (z_dim {built.get('z_dim')})" if built else "the one built here"
        )
        raise GankitError(
            f"checkpoint {ck.path} holds a different {what}: saved by gankit {ck.state.get('gankit_version')} for model "
            f"'{saved.get('name')}' (z_dim {saved.get('z_dim')}), {ours}: {detail}"
        ) from None


# ---------------------------------------------------------------------------------------------------------------------
# a training run's checkpoints


def _check_groups(ck: Checkpoint, name: str, sd: dict[str, Any]) -> None:
    groups = sd.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise GankitError(f"checkpoint {ck.path}/state.json is damaged or incomplete (optimizer '{name}' param groups)")


class Checkpointable(Protocol):
    """What a checkpoint holds of a task (gankit.tasks.Task satisfies it)."""

    @property
    def modules(self) -> dict[str, torch.nn.Module]: ...

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def settle(self) -> None: ...  # bring tensors derived from others up to date before they are saved

    def extra_state(self) -> dict[str, Any]: ...

    def load_extra_state(self, state: dict[str, Any]) -> None: ...


class Resumable(Protocol):
    """The data position (gankit.data.Batcher satisfies it)."""

    @property
    def progress(self) -> float: ...

    def state_dict(self) -> dict[str, int]: ...

    def load_state_dict(self, state: dict[str, int]) -> None: ...


class Checkpointer:
    """Saves and restores everything a run needs to continue exactly: the task's modules, optimizers and extra
    state, the data position, every RNG, and the loop's state. Writes nothing on ranks other than 0."""

    def __init__(
        self,
        ckpt_dir: Path,
        task: Checkpointable,
        batcher: Resumable,
        config: dict[str, Any],
        meta: dict[str, Any],
        keep_last: int,
        active: bool = True,
    ) -> None:
        self.dir, self.task, self.batcher = ckpt_dir, task, batcher
        self.config, self.meta, self.keep_last, self.active = config, meta, keep_last, active
        self.last_written: str | None = None  # the checkpoint this process wrote (and hashed) last

    def save(self, name: str, loop_state: dict[str, Any], move_latest: bool = True) -> None:
        if not self.active:
            return
        self.task.settle()
        tensors = {k: module_tensors(m) for k, m in self.task.modules.items()}
        optim_plain = {}
        for k, opt in self.task.optimizers.items():
            t, plain = flatten_optimizer(opt.state_dict())
            tensors[f"optim_{k}"] = t
            optim_plain[k] = plain
        state = {
            "config": self.config,
            "meta": self.meta,
            "step": loop_state["step"],
            "epoch": self.batcher.progress,
            "data": self.batcher.state_dict(),
            "rng": rng_state(),
            "optim": optim_plain,
            **{k: v for k, v in loop_state.items() if k != "step"},
        }
        extra = self.task.extra_state()
        if extra:
            state["task"] = extra
        save(self.dir, name, tensors, state, move_latest=move_latest)
        self.last_written = name
        prune(self.dir, self.keep_last, protect={"final", "best"})

    def alias(self, name: str, src: str, move_latest: bool = True, copy: bool = False) -> None:
        """Checkpoint ``name`` as a twin of ``src`` (saved a moment ago at the same step): hard links, or with
        ``copy`` independent files (see :func:`alias`)."""
        if self.active:
            alias(self.dir, src, name, move_latest, hashes=src != self.last_written, copy=copy)

    def latest(self, say: Any = print) -> Checkpoint:
        return load_latest(self.dir, say=say)

    def _check_optimizer(self, ck: Checkpoint) -> None:
        """The optimizer named in the checkpoint is the one this config builds: checked before anything is loaded,
        so an edited optim.name is a one-line error before training starts, not a KeyError inside the first step."""
        saved_cfg = ck.state.get("config")
        saved_optim = saved_cfg.get("optim") if isinstance(saved_cfg, dict) else None
        saved = saved_optim.get("name") if isinstance(saved_optim, dict) else None
        ours = self.config.get("optim", {}).get("name")
        if isinstance(saved, str) and saved != ours:
            raise GankitError(
                f"checkpoint {ck.path} was trained with optim.name={saved!r} but the run's config.yaml now says "
                f"{ours!r}; a run resumes with the optimizer it was trained with: set optim.name back to {saved!r} in "
                f"{self.dir.parent / 'config.yaml'} (or start a new run from that config)"
            )

    def restore(self, ck: Checkpoint, built: dict[str, Any] | None = None) -> None:
        """Put models, optimizers, task state, data position and RNGs back exactly as they were at ``ck``.
        ``built``: the model section of the config the modules were built from (for mismatch messages)."""
        for name, module in self.task.modules.items():
            if name not in ck.tensors:
                raise GankitError(
                    f"checkpoint {ck.path} has no '{name}' weights; it was saved by a different model/config"
                )
            load_module(module, ck.tensors[name], name, ck, built)
        self._check_optimizer(ck)
        try:
            for name, opt in self.task.optimizers.items():
                sd = unflatten_optimizer(ck.tensors.get(f"optim_{name}", {}), ck.state["optim"][name])
                _check_groups(ck, name, sd)
                try:
                    opt.load_state_dict(sd)
                except (ValueError, KeyError) as e:
                    raise GankitError(
                        f"checkpoint {ck.path}: optimizer '{name}' does not match this config ({e}); "
                        f"a run resumes with the optimizer it was trained with"
                    ) from None
                match_layouts(opt)
            self.task.load_extra_state(ck.state.get("task", {}))
            self.batcher.load_state_dict(ck.state["data"])
            set_rng_state(ck.state["rng"])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
            # state.json is not hashed (it holds the hashes); a damaged or hand-edited one ends up here.
            raise GankitError(
                f"checkpoint {ck.path}/state.json is damaged or incomplete ({type(e).__name__}: {e})"
            ) from None
