"""The once-for-all MobileNetV3 supernet and the static sub-networks it yields.

The supernet follows OFA's MobileNetV3 design: a 3x3 stride-2 stem with hard
swish, a fixed first block (depthwise 3x3, expand 1), then stages of elastic
inverted-residual blocks (kernel 3/5/7, expand 3/4/6, depth 2/3/4, the first
blocks of a stage kept), each stage with its own width, stride, activation and
squeeze-excite setting, then a 1x1 final expansion, global pooling, a 1x1
feature-mixing layer and the classifier. The input resolution is elastic too.

Sizes come from a :class:`SupernetConfig`; :data:`PRESETS` holds the ImageNet
one (``mobilenetv3_large``, the published OFA network) and small ones for the
digits data and for tests.

A sub-network configuration is a plain dict that the supernet's
:meth:`OFAMobileNetV3.space` validates::

    {"resolution": 32,
     "stage1": [{"kernel": 5, "expand": 4}, {"kernel": 3, "expand": 6}],
     "stage2": [...], ...}

(the length of each stage list is its depth).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from hwaml import Categorical, Repeated, SearchSpace

from .elastic import (
    ElasticLinear,
    ElasticMBConv,
    MBConvBlock,
    build_activation,
    make_divisible,
)

__all__ = [
    "StageSpec",
    "SupernetConfig",
    "PRESETS",
    "supernet_config",
    "LayerSpec",
    "layer_specs",
    "OFAMobileNetV3",
    "MobileNetV3Subnet",
    "build_subnet",
]


@dataclass(frozen=True)
class StageSpec:
    """One stage of elastic blocks: base width, stride of its first block,
    activation (``relu`` or ``hswish``) and whether blocks use squeeze-excite."""

    width: int
    stride: int
    act: str
    se: bool


@dataclass(frozen=True)
class SupernetConfig:
    """Everything that fixes the supernet's shape (not a sub-network choice).

    Channel widths are base widths, multiplied by ``width_mult`` and rounded to
    multiples of ``divisor``.
    """

    stages: Sequence[StageSpec]
    n_classes: int = 1000
    in_channels: int = 3
    stem_width: int = 16
    first_block_width: int = 16
    final_expand_width: int = 960
    feature_width: int = 1280
    kernel_choices: Sequence[int] = (3, 5, 7)
    expand_choices: Sequence[int] = (3, 4, 6)
    depth_choices: Sequence[int] = (2, 3, 4)
    resolutions: Sequence[int] = (160, 176, 192, 208, 224)
    width_mult: float = 1.0
    dropout: float = 0.1
    divisor: int = 8
    se_reduction: int = 4

    def __post_init__(self) -> None:
        stages = tuple(s if isinstance(s, StageSpec) else StageSpec(**dict(s)) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        for name in ("kernel_choices", "expand_choices", "depth_choices", "resolutions"):
            object.__setattr__(self, name, tuple(sorted({int(v) for v in getattr(self, name)})))
        if not stages:
            raise ValueError("SupernetConfig.stages: at least one stage is needed")
        for i, s in enumerate(stages):
            if s.act not in ("relu", "hswish"):
                raise ValueError(f"SupernetConfig.stages[{i}].act: {s.act!r} is not 'relu' or 'hswish'")
            if s.stride not in (1, 2):
                raise ValueError(f"SupernetConfig.stages[{i}].stride: must be 1 or 2, got {s.stride}")
        if min(self.depth_choices) < 1:
            raise ValueError("SupernetConfig.depth_choices: depths must be >= 1")
        if self.width_mult <= 0:
            raise ValueError("SupernetConfig.width_mult: must be > 0")

    # scaled widths -----------------------------------------------------
    def scaled(self, width: int) -> int:
        return make_divisible(width * self.width_mult, self.divisor)

    @cached_property
    def stage_widths(self) -> List[int]:
        return [self.scaled(s.width) for s in self.stages]

    @cached_property
    def max_depth(self) -> int:
        return max(self.depth_choices)

    @cached_property
    def stage_names(self) -> List[str]:
        return [f"stage{i + 1}" for i in range(len(self.stages))]

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        for k in ("kernel_choices", "expand_choices", "depth_choices", "resolutions"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SupernetConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown supernet config key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**dict(d))

    def digest(self) -> str:
        """Short stable hash of the shape (names cached checkpoints and tables)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def _stages(*rows: tuple) -> List[StageSpec]:
    return [StageSpec(width=w, stride=s, act=a, se=se) for w, s, a, se in rows]


