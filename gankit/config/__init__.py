"""Configuration as typed data: :mod:`.schema` (dataclasses, YAML, value checks; imports only gankit.core) and
:mod:`.layering` (layering defaults, data set, model, file and flags; checks names against the registries).

``from gankit.config import Config`` gives the schema alone and imports no registry; the model families (and the
config keys they declare with :func:`family_config`) are imported the first time a config is read. ``resolve`` and
``validate`` live in :mod:`gankit.config.layering` (and ``gankit.resolve``).
"""

from .schema import (  # noqa: F401
    BUDGET_KEYS,
    FAMILY_KEYS,
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    budget_overrides,
    deep_merge,
    dump_yaml,
    family_config,
    parse_set,
    read_yaml,
    set_dotted,
    to_dict,
)
