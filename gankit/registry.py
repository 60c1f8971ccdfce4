"""A small typed registry: names map to builders, and the CLI takes its ``choices`` from here."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import GankitError

T = TypeVar("T")


def closest(name: str, options: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry(Generic[T]):
    """Maps names to objects (classes, functions, specs). Unknown names give a one-line user error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", key=value)``; ``meta`` is kept for ``meta(name)``."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            self._meta[name] = dict(meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> T:
        return self.register(name, **meta)(obj)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise GankitError(
                f"unknown {self.kind} '{name}'{closest(name, self.names())}; choose one of: {', '.join(self.names())}"
            )
        return self._items[name]

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