#: Named supernet shapes. ``mobilenetv3_large`` is OFA's published ImageNet
#: supernet (width multiplier 1.0; OFA also released 1.2).
PRESETS: Dict[str, SupernetConfig] = {
    "mobilenetv3_large": SupernetConfig(
        stages=_stages((24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "hswish", False), (112, 1, "hswish", True), (160, 2, "hswish", True)),
        n_classes=1000,
        resolutions=tuple(range(160, 225, 4)),
    ),
    # digits (8x8 upsampled to 32x32): three stages, 8x downsampling overall
    "tiny_digits": SupernetConfig(
        stages=_stages((16, 2, "relu", False), (24, 2, "hswish", True), (32, 1, "hswish", True)),
        n_classes=10,
        stem_width=8,
        first_block_width=8,
        final_expand_width=128,
        feature_width=160,
        resolutions=(24, 28, 32),
        dropout=0.1,
    ),
    # the smallest useful instance, for unit tests
    "test_tiny": SupernetConfig(
        stages=_stages((8, 2, "relu", False), (16, 1, "hswish", True)),
        n_classes=10,
        stem_width=8,
        first_block_width=8,
        final_expand_width=32,
        feature_width=32,
        resolutions=(12, 16),
        dropout=0.0,
    ),
}


def supernet_config(arch: Union[str, Mapping[str, Any], SupernetConfig] = "tiny_digits", overrides: Optional[Mapping[str, Any]] = None) -> SupernetConfig:
    """A :class:`SupernetConfig` from a preset name (or a dict), with overrides.

    >>> supernet_config("tiny_digits", {"width_mult": 1.5}).width_mult
    1.5
    """
    if isinstance(arch, SupernetConfig):
        base = arch
    elif isinstance(arch, str):
        if arch not in PRESETS:
            raise ValueError(f"unknown supernet preset {arch!r}; choose one of {sorted(PRESETS)} or pass a dict")
        base = PRESETS[arch]
    else:
        base = SupernetConfig.from_dict(arch)
    if not overrides:
        return base
    d = base.to_dict()
    for k, v in dict(overrides).items():
        if k not in d:
            raise ValueError(f"arch_overrides.{k}: unknown supernet config key; valid keys: {sorted(d)}")
        d[k] = v
    return SupernetConfig.from_dict(d)


# ---------------------------------------------------------------------------
# the layers of a sub-network, as plain shapes (for MACs and latency tables)
# ---------------------------------------------------------------------------


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution with an odd kernel."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class LayerSpec:
    """One measurable piece of a sub-network at a given input size.

    ``kind`` is ``stem`` (3x3 conv + BN + h-swish), ``mbconv`` (an
    inverted-residual block; ``mid`` = its middle width, ``se_mid`` its
    squeeze-excite bottleneck or 0) or ``head`` (final 1x1 expansion, pooling,
    feature-mixing layer and classifier).
    """

    kind: str
    size: int
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    mid: int = 0
    se_mid: int = 0
    act: str = ""
    feature: int = 0
    n_classes: int = 0

    @property
    def key(self) -> str:
        if self.kind == "stem":
            return f"stem:{self.size}x{self.size}x{self.cin}-{self.cout}-k{self.kernel}-s{self.stride}"
        if self.kind == "mbconv":
            return (
                f"mbconv:{self.size}x{self.size}x{self.cin}-{self.cout}-mid{self.mid}-k{self.kernel}-s{self.stride}"
                f"-se{self.se_mid}-{self.act}"
            )
        return f"head:{self.size}x{self.size}x{self.cin}-{self.mid}-{self.feature}-{self.n_classes}"

    @property
    def out_size(self) -> int:
        return 1 if self.kind == "head" else conv_out(self.size, self.stride)

    def macs(self) -> int:
        """Multiply-accumulates of the convolutions and linear layers."""
        s, o = self.size, self.out_size
        if self.kind == "stem":
            return o * o * self.cin * self.cout * self.kernel**2
        if self.kind == "mbconv":
            m = 0
            if self.mid != self.cin:
                m += s * s * self.cin * self.mid
            m += o * o * self.mid * self.kernel**2
            if self.se_mid:
                m += 2 * self.mid * self.se_mid
            return m + o * o * self.mid * self.cout
        return s * s * self.cin * self.mid + self.mid * self.feature + self.feature * self.n_classes

    def params(self) -> int:
        """Parameters, batch-norm scale and shift included (as ``nn.Module.parameters``)."""
        if self.kind == "stem":
            return self.cin * self.cout * self.kernel**2 + 2 * self.cout
        if self.kind == "mbconv":
            p = 0
            if self.mid != self.cin:
                p += self.cin * self.mid + 2 * self.mid
            p += self.mid * self.kernel**2 + 2 * self.mid
            if self.se_mid:
                p += 2 * self.mid * self.se_mid + self.mid + self.se_mid
            return p + self.mid * self.cout + 2 * self.cout
        return self.cin * self.mid + 2 * self.mid + self.mid * self.feature + self.feature * self.n_classes + self.n_classes

    def build(self) -> nn.Module:
        """A randomly initialised static module of this shape (for timing)."""
        if self.kind == "stem":
            return _stem(self.cin, self.cout)
        if self.kind == "mbconv":
            return MBConvBlock(self.cin, self.cout, self.kernel, self.stride, self.mid, self.act, self.se_mid or None)
        return _Head(self.cin, self.mid, self.feature, self.n_classes, dropout=0.0)


