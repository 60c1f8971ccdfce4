"""Layering a run's config and checking its names against the registries.

Defaults <- the data set's suggested settings <- the model's own defaults <- ``base`` <- the YAML file <- flags and
``--set`` overrides. This one step serves ``gankit train``, ``--resume``, ``sweep`` and the Python API. It sits above
the registries (it asks them for names, defaults and checks); :mod:`.schema` below them knows none of them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..core.errors import GankitError
from ..core.registry import closest
from ..data.augment import build_augment
from ..data.registry import DATASETS
from ..losses import LOSSES
from ..nets import MODELS
from ..optim import OPTIMIZERS
from .schema import (
    Config,
    DataConfig,
    ModelConfig,
    check_values,
    deep_merge,
    read_yaml,
    refuse_resume_change,
    set_dotted,
    to_dict,
)


def resolve(
    file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults <- data set <- model defaults <- ``base`` <- YAML ``file`` <- dotted ``overrides``; validated."""
    layered: dict[str, Any] = dict(base or {})
    if file is not None:
        layered = deep_merge(layered, read_yaml(file))
    # A saved run's config.yaml lists every model key at its value, the other models' keys at their defaults: those
    # say nothing, so `gankit train RUN/config.yaml` re-runs the run. A key the model does not read is an error only
    # where it asks for something (a value other than the default, or any value given on the command line).
    file_model = dict(layered["model"]) if isinstance(layered.get("model"), dict) else {}
    user_model_keys: set[str] = set()  # the model keys that ask for something (checked below)
    for key, value in (overrides or {}).items():
        set_dotted(layered, key, value)
        if key.startswith("model."):
            user_model_keys.add(key.split(".", 1)[1])

    def section(name: str) -> dict[str, Any]:
        sec = layered.get(name)
        return sec if isinstance(sec, dict) else {}

    if "name" in section("model"):
        user_model_keys.add("name")
    model_name = str(section("model").get("name", ModelConfig.name))
    data_name = str(section("data").get("name", DataConfig.name))
    if "name" not in section("data") and model_name in MODELS and MODELS.get(model_name).default_data:
        # An image-to-image model with no data named trains on its own embedded default.
        data_name = str(MODELS.get(model_name).default_data)
        set_dotted(layered, "data.name", data_name)
    # Beneath the user's layers: the data set's suggested model settings, then the model's own defaults.
    under: dict[str, Any] = {}
    if data_name in DATASETS:
        for key, value in DATASETS.get(data_name).defaults.items():
            set_dotted(under, key, value)
    if "name" not in section("model"):
        model_name = str(under.get("model", {}).get("name", model_name))  # e.g. paired data -> pix2pix
    spec = MODELS.get(model_name) if model_name in MODELS else None
    under = deep_merge(
        {"model": dict(spec.defaults) if spec else {}, "train": dict(spec.train_defaults) if spec else {}}, under
    )
    layered = deep_merge(under, layered)
    baseline = deep_merge(to_dict(ModelConfig()), under["model"])
    user_model_keys |= {k for k, v in file_model.items() if k not in baseline or not _same(v, baseline[k])}
    cfg = Config.from_dict(layered)
    check_model_keys(cfg.model.name, user_model_keys)
    if not (cfg.train.steps or cfg.train.epochs or cfg.train.max_minutes):
        # No budget given: the data set's own default (a few minutes on a laptop for the embedded ones).
        cfg = cfg.replace(**{"train.epochs": DATASETS.get(cfg.data.name).default_epochs})
    validate(cfg)
    return cfg


def _same(a: Any, b: Any) -> bool:
    """YAML gives lists where the schema holds tuples."""
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v
    return norm(a) == norm(b)


def check_model_keys(model_name: str, keys: set[str]) -> None:
    """A ``model.*`` key the chosen model does not read is an error, not silently ignored."""
    spec = MODELS.get(model_name)
    unused = sorted(keys - spec.fields)
    if unused:
        key = unused[0]
        raise GankitError(
            f"model.{key} is not a setting of model '{model_name}'{closest(key, sorted(spec.fields))}; "
            f"its keys: {', '.join(sorted(spec.fields - {'name'}))}"
        )


def resume_config(saved: dict[str, Any], overrides: dict[str, Any], run_dir: Any = "RUN") -> Config:
    """A run's saved config with command-line overrides on top; validated. Only a budget or a side setting may
    change (:data:`~gankit.config.schema.RESUME_MAY_CHANGE`): anything else is a one-line error naming the key."""
    layered = copy.deepcopy(saved)  # not deep_merge({}, saved): its sections are saved's own, which set_dotted edits
    for key, value in overrides.items():
        set_dotted(layered, key, value)
    cfg = Config.from_dict(layered)
    refuse_resume_change(Config.from_dict(saved).to_dict(), cfg.to_dict(), run_dir)
    check_model_keys(cfg.model.name, {k.split(".", 1)[1] for k in overrides if k.startswith("model.")})
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Every check of a whole config: values (schema), names (registries), and the model's own check."""
    check_values(cfg)
    if cfg.data.image_height and (not MODELS.get(cfg.model.name).non_square or DATASETS.get(cfg.data.name).embedded):
        able = ", ".join(n for n, s in MODELS.items() if s.non_square)
        raise GankitError(
            f"data.image_height={cfg.data.image_height}: non-square images are for your own data "
            f"(not the embedded sets) and the models that draw them ({able}); model "
            f"'{cfg.model.name}' on '{cfg.data.name}' trains square images: set data.image_height=0"
        )
    if cfg.data.resize != "auto" and not DATASETS.get(cfg.data.name).own_resize:
        raise GankitError(
            f"data.resize={cfg.data.resize} is for image folders and pairs of any aspect ratio; data "
            f"'{cfg.data.name}' is square already: leave data.resize=auto"
        )
    spec = MODELS.get(cfg.model.name)
    LOSSES.get(cfg.loss.name)
    OPTIMIZERS.get(cfg.optim.name)
    loss = LOSSES.get(cfg.loss.name)
    if cfg.loss.label_smoothing and not loss.smoothing:
        raise GankitError(
            f"loss.label_smoothing has no meaning for loss '{cfg.loss.name}' (no target label); set it to 0"
        )
    # Only for models with a BatchNorm switch in D (the GAN family's model.d_batchnorm); pix2pix and CycleGAN
    # refuse these losses themselves.
    if loss.gradient_penalty and "d_batchnorm" in spec.fields and cfg.model.d_batchnorm:
        raise GankitError(
            f"loss '{cfg.loss.name}' penalises each sample's gradient, which BatchNorm in D mixes across the batch; "
            f"add --set model.d_batchnorm=false"
        )
    build_augment(cfg.train.augment, seed=0)  # an unknown op is a one-line error now, not at the first step
    if spec.check is not None:
        spec.check(cfg)
