"""gankit.viz: progress.gif stays small however long the run trained."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def test_progress_gif_is_bounded(tmp_path: Path) -> None:
    import io

    import torch

    from gankit.viz import GIF_FRAMES, gif_bytes, grid_png

    # Noise grids are the worst case for GIF compression; 6 different grids named as 200 frames. A bound of 800 kB
    # for these 276-px grids plays the part of the default 3 MB for 530-px ones (64 images of 64x64), 3.7x the pixels.
    g = torch.Generator().manual_seed(0)
    files = []
    for i in range(6):
        f = tmp_path / f"g{i}.png"
        f.write_bytes(grid_png(torch.rand(16, 3, 32, 32, generator=g) * 2 - 1))
        files.append(f)
    frames = [files[i % 6] for i in range(200)]
    data = gif_bytes(frames, max_bytes=800_000)
    assert data is not None and len(data) <= 800_000
    with Image.open(io.BytesIO(data)) as im, Image.open(files[0]) as full:
        assert im.n_frames == GIF_FRAMES
        assert full.width // 4 < im.width < full.width  # shrunk (noise: the most), not to a thumbnail
    assert gif_bytes([]) is None
    with Image.open(io.BytesIO(gif_bytes(files[:3]))) as im, Image.open(files[0]) as full:
        assert im.size == full.size and im.n_frames == 3  # a short run keeps its frames whole