def _se_mid(arch: SupernetConfig, mid: int) -> int:
    return make_divisible(mid // arch.se_reduction, arch.divisor)


def layer_specs(arch: SupernetConfig, config: Mapping[str, Any]) -> List[LayerSpec]:
    """The layers of the sub-network ``config`` in order, with their input sizes."""
    size = int(config["resolution"])
    specs: List[LayerSpec] = []
    stem = arch.scaled(arch.stem_width)
    specs.append(LayerSpec("stem", size, arch.in_channels, stem, kernel=3, stride=2))
    size = conv_out(size, 2)
    first = arch.scaled(arch.first_block_width)
    specs.append(LayerSpec("mbconv", size, stem, first, kernel=3, stride=1, mid=stem, act="relu"))
    cin = first
    for name, stage, width in zip(arch.stage_names, arch.stages, arch.stage_widths):
        for i, block in enumerate(config[name]):
            stride = stage.stride if i == 0 else 1
            mid = make_divisible(round(cin * block["expand"]), arch.divisor)
            se_mid = _se_mid(arch, mid) if stage.se else 0
            specs.append(LayerSpec("mbconv", size, cin, width, int(block["kernel"]), stride, mid, se_mid, stage.act))
            size = conv_out(size, stride)
            cin = width
    final = arch.scaled(arch.final_expand_width)
    feature = arch.scaled(arch.feature_width)
    specs.append(LayerSpec("head", size, cin, cin, mid=final, feature=feature, n_classes=arch.n_classes))
    return specs


# ---------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------


def _stem(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(conv=nn.Conv2d(cin, cout, 3, 2, 1, bias=False), bn=nn.BatchNorm2d(cout), act=build_activation("hswish"))
    )


class _Head(nn.Module):
    """Final 1x1 expansion + BN + h-swish, global average pool, 1x1 feature
    mixing (no BN) + h-swish, dropout and the classifier."""

    def __init__(self, cin: int, final: int, feature: int, n_classes: int, dropout: float):
        super().__init__()
        self.final_expand = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(cin, final, 1, bias=False), bn=nn.BatchNorm2d(final), act=build_activation("hswish"))
        )
        self.feature_mix = nn.Sequential(OrderedDict(conv=nn.Conv2d(final, feature, 1, bias=False), act=build_activation("hswish")))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(x)
        x = x.mean((2, 3), keepdim=True)
        x = self.feature_mix(x).flatten(1)
        return self.classifier(self.dropout(x))


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------
# the supernet
# ---------------------------------------------------------------------------


