"""The TinyNAS supernet: an MCU-deployable once-for-all network.

MCUNet's backbone is MobileNetV2-like: inverted-residual blocks with ReLU6,
no squeeze-excite, no hard swish (TinyEngine's int8 kernels have neither). The
once-for-all machinery comes from ``hwaml_ofa_nas``: the supernet is an
:class:`hwaml_ofa_nas.supernet.OFAMobileNetV3` built with every stage set to
``act="relu", se=False`` (its elastic kernel, expand ratio and depth, its
progressive shrinking and its evolution searcher all apply unchanged); then
every ReLU and the fixed hard swish of its stem and head become ReLU6.
(ofa-nas has no switch for the stem/head activation and no ReLU6; see
:func:`to_relu6`.)

A TinyNAS search space ``S(w, r)`` is a width multiplier ``w`` and an input
resolution ``r`` (MCUNet, Sec. 3.1); :func:`space_arch` gives the supernet
shape of one, with the resolution fixed at ``r``. Sub-network configurations
are OFA's: ``{"resolution": r, "stage1": [{"kernel": k, "expand": e}, ...], ...}``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

from torch import nn

from hwaml_ofa_nas.supernet import MobileNetV3Subnet, OFAMobileNetV3, StageSpec, SupernetConfig, supernet_config

__all__ = [
    "BASE_ARCHS",
    "base_arch",
    "space_arch",
    "to_relu6",
    "MCUSupernet",
    "static_subnet",
    "subnet_from_config",
]


def _stages(*rows: tuple) -> list:
    return [StageSpec(width=w, stride=s, act="relu", se=False) for w, s in rows]


#: Base (width multiplier 1.0) shapes of the TinyNAS backbone. ``mcunet_digits``
#: suits scikit-learn's digits upsampled to 16-32 pixels (16x downsampling);
#: ``mcunet_imagenet`` is MCUNet's ImageNet-scale MobileNetV2 backbone.
BASE_ARCHS: Dict[str, SupernetConfig] = {
    "mcunet_digits": SupernetConfig(
        stages=_stages((16, 2), (24, 2), (40, 2)),
        n_classes=10,
        in_channels=1,
        stem_width=8,
        first_block_width=8,
        final_expand_width=96,
        feature_width=128,
        kernel_choices=(3, 5, 7),
        expand_choices=(3, 4, 6),
        depth_choices=(1, 2, 3),
        resolutions=(32,),
        dropout=0.0,
    ),
    "mcunet_imagenet": SupernetConfig(
        stages=_stages((24, 2), (40, 2), (80, 2), (96, 1), (192, 2), (320, 1)),
        n_classes=1000,
        in_channels=3,
        stem_width=32,
        first_block_width=16,
        final_expand_width=1280,
        feature_width=1280,
        kernel_choices=(3, 5, 7),
        expand_choices=(3, 4, 6),
        depth_choices=(2, 3, 4),
        resolutions=(160,),
        dropout=0.1,
    ),
    # the smallest useful instance, for unit tests
    "mcunet_test": SupernetConfig(
        stages=_stages((8, 2), (16, 2)),
        n_classes=10,
        in_channels=1,
        stem_width=8,
        first_block_width=8,
        final_expand_width=32,
        feature_width=32,
        kernel_choices=(3, 5),
        expand_choices=(3, 6),
        depth_choices=(1, 2),
        resolutions=(16,),
        dropout=0.0,
    ),
}


def base_arch(arch: Union[str, Mapping[str, Any], SupernetConfig]) -> SupernetConfig:
    """A base shape from its name (see :data:`BASE_ARCHS`), a dict or a config.

    Every stage must use ReLU without squeeze-excite: TinyEngine deploys neither
    hard swish nor squeeze-excite.
    """
    if isinstance(arch, str):
        if arch not in BASE_ARCHS:
            raise ValueError(f"unknown TinyNAS base arch {arch!r}; choose one of {sorted(BASE_ARCHS)} or pass a dict")
        cfg = BASE_ARCHS[arch]
    else:
        cfg = supernet_config(arch)
    for i, s in enumerate(cfg.stages):
        if s.act != "relu" or s.se:
            raise ValueError(f"base_arch.stages[{i}]: TinyNAS needs act='relu' and se=false (MCU kernels have no h-swish or squeeze-excite)")
    return cfg


def space_arch(base: Union[str, Mapping[str, Any], SupernetConfig], width: float, resolution: int) -> SupernetConfig:
    """The supernet shape of the search space ``S(width, resolution)``."""
    if width <= 0:
        raise ValueError(f"width multiplier must be > 0, got {width}")
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8, got {resolution}")
    return supernet_config(base_arch(base), {"width_mult": float(width), "resolutions": [int(resolution)]})


def to_relu6(module: nn.Module) -> nn.Module:
    """Replace every ``nn.ReLU`` and ``nn.Hardswish`` inside ``module`` by ``nn.ReLU6`` (in place)."""
    for name, child in module.named_children():
        if isinstance(child, (nn.ReLU, nn.Hardswish)):
            setattr(module, name, nn.ReLU6(inplace=True))
        else:
            to_relu6(child)
    return module


def _finish(sub: nn.Module, arch: SupernetConfig) -> nn.Module:
    to_relu6(sub)
    resolution = int(sub.config["resolution"])  # type: ignore[union-attr]
    sub.input_shape = (arch.in_channels, resolution, resolution)  # TinyEngine reads this
    return sub


class MCUSupernet(OFAMobileNetV3):
    """OFA supernet with ReLU6 everywhere, whose extracted sub-networks import
    into TinyEngine (conv / depthwise / pointwise / add / pool / linear / ReLU6).

    >>> net = MCUSupernet(space_arch("mcunet_test", 1.0, 16))
    >>> sub = net.get_active_subnet()     # static, ReLU6, ``sub.input_shape == (1, 16, 16)``
    """

    def __init__(self, arch: Union[str, Mapping[str, Any], SupernetConfig] = "mcunet_digits", overrides: Optional[Mapping[str, Any]] = None):
        arch = base_arch(arch) if isinstance(arch, str) and arch in BASE_ARCHS else arch
        super().__init__(arch, overrides)
        base_arch(self.arch)  # same checks for dict/config shapes
        to_relu6(self)

    def get_active_subnet(self) -> MobileNetV3Subnet:
        return _finish(super().get_active_subnet(), self.arch)  # type: ignore[return-value]


def static_subnet(arch: Union[str, Mapping[str, Any], SupernetConfig], config: Mapping[str, Any]) -> MobileNetV3Subnet:
    """A freshly initialised static (ReLU6) sub-network: same module names and
    shapes as the one :meth:`MCUSupernet.get_active_subnet` extracts, so a
    state dict saved from one loads into the other."""
    arch = supernet_config(arch)
    return _finish(MobileNetV3Subnet(arch, config), arch)  # type: ignore[return-value]


def subnet_from_config(config: Mapping[str, Any], arch: Any = "mcunet_digits", width: Optional[float] = None, resolution: Optional[int] = None) -> MobileNetV3Subnet:
    """Model factory for the TinyEngine backend: the static network of a
    sub-network ``config`` in a supernet shape (``arch``, optionally with the
    width multiplier of a search space)."""
    shape = supernet_config(arch) if not isinstance(arch, str) or arch not in BASE_ARCHS else BASE_ARCHS[arch]
    if width is not None:
        shape = supernet_config(shape, {"width_mult": float(width)})
    if resolution is not None and int(config["resolution"]) != int(resolution):
        raise ValueError(f"config resolution {config['resolution']} is not the search space's {resolution}")
    return static_subnet(shape, config)
