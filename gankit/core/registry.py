"""A small typed registry: names map to objects of one type (often a frozen spec dataclass), and the CLI takes its
``choices`` from here. There is no free-form metadata: what a registry knows about an entry is a field of its spec."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import GankitError

T = TypeVar("T")


def closest(name: str, options: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry(Generic[T]):
    """Maps names to objects. ``base``: every entry must be an instance of it (checked when registering, so a wrong
    entry fails at import, not when a user picks it). Unknown names give a one-line user error."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        if self.base is not None and not isinstance(obj, self.base):
            raise TypeError(f"{self.kind} '{name}' must be a {self.base.__name__}, got {type(obj).__name__}")
        self._items[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@REG.register("name")``."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise GankitError(
                f"unknown {self.kind} '{name}'{closest(name, self.names())}; choose one of: {', '.join(self.names())}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
