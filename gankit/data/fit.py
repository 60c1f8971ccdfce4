"""Fitting an image of any aspect ratio into the square a model trains on (``data.resize``).

- ``crop``: the shorter side is resized to the size and the centre cut out (a strip of the longer side is lost);
- ``pad``: the longer side is resized to the size and the rest filled with ``data.pad_value`` (the whole image kept,
  bars at the sides: the model learns them too, so the recorded pad value is what its samples show there);
- ``stretch``: both sides resized to the size (the whole image kept, proportions changed).

``auto`` is each reader's own convention: ``crop`` for image folders, ``stretch`` for image pairs (what the pix2pix
reference loader does).
"""

from __future__ import annotations

from PIL import Image

from ..config.schema import DataConfig

RESIZE_MODES = ("crop", "pad", "stretch")


def image_hw(cfg: DataConfig) -> tuple[int, int]:
    """(height, width) the images are sized to: data.image_size is the width, data.image_height the height (0: the
    same, a square)."""
    return cfg.image_height or cfg.image_size, cfg.image_size


def fit_square(
    im: Image.Image,
    size: int | tuple[int, int],
    mode: str,
    pad_value: int = 0,
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> Image.Image:
    """``im`` ('L' or 'RGB') as size x size, or (width, height) for a tuple, per ``mode`` (one resampling step)."""
    w, h = im.size
    tw, th = (size, size) if isinstance(size, int) else size
    if mode == "stretch":
        return im if (w, h) == (tw, th) else im.resize((tw, th), resample, reducing_gap=3.0)
    if mode == "crop":  # the largest centred box of the target's aspect ratio
        cw, ch = (w, w * th / tw) if w * th <= h * tw else (h * tw / th, h)
        left, top = (w - cw) / 2, (h - ch) / 2
        return im.resize((tw, th), resample, box=(left, top, left + cw, top + ch), reducing_gap=3.0)
    if mode == "pad":
        scale = min(tw / w, th / h)
        nw, nh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
        inner = im if (w, h) == (nw, nh) else im.resize((nw, nh), resample, reducing_gap=3.0)
        fill = pad_value if im.mode == "L" else (pad_value,) * 3
        canvas = Image.new(im.mode, (tw, th), fill)
        canvas.paste(inner, ((tw - nw) // 2, (th - nh) // 2))
        return canvas
    raise ValueError(f"unknown resize mode {mode!r}")  # config validation names the choices first
