"""PEP 562 lazy public names, for the packages whose ``import`` must not import torch (``import deeplab``,
``search.py --help``) or load every callback (``deeplab.callbacks``)."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

__all__ = ["lazy_names"]


def lazy_names(package: str, public: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, whose name ``N`` lives in module
    ``public[N]`` (absolute, or relative to ``package`` with a leading dot). A name is imported on first
    use and then kept in the package's namespace, so later lookups skip ``__getattr__``."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = public.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
