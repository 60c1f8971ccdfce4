"""gankit/tasks/_template.py, the family docs/adding-a-family.md copies: registered for the test only, it trains two
steps through the real loop, resumes exactly, and loads for inference."""

from __future__ import annotations

import pytest
import torch

from gankit.config.layering import resolve
from gankit.nets import MODELS
from gankit.tasks import TASKS, load
from gankit.tasks import _template as template
from gankit.training.checkpoint import load_named
from gankit.training.loop import train


@pytest.fixture
def registered(monkeypatch):
    """The template family and its model in the registries for one test (taken out again after it)."""
    monkeypatch.setattr(TASKS, "_items", dict(TASKS._items))
    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))
    template.register()
    assert template.FAMILY in TASKS and MODELS.get(template.MODEL).family == template.FAMILY
    yield


def test_template_is_not_a_family_users_see() -> None:
    assert template.FAMILY not in TASKS and template.MODEL not in MODELS


def test_template_family_trains_two_steps_and_resumes(registered, tmp_path, tiny_overrides) -> None:
    cfg = resolve(
        overrides={**tiny_overrides, "model.name": template.MODEL, "train.steps": 2, "train.checkpoint_every": 1}
    )
    run = train(cfg, out=tmp_path / "run")
    assert run.step == 2 and set(run.metrics) == {"loss/d", "loss/g"}
    assert all(torch.isfinite(torch.tensor(v)) for v in run.metrics.values())
    meta = load_named(run.dir, "final").state["meta"]
    assert meta["family"] == template.FAMILY and meta["image_shape"] == [1, 16, 16]
    # two steps, or one and a resume of the second: the same weights (z_gen is checkpointed by the family)
    ck_dir = tmp_path / "half"
    half = train(cfg.replace(**{"train.steps": 1}), out=ck_dir)
    assert half.step == 1
    again = train(cfg, resume=ck_dir)
    assert again.step == 2
    a, b = load_named(run.dir, "final").tensors, load_named(again.dir, "final").tensors
    for name in ("g", "d"):
        for key, t in a[name].items():
            assert torch.equal(t, b[name][key]), (name, key)
    g = load(run.dir)
    assert g(torch.zeros(2, cfg.model.z_dim), None).shape == (2, 1, 16, 16)
