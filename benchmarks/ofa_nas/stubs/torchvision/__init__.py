"""A stand-in for torchvision so that the reference `ofa` package imports.

Only for benchmarks/ofa_nas: torchvision cannot be installed in this
environment and the parts of `ofa` the benchmarks use (the evolution finder and
the architecture encoder) never call it. Anything touched raises.
"""

import sys
import types


def _unavailable(self, *args, **kwargs):  # pragma: no cover - never called by the benchmarks
    raise RuntimeError(f"{type(self).__name__} is a benchmark stub; torchvision is not installed")


class _Missing(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():  # a class (ofa subclasses RandomResizedCrop, ImageFolder ...)
            return type(name, (), {"__init__": _unavailable})
        return _Missing(f"{self.__name__}.{name}")

    def __call__(self, *args, **kwargs):  # pragma: no cover - never called by the benchmarks
        raise RuntimeError(f"{self.__name__} is a benchmark stub; torchvision is not installed")


for _name in ("transforms", "datasets", "models", "transforms.functional", "datasets.folder", "utils"):
    _mod = _Missing(f"torchvision.{_name}")
    sys.modules[f"torchvision.{_name}"] = _mod
    parent, _, child = f"torchvision.{_name}".rpartition(".")
    if parent == "torchvision":
        globals()[child] = _mod
    else:
        setattr(sys.modules[parent], child, _mod)

__version__ = "0.0-stub"
