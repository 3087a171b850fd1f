"""Once-for-all network architecture search (Cai et al., ICLR 2020) as a hwaml plugin.

Train one elastic MobileNetV3 supernet with progressive shrinking, then
specialise a sub-network per hardware target without retraining: an accuracy
predictor, MACs/parameter counts and a latency look-up table measured on your
own CPU guide an evolutionary search. The elastic modules in
:mod:`hwaml_ofa_nas.elastic` are public (tinynas and apq build on them).

Importing the package is cheap (every ``hwaml`` command loads every plugin):
the names below are resolved from their submodules, and torch imported, on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ElasticBatchNorm2d": "elastic",
    "ElasticConv2d": "elastic",
    "ElasticDepthwiseConv2d": "elastic",
    "ElasticLinear": "elastic",
    "ElasticMBConv": "elastic",
    "ElasticSqueezeExcite": "elastic",
    "MBConvBlock": "elastic",
    "SqueezeExcite": "elastic",
    "make_divisible": "elastic",
    "PRESETS": "supernet",
    "MobileNetV3Subnet": "supernet",
    "OFAMobileNetV3": "supernet",
    "SupernetConfig": "supernet",
    "StageSpec": "supernet",
    "build_subnet": "supernet",
    "layer_specs": "supernet",
    "supernet_config": "supernet",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
