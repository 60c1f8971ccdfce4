"""Paired (image-to-image) data, one module per concern:

- :mod:`.readers`: the ``paired`` data set (folders of A/B pairs, either layout) and :func:`read_input_image`, one
  image decoded the way pairs are (what `gankit translate` feeds a model)
- :mod:`.sketch`: the embedded ``sketch`` set (pencil sketch -> colour, made from scikit-learn's sample photos)
- :mod:`.jitter`: the pix2pix training jitter (resize, random crop, mirror), the same for input and target

Importing this package registers both data sets (``paired`` first). The names below are the ones
``gankit.data.paired`` has always offered, the folder helpers too, so other readers can build on them.
"""

from __future__ import annotations

from .jitter import augment_pairs, default_load_size
from .readers import (
    _LAYOUT_HINT,
    MAX_INPUT_BYTES,
    MIN_SIDE,
    SPLITS,
    _decode,
    _finish,
    _images_in,
    _layout,
    _pair_files,
    _read_pair,
    _root,
    _side,
    _sources,
    _split_halves,
    _stack,
    load_paired,
    paired_fit,
    paired_splits,
    read_input_image,
)
from .sketch import (
    SHADE,
    SKETCH_CROP,
    SKETCH_TRAIN,
    SKETCH_VAL,
    SKETCH_VAL_STRIP,
    _sketch_crops,
    load_sketch,
    sketch_boxes,
    sketch_of,
    sketch_regions,
)

__all__ = [
    "MAX_INPUT_BYTES",
    "MIN_SIDE",
    "SHADE",
    "SKETCH_CROP",
    "SKETCH_TRAIN",
    "SKETCH_VAL",
    "SKETCH_VAL_STRIP",
    "SPLITS",
    "augment_pairs",
    "default_load_size",
    "load_paired",
    "load_sketch",
    "paired_fit",
    "paired_splits",
    "read_input_image",
    "sketch_boxes",
    "sketch_of",
    "sketch_regions",
    # folder helpers other readers build on (kept under their old names)
    "_LAYOUT_HINT",
    "_decode",
    "_finish",
    "_images_in",
    "_layout",
    "_pair_files",
    "_read_pair",
    "_root",
    "_side",
    "_sources",
    "_split_halves",
    "_stack",
    "_sketch_crops",
]
