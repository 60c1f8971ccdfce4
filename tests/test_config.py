from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from gankit.config import Config, parse_set
from gankit.config.layering import resolve
from gankit.core.errors import GankitError


def test_defaults_resolve_with_a_budget():
    cfg = resolve()
    assert cfg.data.name == "digits" and cfg.model.name == "dcgan"
    assert cfg.train.epochs > 0  # a default budget is filled in


def test_roundtrip_to_and_from_dict():
    cfg = resolve(overrides={"model.name": "mlp", "model.g_hidden": [128], "optim.lr_g": 1e-4})
    again = Config.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.model.g_hidden == (128,)
    assert cfg.model.d_batchnorm is False  # the mlp model's own default


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  z_dim: 10\noptim:\n  lr_g: 2e-4\ntrain:\n  steps: 7\n")
    cfg = resolve(file=f, overrides={"model.z_dim": 20})
    assert cfg.model.z_dim == 20 and cfg.train.steps == 7 and cfg.optim.lr_g == 2e-4


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"train.batchsize": 3}, "train.batchsize' (did you mean 'batch_size'"),
        ({"optim.lr_g": -1.0}, "optim.lr_g must be > 0"),
        ({"train.batch_size": 0}, "train.batch_size must be > 0"),
        ({"train.batch_size": "big"}, "train.batch_size: expected int"),
        ({"model.name": "dcgna"}, "unknown model 'dcgna' (did you mean 'dcgan'"),
        ({"loss.name": "hinje"}, "unknown loss 'hinje' (did you mean 'hinge'"),
        ({"data.split": "tran"}, "data.split"),
        ({"modle.z_dim": 3}, "unknown config key 'modle'"),
        ({"train.d_steps": 1.5}, "train.d_steps: expected int"),
        ({"data.image_size": 40}, "data.image_size=40"),
        ({"loss.name": "hinge", "loss.label_smoothing": 0.1}, "loss.label_smoothing has no meaning"),
        ({"loss.name": "wgan-gp"}, "model.d_batchnorm=false"),
        ({"optim.eps": -1.0}, "optim.eps must be > 0"),
        ({"model.max_channels": 0}, "model.max_channels must be >= 1"),
        ({"seed": 2**40}, "seed must be in [0, 2**32)"),
        ({"model.name": "pix2pix", "train.d_steps": 2}, "train.d_steps=2"),
    ],
)
def test_bad_values_name_the_key(overrides, needle):
    with pytest.raises(GankitError) as e:
        resolve(overrides=overrides)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  z_dim: [1\n")
    with pytest.raises(GankitError, match="not valid YAML"):
        resolve(file=bad)
    with pytest.raises(GankitError, match="does not exist"):
        resolve(file=tmp_path / "nope.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(GankitError, match="expected a mapping"):
        resolve(file=lst)


def test_parse_set():
    assert parse_set("optim.lr_g=1e-4") == ("optim.lr_g", 1e-4)
    assert parse_set("model.g_hidden=[128, 128]") == ("model.g_hidden", [128, 128])
    assert parse_set("train.channels_last=false") == ("train.channels_last", False)
    with pytest.raises(GankitError):
        parse_set("novalue")


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["seed", "data", "model", "train", "loss", "optim", "zzz"]),
        st.one_of(
            st.integers(),
            st.floats(allow_nan=True),
            st.text(max_size=5),
            st.none(),
            st.booleans(),
            st.dictionaries(
                st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=4), st.floats()), max_size=3
            ),
        ),
        max_size=4,
    )
)
def test_fuzzed_configs_give_config_or_user_error(d):
    """Whatever the YAML holds, the parser returns a Config or raises GankitError, never anything else."""
    try:
        resolve(base=d)
    except GankitError as e:
        assert "\n" not in str(e)


def test_api_budget_replaces_the_file_budget(tmp_path):
    from gankit.config import budget_overrides

    assert budget_overrides({"train.epochs": 3}) == {"train.steps": 0, "train.epochs": 3, "train.max_minutes": 0}
    assert budget_overrides({"model.z_dim": 3}) == {"model.z_dim": 3}


def test_a_model_key_the_model_does_not_read_is_an_error() -> None:
    from gankit.config.layering import resolve as _resolve

    with pytest.raises(GankitError, match=r"model.g_channels is not a setting of model 'mlp'.*g_hidden"):
        _resolve(overrides={"model.name": "mlp", "model.g_channels": 8})
    with pytest.raises(GankitError, match=r"model.z_dim is not a setting of model 'pix2pix'"):
        _resolve(overrides={"model.name": "pix2pix", "model.z_dim": 8})
    # The model's own keys, and keys set beneath the user (data-set suggestions), are fine.
    assert _resolve(overrides={"model.name": "mlp", "model.g_hidden": [16]}).model.g_hidden == (16,)


@pytest.mark.parametrize("model", ["dcgan", "mlp", "pix2pix", "cyclegan"])
def test_a_saved_run_config_re_runs(tmp_path, model) -> None:
    """config.yaml lists every model key (other models' keys at their defaults): `gankit train RUN/config.yaml` must
    accept it and give the same config; a non-default value for a key the model does not read is still refused."""
    from gankit.config.layering import resolve
    from gankit.config.schema import dump_yaml

    cfg = resolve(overrides={"model.name": model, "train.steps": 3})
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(cfg))
    assert resolve(file=path).to_dict() == cfg.to_dict()
    import yaml

    saved = yaml.safe_load(path.read_text())
    other, value = ("g_channels", 999) if model == "mlp" else ("g_hidden", [7])
    saved["model"][other] = value  # asks for something the model would ignore
    path.write_text(yaml.safe_dump(saved))
    with pytest.raises(GankitError, match=f"model.{other} is not a setting of model '{model}'"):
        resolve(file=path)


def test_resume_config_refuses_a_change_and_leaves_the_saved_dict_alone() -> None:
    """resume_config once layered the overrides into the saved config's own sections, so the change it checks for
    was in both and passed (the training loop's own check caught it later)."""
    from gankit.config.layering import resume_config

    saved = resolve(overrides={"train.steps": 3}).to_dict()
    with pytest.raises(GankitError, match=r"model.z_dim: 100 -> 7"):
        resume_config(saved, {"model.z_dim": 7})
    assert saved["model"]["z_dim"] == 100
