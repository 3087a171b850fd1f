"""The lite residual module (TinyTL, Sec. 3.2) and its insertion into any mobile network.

A lite residual module wraps a mobile block's main branch: both branches read the
block input, ``out = main(x) + upsample(lite(x))``, with

    lite = 2x2 average pool -> k x k group conv (groups 2, the block's stride, no bias)
           -> norm -> ReLU -> 1x1 conv -> norm (scale initialised to 0)

(norms are group norms and convolutions weight-standardised, as the published
code makes them after insertion)

so the module starts as the identity on the pretrained network. Its middle width
is the input width rounded to a multiple of 8; ``k`` starts at 5 and drops by 2
until it fits the pooled resolution (a pooled resolution of 1: global pooling and
``k = 1``); the result is upsampled bilinearly to the main branch's output size.

:func:`find_mobile_blocks` locates the blocks of any MobileNetV2 / ProxylessNAS /
OFA-style network by structure (one depthwise convolution with pointwise ones
around it), tracing shapes with forward hooks, so the module goes into whatever
network an evaluator builds, not one hard-coded family. When the block keeps its
main branch as a child (ProxylessNAS's ``block.conv``, torchvision's ``block.conv``,
this plugin's ``block.main``) that child is wrapped, as published; when the main
branch and the identity shortcut live in one ``forward`` (OFA's static
``MBConvBlock``) the whole block is wrapped, which computes the same function:
``(x + main(x)) + lite(x) = x + (main(x) + lite(x))``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import WSConv2d, group_norm, make_divisible

__all__ = [
    "LiteResidualModule",
    "MobileBlock",
    "find_mobile_blocks",
    "published_kernel",
    "insert_lite_residuals",
    "LiteSpec",
    "default_placement",
]

MAX_KERNEL = 5
DOWNSAMPLE = 2


def published_kernel(in_resolution: int, max_kernel: int = MAX_KERNEL, downsample: int = DOWNSAMPLE) -> Tuple[int, Optional[int]]:
    """The published kernel rule: ``(kernel, downsample ratio or None for global pooling)``
    for a block whose input is ``in_resolution`` pixels square."""
    pooled = max(1, in_resolution // downsample)
    if pooled == 1:
        return 1, None
    k = max_kernel
    while pooled < k:
        k -= 2
    return k, downsample


class LiteResidualModule(nn.Module):
    """``main(x) + upsample(lite(x))``; ``lite`` as published (see the module docstring)."""

    def __init__(
        self,
        main_branch: nn.Module,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 2,
        expand: float = 1.0,
        downsample: Optional[int] = DOWNSAMPLE,
        upsample_mode: str = "bilinear",
    ):
        super().__init__()
        if in_channels % groups:
            raise ValueError(f"lite residual: {in_channels} input channels are not divisible into {groups} groups")
        self.main_branch = main_branch
        mid = make_divisible(in_channels * expand)
        if mid % groups:
            raise ValueError(f"lite residual: middle width {mid} is not divisible into {groups} groups")
        kernel_size = 1 if downsample is None else int(kernel_size)
        self.config = {
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "kernel_size": kernel_size,
            "stride": int(stride),
            "groups": int(groups),
            "expand": float(expand),
            "downsample": downsample,
            "upsample_mode": upsample_mode,
            "mid_channels": mid,
        }
        pooling = nn.AdaptiveAvgPool2d(1) if downsample is None else nn.AvgPool2d(downsample, downsample, 0)
        self.lite_residual = nn.Sequential(
            OrderedDict(
                pooling=pooling,
                conv1=WSConv2d(in_channels, mid, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
                norm1=group_norm(mid),
                act=nn.ReLU(),
                conv2=WSConv2d(mid, out_channels, 1, 1, 0, bias=False),
                final_norm=group_norm(out_channels),
            )
        )
        self.reset_lite()

    def reset_lite(self) -> None:
        """Fresh lite-branch weights, the last norm's scale and shift at 0 (the module is then a no-op)."""
        for m in self.lite_residual.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.lite_residual.final_norm.weight.zero_()  # a no-op at start: the pretrained function is kept
            self.lite_residual.final_norm.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.main_branch(x)
        lite = self.lite_residual(x)
        if self.config["downsample"] is not None:
            lite = F.interpolate(lite, size=main.shape[2:], mode=self.config["upsample_mode"], align_corners=False)
        return main + lite  # a globally pooled lite branch (1x1) broadcasts


@dataclass(frozen=True)
class MobileBlock:
    """A mobile block found in a network: where it is and its shapes."""

    index: int
    path: str  #: dotted name of the module a lite residual wraps
    in_channels: int
    out_channels: int
    stride: int
    in_resolution: int
    wraps: str  #: "main_branch" (the block's own main-branch child) or "block" (main and shortcut in one forward)


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _is_pointwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1


