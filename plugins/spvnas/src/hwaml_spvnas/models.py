"""SPVCNN and the voxel-only MinkUNet-style baseline, both elastic (one class).

The backbone is SPVNAS's: a stem of two 3x3x3 submanifold convolutions, four
down stages (a kernel-2 stride-2 convolution, then two residual blocks), four up
stages (a kernel-2 stride-2 transposed convolution back to the encoder's
coordinates, concatenation with the skip, two residual blocks). SPVCNN adds the
point branch: point features from the stem, fused by addition after the encoder
and after up stages 2 and 4 (Linear, BatchNorm1d, ReLU on the points, trilinear
devoxelisation of the voxels), dropout 0.3 on the voxelised features entering
up stages 1 and 3, classification on the points. The baseline classifies the
final voxels and gives each point its voxel's prediction.

A network is built from a *spec*: ``widths`` (9: stem, 4 down, 4 up),
``mids`` (8 x 2 middle widths of the residual blocks) and ``depths`` (8, each 1
or 2). Every layer can run narrower than built (first-k channels, the weight
sharing of 3D-NAS): :meth:`SPVCNN.set_arch` selects an architecture inside the
spec, :meth:`SPVCNN.subnet` copies it out as a static network whose output is
the same. The up stages' first blocks read ``[transposed-conv channels, skip
channels]``; narrower, they read the first ``t`` channels of the first part and
the first ``s`` of the second (their weight rows ``[0, t)`` and
``[T, T + s)`` of the widest ``T``).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .sparse import PointTensor, SparseTensor, cat, conv3d, record_macs
from .spvconv import initial_voxelize, point_to_voxel, voxel_to_point

__all__ = [
    "SPVCNN_WIDTHS",
    "SPVNAS_LOWER",
    "SPVNAS_UPPER",
    "make_divisible",
    "spvcnn_spec",
    "default_shortcuts",
    "validate_spec",
    "SPVCNN",
]

#: SPVCNN's published widths (stem, 4 down stages, 4 up stages)
SPVCNN_WIDTHS = (32, 32, 64, 128, 256, 256, 128, 96, 96)
#: 3D-NAS's stage-width bounds (the released supernet's lower / upper widths)
SPVNAS_LOWER = (32, 16, 32, 64, 128, 128, 64, 48, 48)
SPVNAS_UPPER = (32, 48, 96, 192, 384, 384, 192, 128, 128)
N_STAGES = 4


def make_divisible(value: float, divisor: int = 4, minimum: Optional[int] = None) -> int:
    """Round to the nearest multiple of ``divisor`` (never below ``minimum`` nor 90 % of ``value``)."""
    minimum = divisor if minimum is None else minimum
    out = max(minimum, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return int(out)


def spvcnn_spec(width_ratio: float = 1.0, widths: Sequence[int] = SPVCNN_WIDTHS, divisor: int = 1) -> Dict[str, Any]:
    """The spec of SPVCNN at ``width_ratio`` (all stages at depth 2, middle widths = stage widths)."""
    w = [make_divisible(c * width_ratio, divisor) if divisor > 1 else max(1, int(c * width_ratio)) for c in widths]
    return {"widths": w, "mids": [[w[i + 1], w[i + 1]] for i in range(2 * N_STAGES)], "depths": [2] * (2 * N_STAGES)}


def validate_spec(spec: Mapping[str, Any]) -> Dict[str, Any]:
    widths, mids, depths = list(spec["widths"]), [list(m) for m in spec["mids"]], list(spec["depths"])
    if len(widths) != 2 * N_STAGES + 1:
        raise ValueError(f"spec widths needs {2 * N_STAGES + 1} entries (stem, 4 down, 4 up), got {len(widths)}")
    if len(mids) != 2 * N_STAGES or any(len(m) != 2 for m in mids):
        raise ValueError("spec mids needs 8 stages x 2 blocks")
    if len(depths) != 2 * N_STAGES or any(d not in (1, 2) for d in depths):
        raise ValueError(f"spec depths needs 8 entries of 1 or 2, got {depths}")
    if any(int(c) < 1 for c in widths) or any(int(c) < 1 for m in mids for c in m):
        raise ValueError("spec widths must be positive")
    out = {"widths": [int(c) for c in widths], "mids": [[int(c) for c in m] for m in mids], "depths": [int(d) for d in depths]}
    if spec.get("shortcuts") is not None:
        sc = [bool(b) for b in spec["shortcuts"]]
        if len(sc) != 2 * N_STAGES:
            raise ValueError("spec shortcuts needs 8 entries (conv shortcut of each stage's first block)")
        out["shortcuts"] = sc
    return out


def default_shortcuts(widths: Sequence[int]) -> List[bool]:
    """A stage's first block has a conv shortcut where its input and output widths differ
    (the up stages' first blocks read the concatenation, so always)."""
    w = list(widths)
    return [w[i] != w[i + 1] for i in range(N_STAGES)] + [True] * N_STAGES


# --------------------------------------------------------------------------- elastic layers

class ElasticConv(nn.Module):
    """A sparse convolution whose first-k input/output channels can be used alone."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, transposed: bool = False):
        super().__init__()
        self.cin, self.cout, self.kernel_size, self.stride, self.transposed = cin, cout, kernel_size, stride, transposed
        k3 = kernel_size ** 3
        self.kernel = nn.Parameter(torch.empty(k3, cin, cout))
        # Kaiming-uniform on the fan-in of the full kernel
        bound = math.sqrt(6.0 / (cin * k3))
        nn.init.uniform_(self.kernel, -bound, bound)

    def forward(self, x: SparseTensor, cout: int, in_index: Optional[torch.Tensor] = None) -> SparseTensor:
        w = self.kernel[:, : x.F.shape[1], :cout] if in_index is None else self.kernel.index_select(1, in_index)[:, :, :cout]
        return conv3d(x, w, self.kernel_size, self.stride, self.transposed)


class ElasticBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the first ``C`` channels of its input (running statistics shared)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        training = self.training
        return F.batch_norm(
            x,
            self.running_mean[:c] if not training or self.track_running_stats else None,
            self.running_var[:c] if not training or self.track_running_stats else None,
            self.weight[:c],
            self.bias[:c],
            training,
            self.momentum if self.momentum is not None else 0.1,
            self.eps,
        )


class ElasticLinear(nn.Linear):
    def forward(self, x: torch.Tensor, cout: Optional[int] = None) -> torch.Tensor:  # type: ignore[override]
        cout = self.out_features if cout is None else cout
        w = self.weight[:cout, : x.shape[1]]
        b = self.bias[:cout] if self.bias is not None else None
        record_macs("linear", x.shape[0] * w.shape[0] * w.shape[1])
        return F.linear(x, w, b)


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, transposed: bool = False, relu: bool = True):
        super().__init__()
        self.conv = ElasticConv(cin, cout, kernel_size, stride, transposed)
        self.bn = ElasticBatchNorm(cout)
        self.relu = relu

    def forward(self, x: SparseTensor, cout: int, in_index: Optional[torch.Tensor] = None) -> SparseTensor:
        y = self.conv(x, cout, in_index)
        f = self.bn(y.F)
        return y.replace_feats(F.relu(f) if self.relu else f)


class ResidualBlock(nn.Module):
    """conv3-BN-ReLU-conv3-BN plus a shortcut (identity, or conv1-BN when the built
    input and output widths differ), then ReLU; the middle width is elastic."""

    def __init__(self, cin: int, cout: int, mid: int, conv_shortcut: Optional[bool] = None):
        super().__init__()
        self.conv1 = ConvBN(cin, mid, 3)
        self.conv2 = ConvBN(mid, cout, 3, relu=False)
        conv_shortcut = cin != cout if conv_shortcut is None else conv_shortcut
        self.shortcut = ConvBN(cin, cout, 1, relu=False) if conv_shortcut else None

    def forward(self, x: SparseTensor, mid: int, cout: int, in_index: Optional[torch.Tensor] = None) -> SparseTensor:
        h = self.conv2(self.conv1(x, mid, in_index), cout)
        if self.shortcut is not None:
            s = self.shortcut(x, cout, in_index).F
        else:
            if x.F.shape[1] != cout:
                raise ValueError(f"identity shortcut needs equal widths, got {x.F.shape[1]} -> {cout}")
            s = x.F
        return h.replace_feats(F.relu(h.F + s))


class PointTransform(nn.Module):
    """SPVConv's point branch: Linear, BatchNorm1d, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.linear = ElasticLinear(cin, cout)
        self.bn = ElasticBatchNorm(cout)

    def forward(self, x: torch.Tensor, cout: int) -> torch.Tensor:
        return F.relu(self.bn(self.linear(x, cout)))


class DownStage(nn.Module):
    def __init__(self, cin: int, cout: int, mids: Sequence[int], depth: int, conv_shortcut: bool):
        super().__init__()
        self.transition = ConvBN(cin, cin, 2, stride=2)
        self.blocks = nn.ModuleList([ResidualBlock(cin if j == 0 else cout, cout, mids[j], conv_shortcut if j == 0 else False) for j in range(depth)])


class UpStage(nn.Module):
    def __init__(self, cin: int, cout: int, skip: int, mids: Sequence[int], depth: int):
        super().__init__()
        self.skip = skip
        self.transition = ConvBN(cin, cout, 2, stride=2, transposed=True)
        self.blocks = nn.ModuleList([ResidualBlock(cout + skip if j == 0 else cout, cout, mids[j], True if j == 0 else False) for j in range(depth)])


# --------------------------------------------------------------------------- the network

class SPVCNN(nn.Module):
    """SPVCNN (``point_branch=True``) or the MinkUNet-style voxel-only baseline.

    ``forward(z)`` takes a :class:`PointTensor` (features ``[N, in_channels]``,
    coordinates in base-voxel units) and returns per-point logits ``[N, classes]``.
    """

    def __init__(self, spec: Mapping[str, Any], num_classes: int, in_channels: int = 4, point_branch: bool = True, dropout: float = 0.3):
        super().__init__()
        self.spec = validate_spec(spec)
        self.spec.setdefault("shortcuts", default_shortcuts(self.spec["widths"]))
        self.num_classes, self.in_channels, self.point_branch, self.dropout_p = int(num_classes), int(in_channels), bool(point_branch), float(dropout)
        w, mids, depths = self.spec["widths"], self.spec["mids"], self.spec["depths"]
        self.stem1 = ConvBN(in_channels, w[0], 3)
        self.stem2 = ConvBN(w[0], w[0], 3)
        self.down = nn.ModuleList([DownStage(w[i], w[i + 1], mids[i], depths[i], self.spec["shortcuts"][i]) for i in range(N_STAGES)])
        self.up = nn.ModuleList(
            [UpStage(w[N_STAGES + i], w[N_STAGES + i + 1], w[N_STAGES - i - 1], mids[N_STAGES + i], depths[N_STAGES + i]) for i in range(N_STAGES)]
        )
        if self.point_branch:
            self.point_transforms = nn.ModuleList(
                [PointTransform(w[0], w[N_STAGES]), PointTransform(w[N_STAGES], w[N_STAGES + 2]), PointTransform(w[N_STAGES + 2], w[-1])]
            )
        self.classifier = ElasticLinear(w[-1], num_classes)
        self.dropout = nn.Dropout(self.dropout_p)
        self.arch = copy.deepcopy(self.spec)

    # -- architecture selection (weight sharing)
    def set_arch(self, arch: Optional[Mapping[str, Any]]) -> None:
        """Run as ``arch`` (every width and depth within the built spec); ``None``: the full spec."""
        if arch is None:
            self.arch = copy.deepcopy(self.spec)
            return
        arch = validate_spec(arch)
        for i, (a, b) in enumerate(zip(arch["widths"], self.spec["widths"])):
            if a > b:
                raise ValueError(f"width {i}: {a} exceeds the built {b}")
        for i in range(2 * N_STAGES):
            if arch["depths"][i] > self.spec["depths"][i]:
                raise ValueError(f"stage {i}: depth {arch['depths'][i]} exceeds the built {self.spec['depths'][i]}")
            for j in range(arch["depths"][i]):
                if arch["mids"][i][j] > self.spec["mids"][i][j]:
                    raise ValueError(f"stage {i} block {j}: middle width {arch['mids'][i][j]} exceeds the built {self.spec['mids'][i][j]}")
        arch["shortcuts"] = list(self.spec["shortcuts"])
        self.arch = arch

    def _concat_index(self, i: int) -> torch.Tensor:
        w_built = self.spec["widths"]
        t_active = self.arch["widths"][N_STAGES + i + 1]
        s_active = self.arch["widths"][N_STAGES - i - 1]
        t_built = w_built[N_STAGES + i + 1]
        return torch.cat([torch.arange(t_active), t_built + torch.arange(s_active)])

    def _stage(self, stage: nn.Module, x: SparseTensor, i: int, in_index: Optional[torch.Tensor] = None) -> SparseTensor:
        a = self.arch
        for j in range(a["depths"][i]):
            x = stage.blocks[j](x, a["mids"][i][j], a["widths"][i + 1], in_index if j == 0 else None)
        return x

    def forward(self, z: PointTensor) -> torch.Tensor:
        if not isinstance(z, PointTensor):
            raise TypeError(
                f"SPVCNN takes a PointTensor (one LiDAR scan's points), not {type(z).__name__}; "
                "dense-input cost backends cannot run it (use spvnas_macs / spvnas_latency)"
            )
        a = self.arch
        w = a["widths"]
        x0 = initial_voxelize(z)
        x0 = self.stem2(self.stem1(x0, w[0]), w[0])
        skips = [x0]
        if self.point_branch:
            z0 = voxel_to_point(x0, z)
            x = point_to_voxel(x0, z0)
        else:
            x = x0
        for i, stage in enumerate(self.down):
            x = stage.transition(x, x.F.shape[1])
            x = self._stage(stage, x, i)
            skips.append(x)
        if self.point_branch:
            z1 = voxel_to_point(x, z0)
            z1 = z1.replace_feats(z1.F + self.point_transforms[0](z0.F, w[N_STAGES]))
            x = point_to_voxel(x, z1)
        y = x
        for i, stage in enumerate(self.up):
            if i in (0, 2):
                y = y.replace_feats(self.dropout(y.F))
            y = stage.transition(y, w[N_STAGES + i + 1])
            y = cat([y, skips[N_STAGES - i - 1]])
            y = self._stage(stage, y, N_STAGES + i, self._concat_index(i))
            if self.point_branch and i == 1:
                z2 = voxel_to_point(y, z1)
                z2 = z2.replace_feats(z2.F + self.point_transforms[1](z1.F, w[N_STAGES + 2]))
                y = point_to_voxel(y, z2)
        if self.point_branch:
            z3 = voxel_to_point(y, z2)
            z3 = z3.replace_feats(z3.F + self.point_transforms[2](z2.F, w[-1]))
            return self.classifier(z3.F)
        voxel_logits = self.classifier(y.F)
        return voxel_logits.index_select(0, z.cache[("p2v", 1)])

    # -- static sub-network
    def subnet(self, arch: Optional[Mapping[str, Any]] = None) -> "SPVCNN":
        """A static network of ``arch`` (default: the selected one) holding this
        network's shared weights: the same outputs, nothing unused."""
        arch = validate_spec(arch) if arch is not None else copy.deepcopy(self.arch)
        saved = self.arch
        self.set_arch(arch)  # checks it fits
        self.arch = saved
        arch["shortcuts"] = list(self.spec["shortcuts"])
        net = SPVCNN(arch, self.num_classes, self.in_channels, self.point_branch, self.dropout_p)
        mine = self.state_dict()
        out = {}
        concat_params = {}
        for i in range(N_STAGES):
            t_built, t = self.spec["widths"][N_STAGES + i + 1], arch["widths"][N_STAGES + i + 1]
            s = arch["widths"][N_STAGES - i - 1]
            idx = torch.cat([torch.arange(t), t_built + torch.arange(s)])
            concat_params[f"up.{i}.blocks.0.conv1.conv.kernel"] = idx
            concat_params[f"up.{i}.blocks.0.shortcut.conv.kernel"] = idx
        for name, target in net.state_dict().items():
            src = mine[name]
            if name in concat_params:
                src = src.index_select(1, concat_params[name])
            if src.ndim:
                src = src[tuple(slice(0, n) for n in target.shape)]
            out[name] = src.clone()
        net.load_state_dict(out)
        net.train(self.training)
        return net
