"""Configuration as typed data: :mod:`.schema` (dataclasses, YAML, value checks; imports only gankit.core) and
:mod:`.layering` (layering defaults, data set, model, file and flags; checks names against the registries).

``from gankit.config import Config`` gives the schema alone and imports no registry; ``resolve`` and ``validate``
live in :mod:`gankit.config.layering` (and ``gankit.resolve``).
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
