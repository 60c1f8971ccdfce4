"""gankit/tasks/_template.py, the family docs/adding-a-family.md copies: registered for the test only, it trains two
steps through the real loop, resumes exactly, and loads for inference."""

from __future__ import annotations

import pytest
import torch

from gankit.config.layering import resolve
from gankit.config.schema import FAMILY_KEYS, dump_yaml
from gankit.core.errors import GankitError
from gankit.nets import MODELS
from gankit.tasks import TASKS, load
from gankit.tasks import _template as template
from gankit.training.checkpoint import load_named
from gankit.training.loop import train


@pytest.fixture
def registered(monkeypatch):
    """The template family, its model and its config keys in the registries for one test (taken out again after)."""
    monkeypatch.setattr(TASKS, "_items", dict(TASKS._items))
    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))
    monkeypatch.setattr(FAMILY_KEYS, "_items", dict(FAMILY_KEYS._items))
    template.register()
    assert template.FAMILY in TASKS and MODELS.get(template.MODEL).family == template.FAMILY
    yield


def test_template_is_not_a_family_users_see() -> None:
    assert template.FAMILY not in TASKS and template.MODEL not in MODELS
    with pytest.raises(GankitError, match="unknown config key 'loss.template_g_weight'"):
        resolve(overrides={"loss.template_g_weight": 0.5})


def test_template_family_declares_its_own_config_key(registered, tmp_path, tiny_overrides) -> None:
    """The family's key, declared in its own module: a default, set through the config, type-checked, checked by
    the family, read by its step, saved in config.yaml and read back from it."""
    base = {**tiny_overrides, "model.name": template.MODEL, "train.steps": 1}
    assert resolve(overrides=base).loss.template_g_weight == 1.0
    with pytest.raises(GankitError, match="loss.template_g_weight: expected float"):
        resolve(overrides={**base, "loss.template_g_weight": "big"})
    with pytest.raises(GankitError, match="loss.template_g_weight must be >= 0, got -1.0"):
        resolve(overrides={**base, "loss.template_g_weight": -1})
    cfg = resolve(overrides={**base, "loss.template_g_weight": 0})
    assert cfg.loss.template_g_weight == 0.0
    run = train(cfg, out=tmp_path / "run")
    assert run.metrics["loss/g"] == 0.0  # the step read the key: G's loss scaled to nothing
    saved = (run.dir / "config.yaml").read_text()
    assert "template_g_weight: 0.0" in saved and saved.endswith(dump_yaml(cfg))
    assert resolve(file=run.dir / "config.yaml") == cfg


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
