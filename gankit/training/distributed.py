"""Everything gankit does with torch.distributed, in one place: the loop and the tasks call these functions and never
``torch.distributed`` itself. With one process (no ``torchrun``, or ``WORLD_SIZE=1``) every function is a cheap no-op,
so the single-process path is unchanged.

Launch: ``torchrun --nproc_per_node N -m gankit train ...`` (or ``gankit train --nproc N``, which runs
``torch.distributed.run``). torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; :func:`start` joins the group: NCCL on
CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU, with a collective timeout (``train.dist_timeout``
minutes) so that a rank that died or hangs cannot block the others for ever.

**Why explicit gradient all-reduce, not DDP wrappers.** A GAN step runs D several times per update (real, fake,
the gradient penalty's interpolates, lazy R1 with ``create_graph=True``, then D again inside G's loss), and G's
update must not touch D's gradients. DDP hooks fire once per backward per parameter and assume one forward per
backward; with D called several times per step it needs ``find_unused_parameters`` or static-graph tricks, and its
buffer broadcast at each forward modifies BatchNorm buffers in place between D's forward passes (the "modified by
an inplace operation" error of pytorch #22095). So, as stylegan2-ada does, each process runs the unchanged
single-process step on its shard, and after each ``backward()`` the task calls :func:`sync_grads`: one flat
all-reduce of that module's gradients. Double backward (GP, R1) needs nothing special: by the time ``backward()``
returns, the gradients are plain tensors.

**Loss averaging.** ``train.batch_size`` is the global batch B. Rank r gets ``shard_indices`` of every global
batch: contiguous parts, the first ``B % W`` ranks one image more (sizes n_r, sum B). Each rank's loss is a mean over
its n_r images, so the global mean is ``sum_r (n_r / B) * loss_r``: :func:`sync_grads` multiplies the local
gradients by ``n_r / B`` and SUMS across ranks. With per-sample losses (all of gankit's) and no cross-sample layer
in training mode, N processes compute the gradient of one process with the same global batch, up to the order of
the float additions. BatchNorm in training mode normalises over the local shard (as in any DDP run): use
``train.sync_bn=true`` on CUDA (SyncBatchNorm normalises over the global batch); on CPU/gloo PyTorch has no
SyncBatchNorm, which is an error rather than a silent fallback.

**Identical state on every rank.** Weights start identical (same seed, then broadcast from rank 0) and stay so
because every rank applies the same summed gradients. Floating buffers (BatchNorm running statistics, also those of
the EMA copy of G) are averaged after every step with the same shard weights (:func:`sync_buffers`): the running
mean is then exactly what one process with the global batch computes. The EMA follows identical weights, so it is
identical. At every checkpoint :func:`check_same` compares a checksum of every parameter and buffer across ranks;
a mismatch is a GankitError naming the tensor.

**Randomness.** The latent noise of a step is drawn as the whole global batch from a generator seeded by the run seed
(the same on all ranks) and each rank keeps its shard (:func:`shard`), so ranks never share a noise vector and N
processes use the noise one process would. The augmentation of D's inputs does the same (its draws are made for
the global batch, each rank applies its rows; ADA's statistic is all-reduced before p moves). Every other random draw (instance noise, the GP's mixing weights,
dropout) uses the process's global RNG: rank 0 keeps the run's stream; rank r > 0 reseeds from (seed, rank, step)
at every checkpoint (:func:`reseed`). A checkpoint holds rank 0's RNG state, so a resume on the same N is exact and a
resume on another M still gives every rank its own stream.

**Stopping together.** Once per step :func:`agree` all-reduces the step's logged scalars (averaged with the shard
weights: the logged loss is the global batch's) and the signal flags in one small tensor. A NaN on any rank is then a
NaN on all, and a SIGINT/SIGTERM seen by any rank stops all ranks after the same step; rank 0 saves.
"""

from __future__ import annotations

import json
import os
import random
import signal
import zlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..core.errors import GankitError

T = TypeVar("T")


class PeerFailed(GankitError):
    """Another process of the run failed or timed out; its own message says why."""

    exit_code = 1


