"""`gankit translate`: run an image-to-image model on an image or a folder of images."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import GankitError

from .data.folder import IMAGE_EXTENSIONS as EXTS


def _inputs(path: Path) -> list[Path]:
    if not path.exists():
        raise GankitError(f"input {path} does not exist")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in EXTS and not p.name.startswith("."))
    if not files:
        raise GankitError(f"input folder {path} has no images ({', '.join(sorted(EXTS))})")
    return files


def _read(path: Path, channels: int, size: int) -> torch.Tensor:
    """One image as uint8 (C, S, S), decoded exactly as the paired reader decodes training pairs (EXIF rotation,
    transparency on white, 16-bit scaling), converted to the model's input channels and resized to its size."""
    from .data.paired import _decode

    im = _decode(path, channels).resize((size, size), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def cmd_translate(args: argparse.Namespace) -> int:
    from .data.base import to_float, to_uint8
    from .sampling import load_translator

    out = Path(args.out)
    if out.is_file():
        raise GankitError(f"--out {out} is a file; give a folder for the translated images")
    tr = load_translator(args.run, args.checkpoint)
    files = _inputs(Path(args.input))
    size = tr.image_shape[1]
    out.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(files), 16):
        chunk = files[i : i + 16]
        a = torch.stack([_read(p, tr.in_channels, size) for p in chunk])
        y = to_uint8(tr.translate(to_float(a))).permute(0, 2, 3, 1).numpy()
        for p, img in zip(chunk, y):
            Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(out / f"{p.stem}.png")
    print(f"translated {len(files)} image(s) with {tr.run_dir} (step {tr.step}) into {out}/")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("translate", help="translate an image or a folder of images with an image-to-image run")
    t.add_argument("run")
    t.add_argument("input", help="an image file or a folder of images")
    t.add_argument("--out", required=True, help="folder for the outputs (same file stems, .png)")
    t.add_argument("--checkpoint", default="latest")
    t.set_defaults(func=cmd_translate)
