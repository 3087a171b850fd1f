"""A batch-1 friendly ProxylessNAS-style backbone: GroupNorm + weight standardisation.

TinyTL trains at small batch sizes on the device, where batch norm's statistics
are noise; the paper replaces every batch norm by group norm (8 channels per
group) and every convolution by a weight-standardised one. :func:`to_groupnorm_ws`
does that to any network (keeping its weights), :class:`MobileNetV2Backbone` is
the project's own MobileNetV2 / ProxylessNAS-Mobile-shaped network built that
way from the start.

The inverted-residual block keeps its main branch (``block.main``) apart from the
identity shortcut, as ProxylessNAS does, so a lite residual module wraps exactly
the main branch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "WSConv2d",
    "group_norm",
    "gn_groups",
    "standardise_weight",
    "to_groupnorm_ws",
    "make_divisible",
    "MBConv",
    "InvertedResidual",
    "BackboneConfig",
    "MobileNetV2Backbone",
    "PRESETS",
    "backbone_config",
    "classifier_of",
    "replace_classifier",
]

#: TinyTL's group size: channels per group of every group norm
CHANNELS_PER_GROUP = 8
WS_EPS = 1e-5


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """MobileNet's channel rounding: a multiple of ``divisor``, never more than 10% below ``value``."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def gn_groups(channels: int, per_group: int = CHANNELS_PER_GROUP) -> int:
    """Number of groups for ``channels`` at ``per_group`` channels each (the largest divisor at or below)."""
    groups = max(1, channels // per_group)
    while channels % groups:
        groups -= 1
    return groups


def group_norm(channels: int, per_group: int = CHANNELS_PER_GROUP) -> nn.GroupNorm:
    return nn.GroupNorm(gn_groups(channels, per_group), channels)


def standardise_weight(weight: torch.Tensor, eps: float = WS_EPS) -> torch.Tensor:
    """Weight standardisation: zero mean and unit standard deviation per output filter."""
    flat = weight.reshape(weight.shape[0], -1)
    mean = flat.mean(1, keepdim=True)
    centred = flat - mean
    std = centred.std(1, keepdim=True) + eps
    return (centred / std).reshape_as(weight)


class WSConv2d(nn.Conv2d):
    """A convolution whose weight is standardised on every forward (Qiao et al.)."""

    ws_eps: float = WS_EPS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, standardise_weight(self.weight, self.ws_eps), self.bias, self.stride, self.padding, self.dilation, self.groups)


def _ws_conv_from(conv: nn.Conv2d) -> WSConv2d:
    new = WSConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups, conv.bias is not None
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _gn_from(bn: nn.modules.batchnorm._BatchNorm, per_group: int) -> nn.GroupNorm:
    gn = group_norm(bn.num_features, per_group)
    if bn.affine:
        with torch.no_grad():
            gn.weight.copy_(bn.weight)
            gn.bias.copy_(bn.bias)
    return gn


def to_groupnorm_ws(net: nn.Module, per_group: int = CHANNELS_PER_GROUP, weight_standardisation: bool = True) -> nn.Module:
    """Replace every batch norm by a group norm and every convolution by a
    weight-standardised one, in place (scales, shifts and conv weights kept).
    Works on any network: the replacement is by module type, not by family."""
    for name, child in list(net.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, _gn_from(child, per_group))
        elif weight_standardisation and isinstance(child, nn.Conv2d) and not isinstance(child, WSConv2d):
            setattr(net, name, _ws_conv_from(child))
        else:
            to_groupnorm_ws(child, per_group, weight_standardisation)
    return net


# ---------------------------------------------------------------------------
# the project's backbone
# ---------------------------------------------------------------------------


def _conv_norm_act(cin: int, cout: int, kernel: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: "OrderedDict[str, nn.Module]" = OrderedDict(
        conv=WSConv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), norm=group_norm(cout)
    )
    if act:
        layers["act"] = nn.ReLU6(inplace=False)
    return nn.Sequential(layers)