def launched() -> bool:
    """Started by torchrun with more than one process in the group."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def restarted() -> bool:
    """torchrun restarted the group after a worker failed (``--max-restarts``): the run should resume."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def start(device: torch.device, timeout_minutes: float) -> torch.device:
    """Join the process group torchrun set up (no-op without one) and return this process's device:
    ``cuda:LOCAL_RANK`` on CUDA (NCCL), the CPU otherwise (gloo)."""
    if not launched() or active():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise GankitError(
                f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} GPUs; "
                f"use --nproc {torch.cuda.device_count()} or fewer"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise GankitError(f"train.device={device.type}: multi-process training runs on cuda (NCCL) or cpu (gloo)")
    try:
        timeout = timedelta(minutes=timeout_minutes)
        store, r, w = next(dist.rendezvous("env://", timeout=timeout))
        # After a restart torchrun's store still holds the failed generation's addresses under the same keys; a
        # prefix per generation keeps the new processes from dialling the dead ones.
        store = dist.PrefixStore(f"gankit-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        dist.init_process_group(backend, store=store, rank=r, world_size=w, timeout=timeout)
    except (RuntimeError, ValueError) as e:
        raise GankitError(f"cannot join the process group ({backend}): {e}".splitlines()[0]) from None
    return device


def stop() -> None:
    """Leave the process group (after success or an error: a failed rank must not leave the others waiting)."""
    if active():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group cannot be torn down cleanly; the process is ending
            pass


def _collective(what: str, fn: Callable[[], T]) -> T:
    """Run a collective; a peer that died or timed out becomes one line instead of a gloo/NCCL traceback."""
    try:
        return fn()
    except (RuntimeError, dist.DistBackendError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise PeerFailed(
            f"rank {rank()}: another process of this run failed or timed out during {what} ({first}); "
            f"see the first error above"
        ) from None


def barrier() -> None:
    if active():
        _collective("barrier", dist.barrier)


def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """In place, and returned: the sum (or 'max') over ranks."""
    if active():
        red = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
        _collective(f"all_reduce({op})", lambda: dist.all_reduce(t, op=red))
    return t


def share(global_batch: int) -> float:
    """This rank's fraction of a global batch, n_r / B (the weight of its loss in the global mean)."""
    w = world_size()
    n = global_batch // w + (1 if rank() < global_batch % w else 0)
    return n / global_batch


def shard_start(global_batch: int) -> int:
    """Index of this rank's first row in a global batch (the split of ``shard_indices`` and :func:`shard`)."""
    w, r = world_size(), rank()
    return r * (global_batch // w) + min(r, global_batch % w)


def shard(t: Tensor) -> Tensor:
    """This rank's rows of a tensor that holds a whole global batch (the split of ``shard_indices``)."""
    if not active():
        return t
    return torch.tensor_split(t, world_size())[rank()]


def unshard(t: Tensor, global_batch: int) -> Tensor:
    """The inverse of :func:`shard`: every rank's rows ``t`` (n_r, ...) put together into the whole global batch
    (global_batch, ...), on every rank. An all-gather done as one all-reduce of zero-padded copies: each row is
    added to zeros only, so it arrives bit for bit (a -0.0 arrives as 0.0)."""
    if not active():
        return t
    full = torch.zeros((global_batch, *t.shape[1:]), dtype=t.dtype, device=t.device)
    start = shard_start(global_batch)
    full[start : start + t.shape[0]] = t
    return all_reduce(full)


def next_shard(batcher: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """This rank's part of the next global batch: ``batcher.next_indices()`` (the same on every rank), cut by
    :func:`gankit.data.shard_indices`, and only those rows gathered. Returns what ``Batcher.next()`` returns."""
    if not active():
        return batcher.next()
    from ..data import shard_indices

    return batcher.gather(shard_indices(batcher.next_indices(), rank(), world_size()))


def from_main(fn: Callable[[], T], what: str = "a value from rank 0") -> T:
    """``fn()`` run on rank 0 only, its result (or its GankitError) given to every rank. For decisions that must
    agree (the run folder, the checkpoint to resume, validation scores) and for files only rank 0 reads."""
    if not active():
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except GankitError as e:
            box[0] = ("err", e)
    _collective(f"broadcast of {what}", lambda: dist.broadcast_object_list(box, src=0))
    kind, value = box[0]
    if kind == "err":
        raise value
    return value


def main_first(fn: Callable[[], T]) -> T:
    """``fn()`` on every rank, local rank 0 of each machine first (a data download or cache build is done once)."""
    if not active():
        return fn()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local != 0:
        barrier()
    try:
        return fn()
    finally:
        if local == 0:
            barrier()


def _flat(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1).float() for t in tensors]) if tensors else torch.zeros(0)


def _unflat(flat: Tensor, tensors: list[Tensor]) -> None:
    i = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[i : i + n].view_as(t).to(t.dtype))
        i += n


def sync_grads(module: nn.Module, weight: float) -> None:
    """After ``backward()``: every gradient of ``module`` becomes ``sum_r weight_r * grad_r`` (weight = n_r / B), the
    gradient of the mean loss over the global batch. One flat all-reduce per call."""
    if not active():
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = _flat(grads).mul_(weight)
    all_reduce(flat)
    _unflat(flat, grads)


def sync_buffers(modules: dict[str, nn.Module], weight: float) -> None:
    """Average the floating buffers (BatchNorm running statistics) of ``modules`` with the shard weights, so every
    rank holds the same ones. Integer buffers (num_batches_tracked) already agree."""
    if not active():
        return
    bufs = [b for m in modules.values() for b in m.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = _flat(bufs).mul_(weight)
    all_reduce(flat)
    _unflat(flat, bufs)


def broadcast_modules(modules: dict[str, nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank (at start and after a restore)."""
    if not active():
        return
    for m in modules.values():
        for t in m.state_dict().values():
            _collective("broadcast of the weights", lambda t=t: dist.broadcast(t, src=0))


def checksum(t: Tensor) -> int:
    """CRC32 of the tensor's bytes (CPU copy)."""
    return zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def check_same(modules: dict[str, nn.Module], where: str, state: dict[str, Any] | None = None) -> None:
    """Every rank holds bit-identical parameters and buffers, and the same JSON ``state`` (the task's extra state:
    noise generator, ADA's p and generator, ...), or GankitError naming the first tensor or state key that differs."""
    if not active():
        return
    names = [f"tensor '{mn}.{k}'" for mn, m in modules.items() for k in m.state_dict()]
    sums = [checksum(t) for m in modules.values() for t in m.state_dict().values()]
    for k, v in sorted((state or {}).items()):
        names.append(f"task state '{k}'")
        sums.append(zlib.crc32(json.dumps(v, sort_keys=True).encode()))
    sums = torch.tensor(sums, dtype=torch.int64)
    if sums.device.type != "cpu" or dist.get_backend() == "nccl":
        sums = sums.to(torch.device("cuda", torch.cuda.current_device()))
    got = [torch.zeros_like(sums) for _ in range(world_size())]
    _collective("the checkpoint consistency check", lambda: dist.all_gather(got, sums))
    for r, other in enumerate(got):
        diff = (other.cpu() != sums.cpu()).nonzero()
        if len(diff):
            raise GankitError(
                f"at {where}: {names[int(diff[0])]} differs between rank {rank()} and rank {r} "
                f"(the processes of this run diverged; report this with the config)"
            )


def agree(outputs: dict[str, Tensor], signum: int | None, global_batch: int) -> tuple[dict[str, Tensor], int | None]:
    """One all-reduce per step: the step's scalars averaged over the global batch (a NaN on one rank is a NaN on
    all) and the stop signal any rank received (SIGTERM wins over SIGINT). Returns (outputs, signal or None)."""
    if not active():
        return outputs, signum
    keys = sorted(outputs)
    w = share(global_batch)
    dev = outputs[keys[0]].device if keys else torch.device("cpu")
    if dist.get_backend() == "nccl":
        dev = torch.device("cuda", torch.cuda.current_device())
    # The flags are made on the device (a fill, not a host-to-device copy, which would wait for the device).
    flags = torch.zeros(2, device=dev)
    if signum in (signal.SIGTERM, signal.SIGINT):
        flags[0 if signum == signal.SIGTERM else 1].fill_(1.0)
    vec = torch.cat(
        [
            torch.stack([outputs[k].detach().float().reshape(()).to(dev) * w for k in keys])
            if keys
            else torch.zeros(0, device=dev),
            flags,
        ]
    )
    all_reduce(vec)
    host = vec.cpu()
    term, intr = float(host[-2]), float(host[-1])
    agreed = signal.SIGTERM if term > 0 else signal.SIGINT if intr > 0 else None
    return {k: host[i] for i, k in enumerate(keys)}, agreed


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (a wall-clock budget ends on all ranks at the same step)."""
    if not active():
        return flag
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return bool(all_reduce(torch.full((1,), float(flag), device=dev), "max").item() > 0)


def rank_seed(seed: int, step: int) -> int:
    """The seed of rank r > 0's global RNG from step ``step`` on (rank 0 keeps the run's own stream)."""
    return (seed * 1_000_003 + rank() * 7919 + step * 104_729) % 2**63


def reseed(seed: int, step: int) -> None:
    """On ranks > 0: reseed every global RNG from (seed, rank, step). Called at every checkpoint and after every
    restore, so a resume on the same number of processes continues every rank's stream exactly."""
    if rank() == 0:
        return
    s = rank_seed(seed, step)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def convert_sync_bn(modules: dict[str, nn.Module], device: torch.device) -> None:
    """train.sync_bn: BatchNorm -> SyncBatchNorm (statistics over the global batch) in the trained modules."""
    if device.type != "cuda":
        raise GankitError(
            "train.sync_bn=true needs CUDA (SyncBatchNorm runs on NCCL; PyTorch has none for gloo/CPU); "
            "set train.sync_bn=false"
        )
    for m in modules.values():
        nn.SyncBatchNorm.convert_sync_batchnorm(m)  # children are replaced in place; the Parameters are kept


__all__ = [
    "PeerFailed",
    "active",
    "agree",
    "all_reduce",
    "any_rank",
    "barrier",
    "broadcast_modules",
    "check_same",
    "convert_sync_bn",
    "from_main",
    "is_main",
    "launched",
    "main_first",
    "next_shard",
    "rank",
    "reseed",
    "restarted",
    "share",
    "shard",
    "shard_start",
    "start",
    "stop",
    "sync_buffers",
    "sync_grads",
    "unshard",
    "world_size",
]
