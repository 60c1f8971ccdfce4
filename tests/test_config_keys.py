"""gankit/config/schema.py's family keys: a model family declares its own model.* and loss.* keys beside its task
(family_config), and they are config keys like the shared ones: typed, set, saved, loaded, compared, listed."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gankit.config import Config, LossConfig, ModelConfig
from gankit.config.layering import resolve, resume_config
from gankit.config.schema import FAMILY_KEYS, FamilyKeys, dump_yaml, family_config, read_yaml
from gankit.core.errors import GankitError
from gankit.core.yamlio import dump_yaml as dump_plain_yaml
from gankit.nets import MODELS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "key, family",
    [
        ("model.g_blocks", "cyclegan"),
        ("model.pool_size", "cyclegan"),
        ("loss.cycle_weight", "cyclegan"),
        ("loss.identity_weight", "cyclegan"),
        ("model.norm", "pix2pix"),
        ("model.patch", "pix2pix"),
        ("loss.l1_weight", "pix2pix"),
        ("model.z_dim", "gan"),
        ("model.num_classes", "gan"),
        ("model.g_hidden", "gan"),
        ("model.d_batchnorm", "gan"),
        ("model.d_mbstd", "gan"),
        ("loss.gp_weight", "gan"),
        ("loss.clip", "gan"),
        ("loss.instance_noise", "gan"),
    ],
)
def test_the_families_own_keys_are_declared_by_them_not_in_the_schema(key: str, family: str) -> None:
    section, name = key.split(".")
    shared = {"model": ModelConfig, "loss": LossConfig}[section]
    assert name not in {f.name for f in dataclasses.fields(shared)}
    declared = FAMILY_KEYS.get(section, name)
    assert declared is not None and declared.family == family
    assert declared.declared_by.__module__ == f"gankit.tasks.{family}"


def test_every_key_a_model_reads_is_a_model_key() -> None:
    keys = {f.name for f in dataclasses.fields(ModelConfig)} | set(FAMILY_KEYS.section("model"))
    for name, spec in MODELS.items():
        assert spec.fields <= keys, (name, sorted(spec.fields - keys))


def test_a_section_holds_family_keys_like_fields() -> None:
    m = ModelConfig(name="cyclegan", g_blocks=9, norm="instance")
    assert (m.g_blocks, m.norm, m.pool_size) == (9, "instance", 50)  # pool_size: the declared default
    assert m == ModelConfig(name="cyclegan", g_blocks=9, norm="instance") and m != ModelConfig(name="cyclegan")
    assert hash(m) == hash(ModelConfig(name="cyclegan", g_blocks=9, norm="instance"))
    assert "g_blocks=9" in repr(m)
    assert pickle.loads(pickle.dumps(m)) == m and copy.deepcopy(m) == m  # spawned workers get configs pickled
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.g_blocks = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'g_blockz'"):
        ModelConfig(g_blockz=9)
    with pytest.raises(AttributeError):
        m.g_blockz  # noqa: B018
    assert LossConfig(l1_weight=5.0).l1_weight == 5.0


def test_family_keys_parse_check_and_save_like_shared_ones(tmp_path: Path) -> None:
    base = {"model.name": "cyclegan", "train.steps": 1}
    cfg = resolve(overrides={**base, "model.g_blocks": 2, "loss.cycle_weight": 3})
    assert cfg.model.g_blocks == 2 and cfg.loss.cycle_weight == 3.0 and isinstance(cfg.loss.cycle_weight, float)
    saved = cfg.to_dict()
    assert saved["model"]["g_blocks"] == 2 and saved["loss"]["l1_weight"] == 100.0  # every key, at its value
    assert Config.from_dict(saved) == cfg
    for overrides, needle in [
        ({"model.g_blocks": "x"}, "model.g_blocks: expected int, got 'x'"),
        ({"model.g_blockz": 1}, "unknown config key 'model.g_blockz' (did you mean 'g_blocks'?)"),
        ({"model.pool_size": -1}, "model.pool_size=-1"),
        ({"loss.identity_weight": -1}, "loss.cycle_weight and loss.identity_weight must be >= 0"),
        ({"model.name": "dcgan", "model.g_blocks": 3}, "model.g_blocks is not a setting of model 'dcgan'"),
        ({"model.name": "dcgan", "loss.l1_weight": -1}, "loss.l1_weight must be >= 0, got -1.0"),
    ]:
        with pytest.raises(GankitError) as e:
            resolve(overrides={**base, **overrides})
        assert needle in str(e.value) and "\n" not in str(e.value)


def test_an_old_run_config_with_every_key_still_loads_and_resumes(tmp_path: Path) -> None:
    """A config.yaml written when these keys were fields of the schema (the keys in the old order) reads back to
    the same config, re-runs, and resumes with a budget change; a change of a family key is refused on resume."""
    cfg = resolve(overrides={"model.name": "cyclegan", "model.g_blocks": 2, "train.steps": 3})
    old = cfg.to_dict()
    loss = old["loss"]
    old["loss"] = {k: loss[k] for k in ["name", "gp_weight", "clip", "label_smoothing", "instance_noise"]}
    old["loss"].update({k: loss[k] for k in ["l1_weight", "cycle_weight", "identity_weight", "r1_gamma", "r1_every"]})
    path = tmp_path / "config.yaml"
    path.write_text(dump_plain_yaml(old))
    assert path.read_text() != dump_yaml(cfg)  # the old order of keys
    assert Config.from_dict(read_yaml(path)) == cfg
    assert resolve(file=path) == cfg
    assert resume_config(read_yaml(path), {"train.steps": 5}).train.steps == 5
    with pytest.raises(GankitError, match=r"model.g_blocks: 2 -> 4"):
        resume_config(read_yaml(path), {"model.g_blocks": 4})


def test_a_shared_model_key_is_read_by_more_than_one_family() -> None:
    """What stays in ModelConfig is read by models of several families; a key one family alone reads is declared
    by that family (gankit/tasks/<family>.py)."""
    for f in dataclasses.fields(ModelConfig):
        readers = {spec.family for _, spec in MODELS.items() if f.name in spec.fields}
        assert len(readers) > 1, (f.name, readers)


def test_the_gan_familys_keys_keep_their_checks() -> None:
    base = {"train.steps": 1}
    for overrides, needle in [
        ({"model.z_dim": 0}, "model.z_dim must be > 0, got 0"),
        ({"model.num_classes": -1}, "model.num_classes must be >= 0, got -1"),
        ({"model.d_dropout": -0.5}, "model.d_dropout must be >= 0, got -0.5"),
        ({"model.d_dropout": 1}, "model.d_dropout must be in [0, 1), got 1.0"),
        ({"model.g_dropout": 1}, "model.g_dropout must be in [0, 1), got 1.0"),  # shared (pix2pix reads it)
        ({"model.d_mbstd": -1}, "model.d_mbstd=-1: use 0 (off)"),
        ({"loss.gp_weight": -1}, "loss.gp_weight must be >= 0, got -1.0"),
        ({"loss.clip": -0.1}, "loss.clip must be >= 0, got -0.1"),
        ({"loss.instance_noise": -1}, "loss.instance_noise must be >= 0, got -1.0"),
        ({"model.noise": "gauss"}, "model.noise: expected 'normal' or 'uniform', got 'gauss'"),
        ({"model.name": "pix2pix", "model.num_classes": 3}, "model.num_classes is not a setting of model 'pix2pix'"),
    ]:
        with pytest.raises(GankitError) as e:
            resolve(overrides={**base, **overrides})
        assert needle in str(e.value) and "\n" not in str(e.value)


# The model and loss keys in the order gankit wrote them to config.yaml when every GAN key was a field of the schema.
OLD_MODEL_ORDER = (
    "name z_dim noise num_classes conditioning g_channels d_channels max_channels g_upsample g_output g_class_norm "
    "d_mbstd g_hidden d_hidden g_batchnorm d_batchnorm g_activation d_activation g_dropout d_dropout init "
    "spectral_norm_d spectral_norm_g norm patch g_blocks pool_size"
).split()
OLD_LOSS_ORDER = (
    "name gp_weight clip label_smoothing instance_noise r1_gamma r1_every l1_weight cycle_weight identity_weight"
).split()


def test_an_old_gan_run_config_still_loads_re_runs_and_resumes(tmp_path: Path) -> None:
    cfg = resolve(overrides={"model.name": "mlp", "model.num_classes": 10, "loss.gp_weight": 5, "train.steps": 3})
    new = cfg.to_dict()
    old = {
        **new,
        "model": {k: new["model"][k] for k in OLD_MODEL_ORDER},
        "loss": {k: new["loss"][k] for k in OLD_LOSS_ORDER},
    }
    assert set(old["model"]) == set(new["model"]) and set(old["loss"]) == set(new["loss"])  # no key left out
    path = tmp_path / "config.yaml"
    path.write_text(dump_plain_yaml(old))
    assert path.read_text() != dump_yaml(cfg)
    assert Config.from_dict(read_yaml(path)) == cfg
    assert resolve(file=path) == cfg
    assert resume_config(read_yaml(path), {"train.steps": 5}).train.steps == 5
    with pytest.raises(GankitError, match=r"model.num_classes: 10 -> 3"):
        resume_config(read_yaml(path), {"model.num_classes": 3})
    with pytest.raises(GankitError, match=r"loss.gp_weight: 5.0 -> 1"):
        resume_config(read_yaml(path), {"loss.gp_weight": 1})


def test_declaring_a_key_twice_or_over_a_shared_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FAMILY_KEYS, "_items", dict(FAMILY_KEYS._items))

    @dataclasses.dataclass(frozen=True)
    class Shadow:
        g_channels: int = 3

    @dataclasses.dataclass(frozen=True)
    class Again:
        g_blocks: int = 3

    @dataclasses.dataclass(frozen=True)
    class NoDefault:
        width: int

    with pytest.raises(ValueError, match="model.g_channels of family 'x' is a shared key"):
        family_config("model", family="x")(Shadow)
    with pytest.raises(ValueError, match="model.g_blocks of family 'x' is declared already by family 'cyclegan'"):
        family_config("model", family="x")(Again)
    with pytest.raises(TypeError, match="needs a default"):
        family_config("model", family="x")(NoDefault)


def test_discovery_runs_once_and_not_while_it_runs() -> None:
    keys = FamilyKeys()
    calls: list[int] = []

    def discover() -> None:
        calls.append(1)
        keys.section("model")  # a config read while the families import: no second discovery

    keys.discover_with(discover)
    assert keys.section("model") == {} and keys.section("loss") == {}
    assert calls == [1]


def _fresh_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_gankit_config_alone_finds_the_families_keys_when_a_config_is_read() -> None:
    """`from gankit.config import Config` imports no family (nor torch); reading a config with a family's key
    imports the families first, with nothing else imported by the caller."""
    out = _fresh_python(
        "import sys\n"
        "from gankit.config import Config\n"
        "light = 'torch' not in sys.modules and 'gankit.tasks' not in sys.modules\n"
        "cfg = Config.from_dict({'model': {'name': 'cyclegan', 'g_blocks': 9}, 'loss': {'l1_weight': 1}})\n"
        "print(light, cfg.model.g_blocks, cfg.loss.l1_weight, Config().model.pool_size)\n"
    )
    assert out == "True 9 1.0 50"


def test_a_tune_space_checks_family_keys_against_the_schema() -> None:
    from gankit.tune.space import check_space, read_space

    def check(model: str, *params: str) -> None:
        base = {"model.name": model, "train.steps": 1}
        check_space(read_space(None, list(params)), lambda extra: resolve(overrides={**base, **extra}))

    check("cyclegan", "model.g_blocks=int(1, 3)", "loss.cycle_weight=uniform(1, 10)", "model.norm=choice(batch, none)")
    for model, param, needle in [
        ("cyclegan", "model.g_blokcs=int(1, 3)", "unknown config key 'model.g_blokcs' (did you mean 'g_blocks'?)"),
        ("cyclegan", "model.pool_size=int(-1, 3)", "model.pool_size=-1"),
        ("dcgan", "model.g_blocks=int(1, 3)", "model.g_blocks is not a setting of model 'dcgan'"),
    ]:
        with pytest.raises(GankitError, match=re.escape(needle)):
            check(model, param)


def test_gankit_list_names_the_families_own_keys(capsys: pytest.CaptureFixture[str]) -> None:
    from gankit.cli import main

    assert main(["list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("families' own config keys: "))
    assert "cyclegan: model.g_blocks, model.pool_size, loss.cycle_weight, loss.identity_weight" in line
    assert "pix2pix: model.norm, model.patch, loss.l1_weight" in line
    assert "gan: model.z_dim, model.noise, model.num_classes," in line and "loss.instance_noise" in line
