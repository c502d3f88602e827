"""One tiny registry per kind of component (backbones, DA objectives, samplers, datasets).

Components are built by name with explicit keyword arguments, so a config never carries
import paths and a typo lists the valid choices.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REG.register("name")`` or ``@REG.register()`` (uses ``__name__``)."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if key in self._entries:
                raise KeyError(f"{self.kind} '{key}' is already registered")
            self._entries[key] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise KeyError(
                f"unknown {self.kind} '{name}'; valid names: {', '.join(self.names()) or '(none)'}"
            )
        return self._entries[name]

    def build(self, name: str, **kwargs: Any) -> T:
        """Build ``name`` with ``kwargs``; keyword arguments set to None are dropped so the
        factory's own defaults apply."""
        factory = self.get(name)
        return factory(**{k: v for k, v in kwargs.items() if v is not None})

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
