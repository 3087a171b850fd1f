"""Exact MACs of any sub-network without running it: the count as a polynomial in the widths.

The issue's MACs (``spvnas_macs``: kernel-map entries x C_in x C_out per sparse
convolution, points x C_in x C_out per point-wise linear layer) depend on the
architecture only through the widths, because a scan's kernel maps do not: at
each level ``l`` (stride ``2^l``) the submanifold 3x3x3 map has ``E_l`` entries,
the 1x1x1 shortcut map, the kernel-2 stride-2 map out of the level and the
transposed map back into it each have ``N_l`` (the voxels at the level: every
voxel feeds exactly one coarser voxel), and the point-wise layers run on ``P``
points. So

    MACs(arch) = sum_l E_l a_l(arch) + sum_l N_l b_l(arch) + P c(arch)

with ``a, b, c`` sums of width products that :func:`macs_terms` writes down from
the network's structure (:class:`hwaml_spvnas.models.SPVCNN`). The 11 scan
constants are fitted once by least squares on a few counted forward passes
(:meth:`MacsModel.fit`: integers, recovered exactly) and checked on other
architectures; 3D-NAS's evolution then tests the MACs constraint of thousands of
candidates for the cost of those few forwards.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Sequence

import numpy as np
import torch

from .models import N_STAGES, default_shortcuts
from .sparse import count_macs

__all__ = ["macs_terms", "MacsModel", "TERMS"]

LEVELS = N_STAGES + 1
TERMS = [f"E{l}" for l in range(LEVELS)] + [f"N{l}" for l in range(LEVELS)] + ["P"]


def macs_terms(arch: Mapping[str, Any], num_classes: int = 19, in_channels: int = 4, point_branch: bool = True,
               shortcuts: Sequence[bool] | None = None) -> np.ndarray:
    """The coefficient of each scan constant (``TERMS``) in the MACs of ``arch``.

    ``shortcuts``: which first blocks have a conv shortcut (default: the arch's
    own ``shortcuts``, else :func:`default_shortcuts` of its widths - a
    sub-network copied out of a supernet keeps the supernet's)."""
    w = [int(c) for c in arch["widths"]]
    mids, depths = arch["mids"], [int(d) for d in arch["depths"]]
    sc = list(shortcuts if shortcuts is not None else arch.get("shortcuts") or default_shortcuts(w))
    t = dict.fromkeys(TERMS, 0.0)
    t["E0"] += in_channels * w[0] + w[0] * w[0]  # the stem's two 3x3x3 convolutions
    for i in range(N_STAGES):  # down stage i: level i -> i + 1
        cin = w[i]
        t[f"N{i}"] += cin * cin  # kernel-2 stride-2 transition, width kept
        for j in range(depths[i]):
            bin_ = cin if j == 0 else w[i + 1]
            m = int(mids[i][j])
            t[f"E{i + 1}"] += bin_ * m + m * w[i + 1]
            if j == 0 and sc[i]:
                t[f"N{i + 1}"] += bin_ * w[i + 1]
    for i in range(N_STAGES):  # up stage i: level N - i -> N - i - 1, skip from level N - i - 1
        s = N_STAGES + i
        lvl = N_STAGES - i - 1
        cout = w[s + 1]
        t[f"N{lvl}"] += w[s] * cout  # transposed transition
        for j in range(depths[s]):
            bin_ = cout + w[lvl] if j == 0 else cout
            m = int(mids[s][j])
            t[f"E{lvl}"] += bin_ * m + m * cout
            if j == 0:  # the concatenated input always has a conv shortcut
                t[f"N{lvl}"] += bin_ * cout
    if point_branch:
        t["P"] += w[0] * w[N_STAGES] + w[N_STAGES] * w[N_STAGES + 2] + w[N_STAGES + 2] * w[-1] + w[-1] * num_classes
    else:
        t["N0"] += w[-1] * num_classes  # the voxel classifier
    return np.array([t[k] for k in TERMS], dtype=float)


class MacsModel:
    """``macs(arch)`` in MACs, exact for the scans it was fitted on (see the module docstring)."""

    def __init__(self, constants: Mapping[str, float], num_classes: int = 19, in_channels: int = 4, point_branch: bool = True,
                 shortcuts: Sequence[bool] | None = None):
        self.constants = {k: float(constants[k]) for k in TERMS}
        self._c = np.array([self.constants[k] for k in TERMS])
        self.num_classes, self.in_channels, self.point_branch = num_classes, in_channels, point_branch
        self.shortcuts = None if shortcuts is None else list(shortcuts)

    def macs(self, arch: Mapping[str, Any]) -> float:
        return float(macs_terms(arch, self.num_classes, self.in_channels, self.point_branch, self.shortcuts) @ self._c)

    @classmethod
    def fit(cls, make_net: Callable[[Mapping[str, Any]], torch.nn.Module], archs: Sequence[Mapping[str, Any]], inputs: Sequence[Any],
            num_classes: int = 19, in_channels: int = 4, point_branch: bool = True, shortcuts: Sequence[bool] | None = None,
            check: int = 2) -> "MacsModel":
        """Count ``make_net(arch)``'s MACs (mean over ``inputs``, each called
        through ``input()`` for a fresh point tensor) for every arch, solve for the
        scan constants and verify the model on the last ``check`` archs (left out
        of the fit); :class:`ValueError` when it does not reproduce them."""
        if len(archs) < len(TERMS) + check:
            raise ValueError(f"fitting needs at least {len(TERMS) + check} architectures, got {len(archs)}")
        counted: List[float] = []
        with torch.no_grad():
            for arch in archs:
                net = make_net(arch).eval()
                per = []
                for make_input in inputs:
                    with count_macs() as m:
                        net(make_input())
                    per.append(m.total)
                counted.append(float(np.mean(per)))
        return cls.solve(archs, counted, num_classes, in_channels, point_branch, shortcuts, check)

    @classmethod
    def solve(cls, archs: Sequence[Mapping[str, Any]], counted: Sequence[float], num_classes: int = 19, in_channels: int = 4,
              point_branch: bool = True, shortcuts: Sequence[bool] | None = None, check: int = 2) -> "MacsModel":
        """The scan constants from counted MACs (``counted[i]`` of ``archs[i]``), verified on the last ``check``."""
        if len(archs) != len(counted) or len(archs) < len(TERMS) + check:
            raise ValueError(f"fitting needs at least {len(TERMS) + check} architectures with their counts, got {len(archs)} / {len(counted)}")
        X = np.stack([macs_terms(a, num_classes, in_channels, point_branch, shortcuts) for a in archs])
        y = np.asarray(counted)
        n_fit = len(archs) - check
        sol, *_ = np.linalg.lstsq(X[:n_fit], y[:n_fit], rcond=None)
        model = cls(dict(zip(TERMS, sol)), num_classes, in_channels, point_branch, shortcuts)
        pred = X @ model._c
        err = np.abs(pred - y) / np.maximum(1.0, y)
        if err.max() > 1e-6:
            raise ValueError(f"the MACs model does not reproduce the counted MACs (worst relative error {err.max():.2e}); "
                             "the network's structure and macs_terms disagree")
        return model
