"""TensorBoardLogger writes event files that TensorBoard reads back: scalars by tag and step, and the image grid."""

from __future__ import annotations

import builtins

import pytest
import torch

from gankit.core.errors import GankitError


def test_events_read_back(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is optional: pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gankit.tensorboard import TensorBoardLogger

    with TensorBoardLogger(tmp_path) as tb:
        tb.log_scalars(1, {"step": 1, "time": 5.0, "loss/d": 1.25, "loss/g": 0.5, "images_per_s": 300.0, "flag": True})
        tb.log_scalars(2, {"loss/d": 1.0, "eval/fd": float("nan")})
        tb.log_scalars(3, {"eval/fd": 42.0, "note": "text"})
        images = torch.linspace(-1, 1, 6 * 1 * 4 * 4).reshape(6, 1, 4, 4)
        tb.log_images(3, "samples", images, nrow=3)
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = acc.Tags()
    assert sorted(tags["scalars"]) == ["eval/fd", "images_per_s", "loss/d", "loss/g"]
    assert [(e.step, e.value) for e in acc.Scalars("loss/d")] == [(1, 1.25), (2, 1.0)]
    assert [(e.step, e.value) for e in acc.Scalars("eval/fd")] == [(3, 42.0)]  # the NaN was skipped
    (img,) = acc.Images("samples")
    # 2 rows x 3 columns of 4x4 images with 2-pixel padding: (2*6+2) x (3*6+2)
    assert img.step == 3 and (img.height, img.width) == (14, 20)


def test_missing_tensorboard_says_how_to_install(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    from gankit.tensorboard import TensorBoardLogger

    with pytest.raises(GankitError, match="pip install tensorboard"):
        TensorBoardLogger(tmp_path)