class MBConv(nn.Module):
    """The main branch of a mobile inverted-residual block: 1x1 expansion (absent at
    expand 1), k x k depthwise convolution, 1x1 linear projection."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: float):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel, self.stride, self.expand = in_channels, out_channels, kernel, stride, expand
        mid = make_divisible(in_channels * expand) if expand != 1 else in_channels
        self.mid_channels = mid
        self.inverted_bottleneck = _conv_norm_act(in_channels, mid, 1, 1) if expand != 1 else None
        self.depth_conv = _conv_norm_act(mid, mid, kernel, stride, groups=mid)
        self.point_linear = _conv_norm_act(mid, out_channels, 1, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class InvertedResidual(nn.Module):
    """``main(x) + x`` when the shapes allow the identity shortcut, else ``main(x)``."""

    def __init__(self, main: nn.Module, shortcut: bool):
        super().__init__()
        self.main = main
        self.residual = bool(shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        return y + x if self.residual else y


@dataclass(frozen=True)
class BackboneConfig:
    """Shape of a :class:`MobileNetV2Backbone`.

    :param stages: ``(expand, width, blocks, stride, kernel)`` per stage after the first block.
    :param in_channels: image channels (1 for grayscale sources).
    :param resolution: input height and width.
    :param n_classes: classifier outputs (the source task's classes).
    """

    stages: Tuple[Tuple[float, int, int, int, int], ...] = ((6, 16, 2, 2, 3), (6, 24, 2, 2, 5), (6, 32, 2, 1, 3))
    in_channels: int = 1
    resolution: int = 32
    stem_width: int = 16
    first_block_width: int = 8
    feature_width: int = 128
    n_classes: int = 5
    dropout: float = 0.2

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["stages"] = [list(s) for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BackboneConfig":
        known = {f for f in cls.__dataclass_fields__}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"backbone: unknown key(s) {bad}; known: {sorted(known)}")
        d = dict(d)
        if "stages" in d:
            d["stages"] = tuple(tuple(s) for s in d["stages"])
        return cls(**d)


#: ``proxyless_tiny``: ProxylessNAS-Mobile's layout at 1/8 width and 32x32 input
#: (Fashion-MNIST scale); ``test``: the smallest useful one, for unit tests;
#: ``mobilenetv2_224``: MobileNetV2 1.0 at 224 px, the paper's activation-dominated regime.
PRESETS: Dict[str, BackboneConfig] = {
    "proxyless_tiny": BackboneConfig(),
    "test": BackboneConfig(stages=((3, 8, 1, 2, 3), (3, 16, 2, 2, 5)), resolution=16, stem_width=8, first_block_width=8, feature_width=32),
    # MobileNetV2 1.0 at 224x224x3 (ImageNet scale, GroupNorm + WS): for memory profiles at the
    # paper's resolution; pretraining it is beyond a CPU (pass pretrain.checkpoint for your own)
    "mobilenetv2_224": BackboneConfig(
        stages=((6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3), (6, 96, 3, 1, 3), (6, 160, 3, 2, 3), (6, 320, 1, 1, 3)),
        in_channels=3,
        resolution=224,
        stem_width=32,
        first_block_width=16,
        feature_width=1280,
        n_classes=1000,
    ),
}


def backbone_config(arch: Union[str, Mapping[str, Any], BackboneConfig], overrides: Optional[Mapping[str, Any]] = None) -> BackboneConfig:
    if isinstance(arch, BackboneConfig):
        base = arch
    elif isinstance(arch, str):
        if arch not in PRESETS:
            raise ValueError(f"backbone arch {arch!r} is not one of {sorted(PRESETS)}")
        base = PRESETS[arch]
    else:
        base = BackboneConfig.from_dict(arch)
    if overrides:
        base = BackboneConfig.from_dict({**base.to_dict(), **dict(overrides)})
    return base


class MobileNetV2Backbone(nn.Module):
    """ProxylessNAS-Mobile-shaped MobileNetV2 with GroupNorm + weight standardisation.

    stem 3x3/2 -> first block (expand 1) -> stages of inverted residuals -> 1x1
    feature conv -> global pool -> dropout -> classifier.
    """

    def __init__(self, arch: Union[str, Mapping[str, Any], BackboneConfig] = "proxyless_tiny"):
        super().__init__()
        self.arch = backbone_config(arch)
        a = self.arch
        self.stem = _conv_norm_act(a.in_channels, a.stem_width, 3, 2)
        blocks: List[nn.Module] = [InvertedResidual(MBConv(a.stem_width, a.first_block_width, 3, 1, 1), a.stem_width == a.first_block_width)]
        cin = a.first_block_width
        for expand, width, n, stride, kernel in a.stages:
            for i in range(int(n)):
                s = int(stride) if i == 0 else 1
                blocks.append(InvertedResidual(MBConv(cin, int(width), int(kernel), s, float(expand)), s == 1 and cin == width))
                cin = int(width)
        self.blocks = nn.Sequential(*blocks)
        self.feature_mix = _conv_norm_act(cin, a.feature_width, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(a.dropout)
        self.classifier = nn.Linear(a.feature_width, a.n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_mix(self.blocks(self.stem(x)))
        x = self.pool(x).flatten(1)
        return self.classifier(self.dropout(x))


def classifier_of(net: nn.Module) -> Tuple[nn.Module, str, nn.Linear]:
    """The network's classifier: its last ``nn.Linear`` (parent, attribute name, layer)."""
    found = None
    for parent_name, parent in net.named_modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child)
    if found is None:
        raise ValueError(f"{type(net).__name__} has no nn.Linear layer to use as the classifier")
    return found


def replace_classifier(net: nn.Module, n_classes: int, seed: int = 0) -> nn.Linear:
    """A freshly initialised classifier for ``n_classes`` in place of the last linear layer."""
    parent, name, old = classifier_of(net)
    g = torch.Generator().manual_seed(seed)
    new = nn.Linear(old.in_features, n_classes)
    with torch.no_grad():
        new.weight.normal_(0, 0.01, generator=g)
        new.bias.zero_()
    setattr(parent, name, new)
    return new
