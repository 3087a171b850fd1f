"""The built-in model family: MCUNet-like inverted-residual networks.

An :class:`InvertedResidualNet` is a stem convolution, a depthwise-separable
block, stages of MobileNetV2 inverted-residual blocks (each block with its own
kernel size and expand ratio, as in MCUNet's search space), an optional 1x1
head convolution, global average pooling and a linear classifier.

:func:`mcunet_from_config` builds one from a candidate configuration
``{"resolution": R, "width": w, "blocks": [{"kernel": k, "expand": e}, ...]}``
(the space of :func:`mcunet_space`); it is the network the ``tinyengine_digits``
evaluator builds for a candidate. :func:`mobilenetv2_like` and :func:`mcunet_imagenet_like`
give ImageNet-scale models for the memory benchmarks.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn as nn

from hwaml import Categorical, Repeated, SearchSpace

__all__ = [
    "InvertedResidual",
    "InvertedResidualNet",
    "mcunet_space",
    "mcunet_from_config",
    "mobilenetv2_like",
    "mcunet_imagenet_like",
    "count_macs",
    "DIGITS_STAGES",
]

#: (base channels, stride) of the stages of the digits-sized family
DIGITS_STAGES: Tuple[Tuple[int, int], ...] = ((16, 2), (24, 2), (32, 1), (48, 2))


def _div8(x: float) -> int:
    """Round a channel count to a multiple of 8 (at least 8), like MobileNetV2."""
    return max(8, int(x + 4) // 8 * 8)


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: List[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, k x k depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        layers: List[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, mid, 1, 1))
        layers += [_conv_bn(mid, mid, kernel, stride, groups=mid), _conv_bn(mid, cout, 1, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class InvertedResidualNet(nn.Module):
    """Stem, separable block, inverted-residual stages, head, pool, classifier.

    :param stages: one mapping per stage: ``channels``, ``stride`` and ``blocks``
        (a list of ``{"kernel", "expand"}``); the first block of a stage strides.
    """

    def __init__(
        self,
        stages: Sequence[Mapping[str, Any]],
        resolution: int,
        in_channels: int = 3,
        num_classes: int = 10,
        stem_channels: int = 16,
        first_channels: int = 8,
        head_channels: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.input_shape = (in_channels, resolution, resolution)
        layers: List[nn.Module] = [_conv_bn(in_channels, stem_channels, 3, 2), InvertedResidual(stem_channels, first_channels, 3, 1, 1)]
        c = first_channels
        for st in stages:
            for i, blk in enumerate(st["blocks"]):
                layers.append(InvertedResidual(c, st["channels"], int(blk["kernel"]), st["stride"] if i == 0 else 1, int(blk["expand"])))
                c = st["channels"]
        if head_channels:
            layers.append(_conv_bn(c, head_channels, 1, 1))
            c = head_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def mcunet_space(
    resolutions: Sequence[int] = (16, 24, 32),
    widths: Sequence[float] = (0.5, 0.75, 1.0),
    kernels: Sequence[int] = (3, 5, 7),
    expands: Sequence[int] = (3, 4, 6),
    depths: Sequence[int] = (4, 5, 6, 7, 8),
) -> SearchSpace:
    """MCUNet-like space: input resolution, width multiplier, and per-block
    kernel size and expand ratio over a variable number of blocks."""
    return SearchSpace(
        [
            Categorical("resolution", list(resolutions)),
            Categorical("width", list(widths)),
            Repeated("blocks", [Categorical("kernel", list(kernels)), Categorical("expand", list(expands))], lengths=list(depths)),
        ]
    )


def split_blocks(blocks: Sequence[Mapping[str, Any]], stages: Sequence[Tuple[int, int]], width: float) -> List[Dict[str, Any]]:
    """Distribute a flat block list over stages (earlier stages get the remainder)."""
    n, k = len(blocks), len(stages)
    if n < k:
        stages = stages[:n] if n else stages[:1]
        k = len(stages)
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    out, start = [], 0
    for (ch, stride), size in zip(stages, sizes):
        out.append({"channels": _div8(ch * width), "stride": stride, "blocks": [dict(b) for b in blocks[start : start + size]]})
        start += size
    return out


def mcunet_from_config(
    config: Mapping[str, Any],
    num_classes: int = 10,
    in_channels: int = 1,
    stages: Sequence[Sequence[int]] = DIGITS_STAGES,
    head_channels: int = 0,
) -> InvertedResidualNet:
    """Build the MCUNet-like network of a candidate configuration."""
    missing = [k for k in ("resolution", "width", "blocks") if k not in config]
    if missing:
        raise KeyError(f"candidate config lacks {missing} needed by mcunet_from_config (keys: {sorted(config)})")
    width = float(config["width"])
    st = split_blocks(list(config["blocks"]), [tuple(s) for s in stages], width)  # type: ignore[misc]
    return InvertedResidualNet(
        st,
        int(config["resolution"]),
        in_channels=in_channels,
        num_classes=num_classes,
        stem_channels=_div8(16 * width),
        first_channels=_div8(8 * width),
        head_channels=_div8(head_channels * width) if head_channels else 0,
    )


# MobileNetV2's stage table: (expand, channels, repeats, stride)
_MBV2 = ((6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenetv2_like(width: float = 0.35, resolution: int = 144, num_classes: int = 1000) -> InvertedResidualNet:
    """MobileNetV2 (all blocks k=3, t=6) at a width multiplier and resolution."""
    stages = [{"channels": _div8(c * width), "stride": s, "blocks": [{"kernel": 3, "expand": t}] * n} for t, c, n, s in _MBV2]
    return InvertedResidualNet(
        stages, resolution, 3, num_classes, stem_channels=_div8(32 * width), first_channels=_div8(16 * width), head_channels=_div8(1280 * max(1.0, width))
    )


# An MCUNet-style searched network: mixed kernels and expand ratios, shallower
# early stages (the shape of the published mcunet-in3/in4 models, not a copy).
_MCUNET_BLOCKS = (
    (24, 2, ((7, 3), (3, 4))),
    (40, 2, ((7, 4), (5, 3), (5, 3))),
    (80, 2, ((5, 4), (5, 3), (3, 3))),
    (96, 1, ((5, 4), (3, 3))),
    (160, 2, ((7, 6), (5, 4), (5, 4))),
    (320, 1, ((3, 6),)),
)


def mcunet_imagenet_like(width: float = 0.5, resolution: int = 160, num_classes: int = 1000) -> InvertedResidualNet:
    """An MCUNet-like ImageNet network (mixed 3/5/7 kernels, expand 3-6)."""
    stages = [
        {"channels": _div8(c * width), "stride": s, "blocks": [{"kernel": k, "expand": e} for k, e in blocks]} for c, s, blocks in _MCUNET_BLOCKS
    ]
    return InvertedResidualNet(stages, resolution, 3, num_classes, stem_channels=_div8(32 * width), first_channels=_div8(16 * width))


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on one input of
    ``input_shape`` ``(C, H, W)``: every ``Conv2d`` (``out_elements x C_in/groups
    x k_h x k_w``) and ``Linear`` (``in x out``), counted with forward hooks on
    the torch modules (independent of TinyEngine's IR, which the backends' count
    is checked against). Batch norm, activations, adds and pooling count zero.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += int(out[0].numel()) * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *[int(s) for s in input_shape]))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
