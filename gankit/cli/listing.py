"""`gankit list`: what can be named in a config, and the configs that ship with gankit (package data)."""

from __future__ import annotations

import argparse
from pathlib import Path


def shipped_configs(spaces: bool = False) -> list[Path]:
    """The YAML configs inside the installed package (gankit/configs/), so they exist in a wheel install too; with
    ``spaces``, the search spaces for `gankit tune --space` (gankit/configs/spaces/) instead."""
    found = Path(__file__).resolve().parent.parent.joinpath("configs").rglob("*.yaml")
    return sorted(p for p in found if (p.parent.name == "spaces") == spaces)


def cmd_list(args: argparse.Namespace) -> int:
    from ..data import DATASETS
    from ..losses import LOSSES
    from ..nets import MODELS
    from ..optim import OPTIMIZERS

    from ..config.schema import FAMILY_KEYS, SECTIONS

    for title, reg in [("data sets", DATASETS), ("models", MODELS), ("losses", LOSSES), ("optimizers", OPTIMIZERS)]:
        print(f"{title}: {', '.join(reg.names())}")
    # Keys a family declares beside its task, which gankit/config/schema.py does not list.
    own: dict[str, list[str]] = {}
    for section in SECTIONS:
        for name, key in FAMILY_KEYS.section(section).items():
            own.setdefault(key.family, []).append(f"{section}.{name}")
    if own:
        print("families' own config keys: " + "; ".join(f"{f}: {', '.join(k)}" for f, k in sorted(own.items())))
    for title, files in (
        ("shipped configs", shipped_configs()),
        ("search spaces (gankit tune --space)", shipped_configs(spaces=True)),
    ):
        if files:
            print(f"{title}:")
            for c in files:
                print(f"  {c.relative_to(Path.cwd()) if c.is_relative_to(Path.cwd()) else c}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser(
        "list", help="list data sets, models, losses, optimizers, the families' own config keys and shipped configs"
    )
    ls.set_defaults(func=cmd_list)
