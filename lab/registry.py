"""One small registry class behind every extension point of the lab.

Estimators, clip-bound measures, tasks and rollout backends each own one
``Registry``. Names are the ones users already know from verl/TRL where such a
name exists (``grpo``, ``rloo``, ``token-mean``, ``k3``); new names only for
what is the lab's own.

>>> colors = Registry("color")
>>> @colors.register("red")
... def red():
...     return "#f00"
>>> colors.get("red")()
'#f00'
>>> colors.available()
['red']
>>> colors.get("rde")
Traceback (most recent call last):
...
ValueError: unknown color 'rde'; available: red
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table that rejects duplicates and lists valid names on a miss."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``.

        Raises ``ValueError`` if the name is already taken (registering twice is
        almost always two modules fighting over one name).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def _add(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered; pick another name")
            self._items[name] = o
            return o

        if obj is not None:
            return _add(obj)
        return _add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and interactive experiments)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}"
            ) from None

    def available(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(self.available())


Factory = Callable[..., T]
