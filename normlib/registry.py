"""Name -> constructor registries, so a study config can name a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to entries (constructors, or a dataset's source) with a
    decorator to fill it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that files its argument under ``name`` (twice is an error)."""

        def add(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = fn
            return fn

        return add

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry of ``name``; ValueError listing the valid names if there is none."""
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the constructor registered as ``name`` with ``kwargs``."""
        constructor = self.get(name)
        if not callable(constructor):
            raise TypeError(f"{self.kind} {name!r} is not a constructor")
        return constructor(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


MODELS: Registry[Callable[..., Any]] = Registry("model")
