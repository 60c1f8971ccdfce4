"""Configuration as typed data: :mod:`.schema` (dataclasses, YAML, value checks; imports only gankit.core) and
:mod:`.layering` (layering defaults, data set, model, file and flags; checks names against the registries).

``from gankit.config import Config`` gives the schema alone and imports no registry; ``resolve`` and ``validate``
live in :mod:`gankit.config.layering` (also importable from here).
"""

from .schema import (  # noqa: F401
    BUDGET_KEYS,
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    budget_overrides,
    deep_merge,
    dump_yaml,
    parse_set,
    read_yaml,
    set_dotted,
    to_dict,
)


def __getattr__(name: str):  # noqa: ANN202 - module attribute hook
    # resolve/validate consult the registries, which import the schema: loaded on first use so that importing the
    # schema never imports a registry (no import circle).
    if name in ("resolve", "validate", "resume_config"):
        from . import layering

        return getattr(layering, name)
    raise AttributeError(f"module 'gankit.config' has no attribute {name!r}")
