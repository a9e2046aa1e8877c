"""A named registry of backend objects, with built-ins loaded lazily from a list of modules.

Formats and runners are both "one object per seam": the registry keeps them by name, in
registration order (for formats, the order of content detection), loads the built-in ones on
first use from ``modules`` (each exposing ``attribute``: one object or a tuple of them), and
lets a user's registration take precedence over a built-in of the same name.
"""

from __future__ import annotations

import importlib
import threading
from typing import Generic, Protocol, TypeVar

from .errors import InvalidArgumentError


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Objects of one kind by name; built-ins imported from ``package.modules`` on first use."""

    def __init__(self, what: str, package: str, modules: tuple[str, ...], attribute: str) -> None:
        self.what = what
        self.package = package
        self.modules = modules
        self.attribute = attribute
        self._lock = threading.Lock()
        self._items: dict[str, T] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        modules = [importlib.import_module(f"{self.package}.{m}") for m in self.modules]
        with self._lock:
            if self._loaded:
                return
            builtin: list[T] = []
            for module in modules:
                value = getattr(module, self.attribute)
                builtin.extend(value if isinstance(value, tuple) else (value,))
            custom = dict(self._items)
            self._items = {item.name: item for item in builtin}
            self._items.update(custom)  # a user's registration wins over a built-in
            self._loaded = True

    async def load_off_loop(self) -> None:
        """Import the built-ins in the blocking pool: their first import takes tens of ms
        (the runner modules bring in the pipeline), which must not hold an event loop."""
        if not self._loaded:
            from .context import run_blocking

            await run_blocking(self._load)

    def register(self, item: T, *, replace: bool = False) -> T:
        if not item.name:
            raise InvalidArgumentError(f"a {self.what} needs a name")
        self._load()
        with self._lock:
            if item.name in self._items and not replace:
                raise InvalidArgumentError(
                    f"a {self.what} named {item.name!r} is already registered; pass replace=True"
                )
            self._items[item.name] = item
        return item

    def unregister(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)

    def all(self) -> list[T]:
        self._load()
        return list(self._items.values())

    def get(self, name: str) -> T | None:
        self._load()
        return self._items.get(name)

    def names(self) -> list[str]:
        return [item.name for item in self.all()]