class OFAMobileNetV3(nn.Module):
    """Once-for-all MobileNetV3 supernet.

    >>> net = OFAMobileNetV3("test_tiny")
    >>> cfg = net.sample_active_subnet(np.random.default_rng(0))
    >>> sub = net.get_active_subnet()          # a static nn.Module, same outputs
    """

    def __init__(self, arch: Union[str, Mapping[str, Any], SupernetConfig] = "tiny_digits", overrides: Optional[Mapping[str, Any]] = None):
        super().__init__()
        self.arch = supernet_config(arch, overrides)
        a = self.arch
        stem = a.scaled(a.stem_width)
        first = a.scaled(a.first_block_width)
        self.stem = _stem(a.in_channels, stem)
        self.first_block = MBConvBlock(stem, first, 3, 1, stem, "relu", None)
        blocks: List[ElasticMBConv] = []
        self.stage_block_index: List[List[int]] = []
        cin = first
        for stage, width in zip(a.stages, a.stage_widths):
            idx = []
            for i in range(a.max_depth):
                idx.append(len(blocks))
                blocks.append(
                    ElasticMBConv(
                        cin,
                        width,
                        stage.stride if i == 0 else 1,
                        stage.act,
                        stage.se,
                        a.kernel_choices,
                        a.expand_choices,
                        a.divisor,
                        a.se_reduction,
                    )
                )
                cin = width
            self.stage_block_index.append(idx)
        self.blocks = nn.ModuleList(blocks)
        final = a.scaled(a.final_expand_width)
        feature = a.scaled(a.feature_width)
        self.final_expand = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(cin, final, 1, bias=False), bn=nn.BatchNorm2d(final), act=build_activation("hswish"))
        )
        self.feature_mix = nn.Sequential(OrderedDict(conv=nn.Conv2d(final, feature, 1, bias=False), act=build_activation("hswish")))
        self.dropout = nn.Dropout(a.dropout)
        self.classifier = ElasticLinear(feature, a.n_classes)
        _init_weights(self)
        for block in self.blocks:  # kernel transforms start as identities
            for p in block.transforms.values():
                with torch.no_grad():
                    p.copy_(torch.eye(p.shape[0]))
        self.active_depths = [a.max_depth] * len(a.stages)
        self.active_resolution = max(a.resolutions)
        self._space: Optional[SearchSpace] = None

    # -- the space of sub-networks ----------------------------------------
    def space(self) -> SearchSpace:
        """The sub-network configurations as a hwaml :class:`SearchSpace`.

        ``space.meta["ofa"]`` describes the structure for OFA's evolution
        searcher and ``space.meta["arch"]`` the supernet shape (for cost
        backends and the accuracy predictor's encoder).
        """
        if self._space is None:
            self._space = self.space_for(self.arch)
        return self._space

    @staticmethod
    def extreme_config(arch: SupernetConfig, which: str) -> Dict[str, Any]:
        """The largest (``which="max"``) or smallest (``"min"``) sub-network."""
        pick = max if which == "max" else min
        block = {"kernel": pick(arch.kernel_choices), "expand": pick(arch.expand_choices)}
        depth = pick(arch.depth_choices)
        return {"resolution": pick(arch.resolutions), **{n: [dict(block) for _ in range(depth)] for n in arch.stage_names}}

    @staticmethod
    def space_for(arch: SupernetConfig) -> SearchSpace:
        """The sub-network space of a supernet shape, without building weights."""
        a = arch
        dims: List[Any] = [Categorical("resolution", list(a.resolutions))]
        for name in a.stage_names:
            dims.append(
                Repeated(name, [Categorical("kernel", list(a.kernel_choices)), Categorical("expand", list(a.expand_choices))], lengths=list(a.depth_choices))
            )
        meta = {
            "ofa": {
                "resolution_key": "resolution",
                "stage_keys": a.stage_names,
                "kernel_choices": list(a.kernel_choices),
                "expand_choices": list(a.expand_choices),
                "depth_choices": list(a.depth_choices),
                "resolutions": list(a.resolutions),
            },
            "arch": a.to_dict(),
        }
        return SearchSpace(dims, meta=meta, name="ofa_mobilenetv3")

    def max_config(self) -> Dict[str, Any]:
        return self.extreme_config(self.arch, "max")

    def min_config(self) -> Dict[str, Any]:
        return self.extreme_config(self.arch, "min")

    def set_active_subnet(self, config: Mapping[str, Any]) -> Dict[str, Any]:
        """Select a sub-network; returns the validated configuration."""
        config = self.space().validate(config)
        for s, name in enumerate(self.arch.stage_names):
            chosen = config[name]
            self.active_depths[s] = len(chosen)
            for i, block_cfg in enumerate(chosen):
                block = self.blocks[self.stage_block_index[s][i]]
                block.active_kernel = block_cfg["kernel"]
                block.active_expand = block_cfg["expand"]
        self.active_resolution = config["resolution"]
        return config

    def set_max_subnet(self) -> Dict[str, Any]:
        return self.set_active_subnet(self.max_config())

    def sample_active_subnet(
        self,
        rng: np.random.Generator,
        kernel_choices: Optional[Sequence[int]] = None,
        expand_choices: Optional[Sequence[int]] = None,
        depth_choices: Optional[Sequence[int]] = None,
        resolutions: Optional[Sequence[int]] = None,
    ) -> Dict[str, Any]:
        """Sample and select a sub-network, optionally from restricted choices
        (the phases of progressive shrinking restrict them)."""
        a = self.arch
        ks = list(kernel_choices or a.kernel_choices)
        es = list(expand_choices or a.expand_choices)
        ds = list(depth_choices or a.depth_choices)
        rs = list(resolutions or a.resolutions)
        config: Dict[str, Any] = {"resolution": int(rs[int(rng.integers(len(rs)))])}
        for name in a.stage_names:
            depth = int(ds[int(rng.integers(len(ds)))])
            config[name] = [{"kernel": int(ks[int(rng.integers(len(ks)))]), "expand": int(es[int(rng.integers(len(es)))])} for _ in range(depth)]
        return self.set_active_subnet(config)

    @property
    def active_config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"resolution": self.active_resolution}
        for s, name in enumerate(self.arch.stage_names):
            config[name] = [
                {"kernel": self.blocks[i].active_kernel, "expand": self.blocks[i].active_expand}
                for i in self.stage_block_index[s][: self.active_depths[s]]
            ]
        return config

    def active_blocks(self) -> Iterator[ElasticMBConv]:
        for s, idx in enumerate(self.stage_block_index):
            for i in idx[: self.active_depths[s]]:
                yield self.blocks[i]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for block in self.active_blocks():
            x = block(x)
        x = self.final_expand(x)
        x = x.mean((2, 3), keepdim=True)
        x = self.feature_mix(x).flatten(1)
        return self.classifier(self.dropout(x))

    # -- elastic width -----------------------------------------------------
    def sort_channels(self, protected_expands: Sequence[float] = ()) -> None:
        """Sort every block's middle channels by importance (before an
        elastic-expand phase of progressive shrinking)."""
        for block in self.blocks:
            block.sort_channels(protected_expands)

    def kernel_transforms(self) -> List[nn.Parameter]:
        return [p for block in self.blocks for p in block.transforms.values()]

    # -- extraction ----------------------------------------------------------
    def get_active_subnet(self) -> "MobileNetV3Subnet":
        """Copy the active sub-network into a static :class:`MobileNetV3Subnet`."""
        sub = MobileNetV3Subnet.__new__(MobileNetV3Subnet)
        nn.Module.__init__(sub)
        sub.arch = self.arch
        sub.config = copy.deepcopy(self.active_config)
        sub.stem = copy.deepcopy(self.stem)
        sub.first_block = copy.deepcopy(self.first_block)
        sub.blocks = nn.ModuleList([b.to_static() for b in self.active_blocks()])
        head = _Head.__new__(_Head)
        nn.Module.__init__(head)
        head.final_expand = copy.deepcopy(self.final_expand)
        head.feature_mix = copy.deepcopy(self.feature_mix)
        head.dropout = nn.Dropout(self.dropout.p)
        head.classifier = self.classifier.to_static(self.classifier.in_features)
        sub.head = head
        sub.train(self.training)
        return sub


