"""Elastic (weight-shared) building blocks of a once-for-all supernet.

These modules hold the weights of the *largest* layer and compute with a slice
of them chosen at run time, so that every sub-network shares its weights with
the supernet (Cai et al., "Once-for-All: Train One Network and Specialize it for
Efficient Deployment", ICLR 2020):

* :class:`ElasticConv2d` - a 1x1 (or any dense) convolution whose input width
  follows its input tensor and whose output width is ``active_out_channels``;
* :class:`ElasticDepthwiseConv2d` - a depthwise convolution with an elastic
  kernel size: the k x k kernel is the centre of the next larger kernel passed
  through a learned k^2 x k^2 transform (one per layer and per size step);
* :class:`ElasticBatchNorm2d` - batch norm over the first channels of its
  statistics and affine parameters;
* :class:`ElasticLinear` - a linear layer with elastic input width;
* :class:`ElasticSqueezeExcite` - squeeze-and-excite whose bottleneck width
  follows the (elastic) width it gates;
* :class:`ElasticMBConv` - the MobileNetV3 inverted-residual block with an
  elastic kernel size and expand ratio, and channel sorting by importance.

Every elastic module has ``to_static(...)``, which copies the active slice into
a plain ``torch.nn`` module, so an extracted sub-network has no elastic code.
Other plugins (tinynas, apq) build their own supernets from these modules.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "make_divisible",
    "build_activation",
    "ElasticConv2d",
    "ElasticDepthwiseConv2d",
    "ElasticBatchNorm2d",
    "ElasticLinear",
    "ElasticSqueezeExcite",
    "ElasticMBConv",
    "SqueezeExcite",
    "MBConvBlock",
    "ACTIVATIONS",
]

ACTIVATIONS = ("relu", "hswish")


@lru_cache(maxsize=65536)  # pure and called for every block of every costed sub-network
def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNet's rule: never
    drop more than 10% below ``value``)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def build_activation(name: str) -> nn.Module:
    """``"relu"`` or ``"hswish"`` (MobileNetV3's hard swish) as a module."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src.detach())


# ---------------------------------------------------------------------------
# elastic layers
# ---------------------------------------------------------------------------


class ElasticConv2d(nn.Conv2d):
    """A dense convolution holding ``max_in x max_out`` weights.

    The input width is taken from the input tensor (its first channels are
    used), the output width is ``active_out_channels`` (the first filters).
    """

    def __init__(self, max_in_channels: int, max_out_channels: int, kernel_size: int = 1, stride: int = 1, bias: bool = False):
        super().__init__(max_in_channels, max_out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)
        self.active_out_channels = max_out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.active_out_channels
        weight = self.weight[:out, : x.size(1)]
        bias = self.bias[:out] if self.bias is not None else None
        return F.conv2d(x, weight, bias, self.stride, self.padding)

    def to_static(self, in_channels: int, out_channels: Optional[int] = None) -> nn.Conv2d:
        out_channels = self.active_out_channels if out_channels is None else out_channels
        conv = nn.Conv2d(in_channels, out_channels, self.kernel_size, self.stride, self.padding, bias=self.bias is not None)
        _copy(conv.weight, self.weight[:out_channels, :in_channels])
        if self.bias is not None:
            _copy(conv.bias, self.bias[:out_channels])
        return conv


class ElasticDepthwiseConv2d(nn.Module):
    """Depthwise convolution with an elastic kernel size (OFA's kernel transform).

    The weight of the largest kernel is stored. A smaller kernel is derived
    step by step down the sorted kernel sizes: the centre ``k' x k'`` of the
    current kernel is flattened and multiplied by a learned ``k'^2 x k'^2``
    matrix (initialised to the identity and shared by all channels of the
    layer), so that small kernels need not equal the centre of large ones.
    """

    def __init__(self, max_channels: int, kernel_choices: Sequence[int], stride: int = 1):
        super().__init__()
        self.kernel_choices = sorted({int(k) for k in kernel_choices})
        if any(k % 2 == 0 for k in self.kernel_choices):
            raise ValueError(f"kernel sizes must be odd, got {self.kernel_choices}")
        self.max_kernel = self.kernel_choices[-1]
        self.max_channels = max_channels
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        # transforms[i] maps kernel_choices[i+1] -> kernel_choices[i]
        self.transforms = nn.ParameterDict()
        for small, large in zip(self.kernel_choices[:-1], self.kernel_choices[1:]):
            self.transforms[self.transform_name(large, small)] = nn.Parameter(torch.eye(small * small))
        self.active_kernel = self.max_kernel

    @staticmethod
    def transform_name(large: int, small: int) -> str:
        return f"{large}to{small}"

    def kernel_weight(self, channels: int, kernel: int) -> torch.Tensor:
        """The ``channels x 1 x kernel x kernel`` weight of an active kernel size."""
        if kernel not in self.kernel_choices:
            raise ValueError(f"kernel size {kernel} is not one of {self.kernel_choices}")
        weight = self.weight[:channels]
        size = self.max_kernel
        for small in reversed(self.kernel_choices):
            if small >= size or small < kernel:
                continue
            start = (size - small) // 2
            centre = weight[:, :, start : start + small, start : start + small].reshape(-1, small * small)
            centre = F.linear(centre, self.transforms[self.transform_name(size, small)])
            weight = centre.reshape(channels, 1, small, small)
            size = small
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.size(1)
        weight = self.kernel_weight(channels, self.active_kernel)
        return F.conv2d(x, weight, None, self.stride, self.active_kernel // 2, 1, channels)

    def to_static(self, channels: int) -> nn.Conv2d:
        k = self.active_kernel
        conv = nn.Conv2d(channels, channels, k, self.stride, k // 2, groups=channels, bias=False)
        _copy(conv.weight, self.kernel_weight(channels, k))
        return conv


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the first ``C`` channels, ``C`` taken from the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        if c == self.num_features:
            return super().forward(x)
        # Same bookkeeping as nn.BatchNorm2d: momentum=None means a cumulative
        # average, which is what BN recalibration uses.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.track_running_stats else None,
            self.running_var[:c] if self.track_running_stats else None,
            self.weight[:c],
            self.bias[:c],
            use_batch_stats,
            factor,
            self.eps,
        )

    def to_static(self, channels: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        _copy(bn.weight, self.weight[:channels])
        _copy(bn.bias, self.bias[:channels])
        _copy(bn.running_mean, self.running_mean[:channels])
        _copy(bn.running_var, self.running_var[:channels])
        _copy(bn.num_batches_tracked, self.num_batches_tracked)
        return bn


class ElasticLinear(nn.Linear):
    """A linear layer whose input width follows its input (first features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.size(-1)], self.bias)

    def to_static(self, in_features: int) -> nn.Linear:
        lin = nn.Linear(in_features, self.out_features, bias=self.bias is not None)
        _copy(lin.weight, self.weight[:, :in_features])
        if self.bias is not None:
            _copy(lin.bias, self.bias)
        return lin


class SqueezeExcite(nn.Module):
    """Static squeeze-and-excite (MobileNetV3): pool, 1x1 reduce, ReLU, 1x1 expand, hard sigmoid."""

    def __init__(self, channels: int, mid_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid_channels, 1, bias=True)
        self.expand = nn.Conv2d(mid_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y), inplace=True)
        return x * F.hardsigmoid(self.expand(y), inplace=True)


class ElasticSqueezeExcite(nn.Module):
    """Squeeze-and-excite for an elastic width; the bottleneck is
    ``make_divisible(C / reduction, divisor)`` of the active width ``C``."""

    def __init__(self, max_channels: int, reduction: int = 4, divisor: int = 8):
        super().__init__()
        self.reduction = reduction
        self.divisor = divisor
        max_mid = self.mid_channels(max_channels)
        self.reduce = ElasticConv2d(max_channels, max_mid, 1, bias=True)
        self.expand = ElasticConv2d(max_mid, max_channels, 1, bias=True)

    def mid_channels(self, channels: int) -> int:
        return make_divisible(channels // self.reduction, self.divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        self.reduce.active_out_channels = self.mid_channels(c)
        self.expand.active_out_channels = c
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y), inplace=True)
        return x * F.hardsigmoid(self.expand(y), inplace=True)

    def to_static(self, channels: int) -> SqueezeExcite:
        mid = self.mid_channels(channels)
        se = SqueezeExcite(channels, mid)
        se.reduce = self.reduce.to_static(channels, mid)
        se.expand = self.expand.to_static(mid, channels)
        return se


# ---------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------


class MBConvBlock(nn.Module):
    """Static MobileNetV3 inverted-residual block (what an elastic block extracts to).

    ``inverted_bottleneck`` is ``None`` for an expand ratio of 1 (the first block
    of MobileNetV3). The residual is used when stride is 1 and widths match.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        mid_channels: int,
        act: str,
        se_mid_channels: Optional[int] = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.mid_channels = kernel, stride, mid_channels
        if mid_channels != in_channels:
            self.inverted_bottleneck: Optional[nn.Sequential] = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                    bn=nn.BatchNorm2d(mid_channels),
                    act=build_activation(act),
                )
            )
        else:
            self.inverted_bottleneck = None
        depth_layers: "OrderedDict[str, nn.Module]" = OrderedDict(
            conv=nn.Conv2d(mid_channels, mid_channels, kernel, stride, kernel // 2, groups=mid_channels, bias=False),
            bn=nn.BatchNorm2d(mid_channels),
            act=build_activation(act),
        )
        if se_mid_channels:
            depth_layers["se"] = SqueezeExcite(mid_channels, se_mid_channels)
        self.depth_conv = nn.Sequential(depth_layers)
        self.point_linear = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(mid_channels, out_channels, 1, bias=False), bn=nn.BatchNorm2d(out_channels))
        )
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.inverted_bottleneck is None else self.inverted_bottleneck(x)
        y = self.point_linear(self.depth_conv(y))
        return x + y if self.residual else y


