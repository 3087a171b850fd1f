"""Lazy package exports for plugins.

Every ``hwaml`` command loads every plugin's entry point, which imports the
plugin's package ``__init__``. A plugin whose ``__init__`` imports torch or scipy
makes every command slow. ``lazy_exports`` lets a package name its public API
while importing each submodule only when one of its names is first used::

    # src/hwaml_myplugin/__init__.py
    from hwaml.lazy import lazy_exports

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {
        "MyEvaluator": ".evaluator",
        "train": ".training",
    })
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Dict, List, Mapping, Tuple


def lazy_exports(package: str, exports: Mapping[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]], List[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for ``package``.

    ``exports`` maps each public name to the submodule that defines it, relative
    (``".engine"``) or absolute. A resolved name is cached in the package's
    namespace, so the lookup happens once.
    """
    table: Dict[str, str] = dict(exports)

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name], package), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__, sorted(table)
