"""`gankit translate`: run an image-to-image model on an image or a folder of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import GankitError
from ..core.io import refuse_existing
from .common import add_force_flag


def _inputs(path: Path) -> tuple[list[Path], Path | None]:
    """The images to translate and the folder they were listed from (None for one file named directly). A folder's
    entries that are not regular files inside it (a FIFO, a device, a link out of the folder) stop the command before
    anything is read or written, named: translating the rest silently would lose them."""
    from ..data.folder import IMAGE_EXTENSIONS
    from ..data.safety import list_user_folder, open_user_file, refused_line

    if not path.exists():
        raise GankitError(f"input {path} does not exist")
    if not path.is_dir():
        open_user_file(path, "input").close()  # a regular file, checked now (a FIFO would block a plain open)
        return [path], None
    files, refused = list_user_folder(path, lambda name: Path(name).suffix.lower() in IMAGE_EXTENSIONS)
    if refused:
        raise GankitError(
            f"input folder {path}: {len(refused)} entr{'y' if len(refused) == 1 else 'ies'} not read: "
            f"{refused_line(refused)}; move {'it' if len(refused) == 1 else 'them'} out of the folder "
            f"(nothing was written)"
        )
    if not files:
        raise GankitError(f"input folder {path} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files, path


def _output_names(files: list[Path]) -> list[str]:
    """``<stem>.png`` per input; two inputs that would share an output (x.png and x.jpg) are refused, not merged."""
    seen: dict[str, Path] = {}
    for p in files:
        name = f"{p.stem}.png"
        if name in seen:
            raise GankitError(
                f"inputs {seen[name].name} and {p.name} would both be written as {name}; rename one "
                f"(nothing was written)"
            )
        seen[name] = p
    return list(seen)


def cmd_translate(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from ..data.base import to_float, to_uint8
    from ..data.paired import read_input_image
    from ..tasks import Translator, load
    from ..core.io import atomic_write_bytes
    from ..viz import encode

    out = Path(args.out)
    if out.is_file():
        raise GankitError(f"--out {out} is a file; give a folder for the translated images")
    files, root = _inputs(Path(args.input))
    names = _output_names(files)
    refuse_existing((out / n for n in names), args.force)
    tr = load(args.run, args.checkpoint, want=Translator).toward(args.direction)
    size = (tr.image_shape[2], tr.image_shape[1])  # (width, height): non-square runs too
    out.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(files), 16):
        a = torch.stack([read_input_image(p, tr.in_channels, size, root=root) for p in files[i : i + 16]])
        y = to_uint8(tr.translate(to_float(a))).permute(0, 2, 3, 1).numpy()
        for name, img in zip(names[i : i + 16], y):
            atomic_write_bytes(out / name, encode(Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)))
    print(f"translated {len(files)} image(s) with {tr.run_dir} (step {tr.step}) into {out}/")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("translate", help="translate an image or a folder of images with an image-to-image run")
    t.add_argument("run")
    t.add_argument("input", help="an image file or a folder of images")
    t.add_argument("--out", required=True, help="folder for the outputs (same file stems, .png)")
    t.add_argument("--checkpoint", default="latest")
    t.add_argument(
        "--direction",
        choices=["AtoB", "BtoA"],
        default="AtoB",
        help="cyclegan runs: A -> B (default) or B -> A; pix2pix runs translate A -> B only",
    )
    add_force_flag(t)
    t.set_defaults(func=cmd_translate)
