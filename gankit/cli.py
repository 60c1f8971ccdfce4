"""The `gankit` command. Subcommands are thin: parse, build a Config, call the library, report.

Exit codes: 0 success, 2 bad input, 3 training diverged, 130/143 interrupted (a checkpoint was saved).
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Any, NoReturn

from .errors import GankitError

BUDGET_FLAGS = {"steps": "train.steps", "epochs": "train.epochs", "max_minutes": "train.max_minutes"}
FLAG_KEYS = {
    "data": "data.name", "data_dir": "data.dir", "split": "data.split", "model": "model.name", "seed": "seed",
    "threads": "train.threads", "device": "train.device", "eval_every": "train.eval_every", "on_nan": "train.on_nan",
    **BUDGET_FLAGS,
}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .config import budget_overrides, parse_set

    out: dict[str, Any] = {}
    for attr, key in FLAG_KEYS.items():
        v = getattr(args, attr, None)
        if v is not None:
            out[key] = v
    if getattr(args, "no_progress", False):
        out["train.progress"] = False
    for item in args.set or []:
        k, v = parse_set(item)
        out[k] = v
    return budget_overrides(out)


def cmd_train(args: argparse.Namespace) -> int:
    from .config import Config, deep_merge, resolve, set_dotted, validate
    from .training import load_run_config, train

    overrides = _overrides(args)
    if args.resume:
        if args.config:
            raise GankitError("pass either CONFIG.yaml or --resume RUN_DIR, not both (a run keeps its own config)")
        if args.out:
            raise GankitError("--out and --resume both name the run folder; drop --out")
        saved = load_run_config(Path(args.resume)).to_dict()
        for k, v in overrides.items():
            set_dotted(saved, k, v)
        cfg = Config.from_dict(deep_merge({}, saved))
        validate(cfg)
    else:
        cfg = resolve(file=args.config, overrides=overrides)
    run = train(cfg, out=args.out, resume=args.resume)
    print(f"done: {run.step} steps ({run.epoch:.2f} epochs, stopped by {run.stopped_by}). Results in {run.dir}/")
    print(f"  samples: {run.dir}/samples/   progress: {run.dir}/progress.gif   losses: {run.dir}/losses.png")
    from .models import MODELS

    if MODELS.meta(cfg.model.name).get("kind") == "pix2pix":
        print(f"  translate: gankit translate {run.dir} IMAGE_OR_FOLDER --out DIR   scores: gankit eval {run.dir}")
    else:
        print(f"  more samples: gankit sample {run.dir} --n 64 --out grid.png   scores: gankit eval {run.dir}")
    return 0


def _out_path(path: str, exts: tuple[str, ...]) -> Path:
    """The checked --out file; its folder is created by :func:`_make_parent` once there is something to write."""
    p = Path(path)
    if p.is_dir():
        raise GankitError(f"--out {p} is a folder; give a file name such as {p / ('out' + exts[0])}")
    if p.suffix.lower() not in exts:
        raise GankitError(f"--out {p}: use a file ending in {' or '.join(exts)}")
    return p


def _make_parent(p: Path) -> Path:
    if p.parent.exists() and not p.parent.is_dir():
        raise GankitError(f"--out {p}: {p.parent} is a file, not a folder")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.base import to_uint8
    from .runlog import atomic_write_bytes
    from .sampling import load
    from .viz import save_grid

    if args.n <= 0:
        raise GankitError(f"--n must be > 0, got {args.n}")
    out = _out_path(args.out, (".png", ".npy"))
    gen = load(args.run, args.checkpoint)
    x = gen.sample(args.n, seed=args.seed, class_id=args.class_id)
    _make_parent(out)
    if out.suffix.lower() == ".npy":
        import io

        arr = to_uint8(x).permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C) uint8
        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(out, buf.getvalue())
    else:
        save_grid(x, out)
    print(f"wrote {args.n} samples from {gen.run_dir} (step {gen.step}) to {out}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    import torch

    from .sampling import load
    from .viz import lerp, save_grid, slerp

    if args.steps < 2:
        raise GankitError(f"--steps must be >= 2, got {args.steps}")
    out = _out_path(args.out, (".png",))
    gen = load(args.run, args.checkpoint)
    z = gen.noise(2 * args.rows, args.seed)
    t = torch.linspace(0, 1, args.steps)
    path = slerp if args.slerp else lerp
    zs = torch.cat([path(z[2 * r : 2 * r + 1], z[2 * r + 1 : 2 * r + 2], t) for r in range(args.rows)])
    labels = None
    if gen.num_classes:
        labels = (torch.arange(args.rows) % gen.num_classes).repeat_interleave(args.steps)
    save_grid(gen.generate(zs, labels), _make_parent(out), nrow=args.steps)
    print(f"wrote {args.rows} interpolations of {args.steps} steps ({'slerp' if args.slerp else 'lerp'}) to {out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .data import DATASETS
    from .losses import LOSSES
    from .models import MODELS
    from .optim import OPTIMIZERS

    for title, reg in [("data sets", DATASETS), ("models", MODELS), ("losses", LOSSES), ("optimizers", OPTIMIZERS)]:
        print(f"{title}: {', '.join(reg.names())}")
    configs = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").rglob("*.yaml"))
    if configs:
        print("shipped configs:")
        for c in configs:
            print(f"  {c.relative_to(Path.cwd()) if c.is_relative_to(Path.cwd()) else c}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with gankit's error contract: one line, exit code 2 (via GankitError), no usage dump."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        raise GankitError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS
    from .models import MODELS

    p = _Parser(prog="gankit", description="Train, sample and evaluate GANs.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model (defaults: DCGAN on the embedded digits data set)")
    t.add_argument("config", nargs="?", help="YAML config; flags below override it")
    t.add_argument("--data", choices=DATASETS.names(), help="data set (default digits)")
    t.add_argument("--data-dir", help="folder with the data set's files (or the image folder)")
    t.add_argument("--split", choices=["train", "test", "val", "all"])
    t.add_argument("--model", choices=MODELS.names())
    t.add_argument("--steps", type=int, help="budget in generator updates")
    t.add_argument("--epochs", type=float, help="budget in passes over the data")
    t.add_argument("--max-minutes", type=float, help="wall-clock budget; the run stops and saves when it is spent")
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    t.add_argument("--eval-every", type=int, help="steps between FD evaluations (0 = off)")
    t.add_argument("--on-nan", choices=["stop", "rollback"])
    t.add_argument("--out", help="run folder to create (default runs/<time>-<model>-<data>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly where it stopped")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key, e.g. optim.lr_g=1e-4")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained run: .png grid or .npy uint8 (N, H, W, C)")
    s.add_argument("run")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--class", dest="class_id", type=int, help="class to draw (conditional models)")
    s.add_argument("--checkpoint", default="latest", help="latest, final, best or a checkpoint folder name")
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("interpolate", help="walk the latent space between random points")
    i.add_argument("run")
    i.add_argument("--steps", type=int, default=10)
    i.add_argument("--rows", type=int, default=8)
    i.add_argument("--out", required=True)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    i.add_argument("--checkpoint", default="latest")
    i.set_defaults(func=cmd_interpolate)

    ls = sub.add_parser("list", help="list data sets, models, losses, optimizers and shipped configs")
    ls.set_defaults(func=cmd_list)

    from . import cli_eval, cli_pix2pix, cli_report, cli_sweep

    for mod in (cli_eval, cli_pix2pix, cli_report, cli_sweep):  # subcommands that live in their own modules
        mod.register(sub)
    return p


def _one_line(msg: object) -> str:
    # The contract is one line per error; a message that embeds another library's text may hold newlines.
    return " ".join(str(msg).split())


def main(argv: list[str] | None = None) -> int:
    from .training import Interrupted

    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except GankitError as e:
        print(f"gankit: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        print(f"gankit: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("gankit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `gankit list | head`: the reader left, nothing is wrong
        return 0
    except OSError as e:
        # Disk full, permission denied, read-only file system: the user's environment, not a gankit bug.
        what = f"{e.filename}: " if e.filename else ""
        hint = " (disk full: free space or choose another --out)" if e.errno == errno.ENOSPC else ""
        print(f"gankit: error: {_one_line(f'{what}{e.strerror or e}{hint}')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
