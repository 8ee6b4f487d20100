"""The one registry pattern: name -> entry, filled by a decorator; a miss lists what is registered."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = entry
            return entry

        return deco

    def lookup(self, name: str, shown: str | None = None):
        """The entry for `name`; `shown` is what the user wrote, if it differs (e.g. `timm:<model>`)."""
        try:
            return self[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {shown or name!r}; registered: {sorted(self)}") from None


def import_submodules(package: str) -> list[str]:
    """Import every module of `package` (each registers its entries): plugins are discovered, not listed,
    so adding an attributor, transform, method or report is one new module."""
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    names = [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    for name in names:
        importlib.import_module(name)
    return names