def _qualifies(m: nn.Module) -> bool:
    mods = list(m.modules())
    return sum(_is_depthwise(c) for c in mods) == 1 and any(_is_pointwise(c) for c in mods)


def _trace_shapes(net: nn.Module, input_shape: Sequence[int]) -> Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], int]]:
    """(input shape, output shape, call order) of every module, from one forward at batch 1."""
    shapes: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], int]] = {}
    order: Dict[str, int] = {}
    handles = []
    names = {m: n for n, m in net.named_modules()}

    def pre(m, args):
        order.setdefault(names[m], len(order))

    def post(m, args, out):
        if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            shapes[names[m]] = (tuple(args[0].shape), tuple(out.shape), order[names[m]])

    for m in net.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return shapes


def find_mobile_blocks(net: nn.Module, input_shape: Sequence[int]) -> List[MobileBlock]:
    """The mobile (inverted-residual) blocks of ``net`` in forward order.

    A block is the outermost module holding exactly one depthwise convolution and
    at least one pointwise one. If such a block has a child that qualifies too and
    produces the block's output shape, that child is its main branch and is what
    a lite residual wraps; otherwise the block itself is wrapped (see the module
    docstring for why this is the same function).
    """
    shapes = _trace_shapes(net, input_shape)
    found: List[Tuple[int, MobileBlock]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, LiteResidualModule):
                continue  # already adapted
            if _qualifies(child) and path in shapes:
                target, wraps = path, "block"
                for sub_name, sub in child.named_children():
                    sub_path = f"{path}.{sub_name}"
                    if _qualifies(sub) and sub_path in shapes and shapes[sub_path][1] == shapes[path][1]:
                        target, wraps = sub_path, "main_branch"
                        break
                (ci, hi, _wi), (co, ho, _wo) = shapes[target][0][1:], shapes[target][1][1:]
                stride = max(1, round(hi / max(1, ho)))
                found.append((shapes[path][2], MobileBlock(0, target, ci, co, stride, hi, wraps)))
            else:
                visit(path, child)

    visit("", net)
    found.sort(key=lambda t: t[0])
    return [MobileBlock(i, b.path, b.in_channels, b.out_channels, b.stride, b.in_resolution, b.wraps) for i, (_, b) in enumerate(found)]


@dataclass(frozen=True)
class LiteSpec:
    """Where a lite residual goes and its shape: ``kernel`` None means the published rule."""

    enabled: bool = True
    kernel: Optional[int] = None
    groups: int = 2
    expand: float = 1.0


def default_placement(blocks: Sequence[MobileBlock]) -> List[LiteSpec]:
    """As published for ProxylessNAS: every block but the first (expand-1) block, published kernels, groups 2."""
    return [LiteSpec(enabled=i > 0) for i in range(len(blocks))]


def _set_module(net: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    setattr(parent, name, new)


def insert_lite_residuals(
    net: nn.Module, input_shape: Sequence[int], specs: Optional[Sequence[LiteSpec]] = None, blocks: Optional[Sequence[MobileBlock]] = None
) -> List[Dict[str, Any]]:
    """Wrap mobile blocks of ``net`` (in place) with lite residual modules.

    ``specs``: one :class:`LiteSpec` per block (default :func:`default_placement`).
    An explicit ``kernel`` larger than the published rule allows for the block's
    resolution is an error. Returns one dict per inserted module (path, kernel,
    groups, stride, downsample).
    """
    blocks = list(blocks) if blocks is not None else find_mobile_blocks(net, input_shape)
    if not blocks:
        raise ValueError(f"{type(net).__name__} has no mobile (depthwise + pointwise) blocks to add lite residuals to")
    specs = list(specs) if specs is not None else default_placement(blocks)
    if len(specs) != len(blocks):
        raise ValueError(f"lite residual placement has {len(specs)} entries but {type(net).__name__} has {len(blocks)} mobile blocks")
    inserted = []
    for block, spec in zip(blocks, specs):
        if not spec.enabled:
            continue
        k_max, down = published_kernel(block.in_resolution)
        k = k_max if spec.kernel is None else int(spec.kernel)
        if down is None:
            k = 1
        elif k > k_max:
            raise ValueError(f"block {block.index} ({block.path}): kernel {k} exceeds the pooled resolution {block.in_resolution // DOWNSAMPLE}")
        main = net.get_submodule(block.path)
        module = LiteResidualModule(main, block.in_channels, block.out_channels, k, block.stride, spec.groups, spec.expand, down)
        _set_module(net, block.path, module)
        inserted.append({"block": block.index, "path": block.path, "kernel": k, "groups": spec.groups, "stride": block.stride, "downsample": down})
    return inserted
