"""`gankit sample` and `gankit interpolate`: pictures and arrays from a trained GAN."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import GankitError
from ..core.io import refuse_existing
from .common import add_force_flag, make_parent, out_file


def _generator(args: argparse.Namespace):  # -> TrainedGenerator
    from ..tasks import TrainedGenerator, load

    return load(args.run, args.checkpoint, want=TrainedGenerator)


def cmd_sample(args: argparse.Namespace) -> int:
    from ..data.base import to_uint8
    from ..viz import save_grid

    if args.n <= 0:
        raise GankitError(f"--n must be > 0, got {args.n}")
    out = out_file(args.out, (".png", ".npy"), args.force)
    gen = _generator(args)
    npy = out.suffix.lower() == ".npy"
    # a conditional G's classes go beside the array (row i of one is the class of image i of the other): without
    # --class they follow the training data's proportions, which a script reading the array cannot know
    labels_out = labels_file(out) if npy and gen.num_classes else None
    if npy:
        # X.labels.npy belongs to X.npy: an old one (of an earlier conditional sample) must not outlive the array it
        # describes, so it is replaced or removed with it - and, like X.npy, only with --force
        refuse_existing([labels_file(out)], args.force)
    labels = gen.labels(args.n, args.class_id)
    x = gen.generate(gen.noise(args.n, args.seed), labels)
    make_parent(out)
    if npy:
        arr = to_uint8(x).permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C) uint8
        with set_aside(labels_file(out)) as old_labels:  # an old X.labels.npy comes back only if X.npy stays old
            save_npy(out, arr)
            old_labels.clear()  # X.npy is new: its old classes must not come back, whatever happens next
            if labels_out is not None:
                save_npy(labels_out, labels.numpy())
    else:
        save_grid(x, out)
    print(
        f"wrote {args.n} samples from {gen.run_dir} (step {gen.step}) to {out}"
        + (f", their classes to {labels_out}" if labels_out is not None else "")
    )
    return 0


def labels_file(out: Path) -> Path:
    """Where ``gankit sample --out X.npy`` puts a conditional G's classes: X.labels.npy."""
    return out.with_name(out.stem + ".labels.npy")


@contextmanager
def set_aside(path: Path) -> Iterator[list[Path]]:
    """Move ``path`` (if it exists) out of the way, under a temp name of :func:`gankit.core.io.atomic_writer`'s
    pattern (so a kill leaves nothing that a later write does not remove). Yields a list holding the moved copy; if
    the block fails while the list still holds it and no new ``path`` was written, it is put back. Otherwise (the
    block ended, or emptied the list) it is deleted."""
    import os
    import secrets

    held: list[Path] = []
    if path.exists() or path.is_symlink():
        held.append(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"))
        os.replace(path, held[0])
    moved = list(held)
    try:
        yield held
    except BaseException:
        if held and not path.exists():
            os.replace(held[0], path)
        raise
    finally:
        for p in moved:
            p.unlink(missing_ok=True)


def save_npy(path: Path, arr) -> None:
    import io

    import numpy as np

    from ..core.io import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())


def cmd_interpolate(args: argparse.Namespace) -> int:
    import torch

    from ..viz import lerp, save_grid, slerp

    if not 2 <= args.steps <= 256:
        raise GankitError(f"--steps must be 2..256, got {args.steps}")
    if not 1 <= args.rows <= 256:
        raise GankitError(f"--rows must be 1..256, got {args.rows}")
    out = out_file(args.out, (".png",), args.force)
    gen = _generator(args)
    z = gen.noise(2 * args.rows, args.seed)
    t = torch.linspace(0, 1, args.steps)
    path = slerp if args.slerp else lerp
    zs = torch.cat([path(z[2 * r : 2 * r + 1], z[2 * r + 1 : 2 * r + 2], t) for r in range(args.rows)])
    labels = None
    if gen.num_classes:
        labels = (torch.arange(args.rows) % gen.num_classes).repeat_interleave(args.steps)
    save_grid(gen.generate(zs, labels), make_parent(out), nrow=args.steps)
    print(f"wrote {args.rows} interpolations of {args.steps} steps ({'slerp' if args.slerp else 'lerp'}) to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "sample",
        help="draw samples from a trained run: .png grid or .npy uint8 (N, H, W, C); "
        "a conditional run's classes go to X.labels.npy beside X.npy",
    )
    s.add_argument("run")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--class", dest="class_id", type=int, help="class to draw (conditional models)")
    s.add_argument("--checkpoint", default="latest", help="latest, final, best or a checkpoint folder name")
    add_force_flag(s)
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("interpolate", help="walk the latent space between random points")
    i.add_argument("run")
    i.add_argument("--steps", type=int, default=10)
    i.add_argument("--rows", type=int, default=8)
    i.add_argument("--out", required=True)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    i.add_argument("--checkpoint", default="latest")
    add_force_flag(i)
    i.set_defaults(func=cmd_interpolate)
