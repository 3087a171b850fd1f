"""Once-for-all network architecture search (Cai et al., ICLR 2020) as a hwaml plugin.

Train one elastic MobileNetV3 supernet with progressive shrinking, then
specialise a sub-network per hardware target without retraining: an accuracy
predictor, MACs/parameter counts and a latency look-up table measured on your
own CPU guide an evolutionary search. The elastic modules in
:mod:`hwaml_ofa_nas.elastic` are public (tinynas and apq build on them).
"""

from .elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticDepthwiseConv2d,
    ElasticLinear,
    ElasticMBConv,
    ElasticSqueezeExcite,
    MBConvBlock,
    SqueezeExcite,
    make_divisible,
)
from .supernet import PRESETS, MobileNetV3Subnet, OFAMobileNetV3, SupernetConfig, StageSpec, build_subnet, layer_specs, supernet_config

__version__ = "0.1.0"

__all__ = [
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticDepthwiseConv2d",
    "ElasticLinear",
    "ElasticMBConv",
    "ElasticSqueezeExcite",
    "MBConvBlock",
    "SqueezeExcite",
    "make_divisible",
    "PRESETS",
    "MobileNetV3Subnet",
    "OFAMobileNetV3",
    "SupernetConfig",
    "StageSpec",
    "build_subnet",
    "layer_specs",
    "supernet_config",
]
