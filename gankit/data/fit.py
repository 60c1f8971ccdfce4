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

RESIZE_MODES = ("crop", "pad", "stretch")


def fit_square(im: Image.Image, size: int, mode: str, pad_value: int = 0,
               resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """``im`` ('L' or 'RGB') as size x size per ``mode`` (one resampling step each)."""
    w, h = im.size
    if mode == "stretch":
        return im if (w, h) == (size, size) else im.resize((size, size), resample, reducing_gap=3.0)
    if mode == "crop":
        s = min(w, h)
        left, top = (w - s) / 2, (h - s) / 2
        return im.resize((size, size), resample, box=(left, top, left + s, top + s), reducing_gap=3.0)
    if mode == "pad":
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        inner = im if (w, h) == (nw, nh) else im.resize((nw, nh), resample, reducing_gap=3.0)
        fill = pad_value if im.mode == "L" else (pad_value,) * 3
        canvas = Image.new(im.mode, (size, size), fill)
        canvas.paste(inner, ((size - nw) // 2, (size - nh) // 2))
        return canvas
    raise ValueError(f"unknown resize mode {mode!r}")  # config validation names the choices first