class MobileNetV3Subnet(nn.Module):
    """A static MobileNetV3 (no elastic code): what a sub-network extracts to.

    ``config`` is its sub-network configuration and ``arch`` its supernet shape;
    :func:`build_subnet` makes a freshly initialised one (to train from scratch).
    """

    arch: SupernetConfig
    config: Dict[str, Any]

    def __init__(self, arch: Union[str, Mapping[str, Any], SupernetConfig], config: Mapping[str, Any]):
        super().__init__()
        self.arch = supernet_config(arch)
        specs = layer_specs(self.arch, config)
        self.config = copy.deepcopy(dict(config))
        self.stem = _stem(specs[0].cin, specs[0].cout)
        s1 = specs[1]
        self.first_block = MBConvBlock(s1.cin, s1.cout, s1.kernel, 1, s1.mid, "relu", None)
        self.blocks = nn.ModuleList([s.build() for s in specs[2:-1]])
        h = specs[-1]
        self.head = _Head(h.cin, h.mid, h.feature, h.n_classes, self.arch.dropout)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    @property
    def resolution(self) -> int:
        return int(self.config["resolution"])


def build_subnet(arch: Union[str, Mapping[str, Any], SupernetConfig], config: Mapping[str, Any]) -> MobileNetV3Subnet:
    """A randomly initialised static network of the given sub-network shape."""
    return MobileNetV3Subnet(arch, config)