class ElasticMBConv(nn.Module):
    """MobileNetV3 inverted-residual block with elastic kernel and expand ratio.

    The middle width for expand ratio ``e`` is ``make_divisible(in * e, divisor)``;
    the block always uses the first middle channels, which is why
    :meth:`sort_channels` moves the most important channels to the front before
    the expand ratio becomes elastic.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        act: str,
        use_se: bool,
        kernel_choices: Sequence[int] = (3, 5, 7),
        expand_choices: Sequence[float] = (3, 4, 6),
        divisor: int = 8,
        se_reduction: int = 4,
    ):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose one of {ACTIVATIONS}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.act, self.use_se, self.divisor = act, use_se, divisor
        self.kernel_choices = sorted({int(k) for k in kernel_choices})
        self.expand_choices = sorted({e for e in expand_choices})
        max_mid = self.mid_channels(max(self.expand_choices))
        self.inverted_bottleneck = nn.Sequential(
            OrderedDict(conv=ElasticConv2d(in_channels, max_mid, 1), bn=ElasticBatchNorm2d(max_mid), act=build_activation(act))
        )
        depth_layers: "OrderedDict[str, nn.Module]" = OrderedDict(
            conv=ElasticDepthwiseConv2d(max_mid, self.kernel_choices, stride),
            bn=ElasticBatchNorm2d(max_mid),
            act=build_activation(act),
        )
        if use_se:
            depth_layers["se"] = ElasticSqueezeExcite(max_mid, se_reduction, divisor)
        self.depth_conv = nn.Sequential(depth_layers)
        self.point_linear = nn.Sequential(OrderedDict(conv=ElasticConv2d(max_mid, out_channels, 1), bn=ElasticBatchNorm2d(out_channels)))
        self.residual = stride == 1 and in_channels == out_channels
        self.active_kernel = max(self.kernel_choices)
        self.active_expand = max(self.expand_choices)

    def mid_channels(self, expand: float) -> int:
        return make_divisible(round(self.in_channels * expand), self.divisor)

    def _activate(self) -> int:
        if self.active_kernel not in self.kernel_choices:
            raise ValueError(f"kernel {self.active_kernel} is not one of {self.kernel_choices}")
        if self.active_expand not in self.expand_choices:
            raise ValueError(f"expand ratio {self.active_expand} is not one of {self.expand_choices}")
        mid = self.mid_channels(self.active_expand)
        self.inverted_bottleneck.conv.active_out_channels = mid
        self.depth_conv.conv.active_kernel = self.active_kernel
        return mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._activate()
        y = self.point_linear(self.depth_conv(self.inverted_bottleneck(x)))
        return x + y if self.residual else y

    @property
    def transforms(self) -> nn.ParameterDict:
        """The kernel-transform matrices of this block's depthwise convolution."""
        return self.depth_conv.conv.transforms

    def to_static(self) -> MBConvBlock:
        mid = self._activate()
        se_mid = self.depth_conv.se.mid_channels(mid) if self.use_se else None
        block = MBConvBlock(self.in_channels, self.out_channels, self.active_kernel, self.stride, mid, self.act, se_mid)
        assert block.inverted_bottleneck is not None
        block.inverted_bottleneck.conv = self.inverted_bottleneck.conv.to_static(self.in_channels, mid)
        block.inverted_bottleneck.bn = self.inverted_bottleneck.bn.to_static(mid)
        block.depth_conv.conv = self.depth_conv.conv.to_static(mid)
        block.depth_conv.bn = self.depth_conv.bn.to_static(mid)
        if self.use_se:
            block.depth_conv.se = self.depth_conv.se.to_static(mid)
        block.point_linear.conv = self.point_linear.conv.to_static(mid, self.out_channels)
        block.point_linear.bn = self.point_linear.bn.to_static(self.out_channels)
        return block

    @torch.no_grad()
    def sort_channels(self, protected_expands: Iterable[float] = ()) -> torch.Tensor:
        """Reorder the middle channels by importance (L1 norm of the point-wise
        weights that read them), most important first, so that a small expand
        ratio keeps the best channels (OFA's elastic width).

        ``protected_expands`` are expand ratios already trained as elastic: the
        channels inside each of their widths stay inside it (sorting happens
        within the nested segments), so earlier shrinking stages are not undone.
        Returns the permutation applied.
        """
        pw = self.point_linear.conv.weight
        importance = pw.abs().sum(dim=(0, 2, 3)).clone()
        bounds = sorted({self.mid_channels(e) for e in protected_expands} | {importance.numel()})
        # Segment i (between consecutive protected widths) gets a penalty that
        # dominates any importance, so the sort is within segments only.
        penalty = importance.abs().sum() + 1.0
        start = 0
        for i, end in enumerate(bounds):
            importance[start:end] -= i * penalty
            start = end
        order = torch.argsort(importance, descending=True, stable=True)
        self.point_linear.conv.weight.copy_(pw[:, order])
        dw = self.depth_conv.conv
        dw.weight.copy_(dw.weight[order])
        _permute_bn(self.depth_conv.bn, order)
        ib = self.inverted_bottleneck.conv
        ib.weight.copy_(ib.weight[order])
        _permute_bn(self.inverted_bottleneck.bn, order)
        if self.use_se:
            se = self.depth_conv.se
            se.expand.weight.copy_(se.expand.weight[order])
            se.expand.bias.copy_(se.expand.bias[order])
            se.reduce.weight.copy_(se.reduce.weight[:, order])
            # then the squeeze-excite bottleneck itself, by the weights that read it
            se_order = torch.argsort(se.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True, stable=True)
            se.expand.weight.copy_(se.expand.weight[:, se_order])
            se.reduce.weight.copy_(se.reduce.weight[se_order])
            se.reduce.bias.copy_(se.reduce.bias[se_order])
        return order


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.copy_(t[order])


def elastic_batchnorms(module: nn.Module) -> List[nn.BatchNorm2d]:
    """Every batch-norm layer (elastic or not) inside a module."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
