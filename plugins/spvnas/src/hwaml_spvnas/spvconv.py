"""SPVConv's point <-> voxel transforms (Tang et al., ECCV 2020, section 3).

* :func:`initial_voxelize`: points -> stride-1 voxels by hashing ``floor(p)``,
  the voxel feature the mean of its points' features;
* :func:`point_to_voxel`: point features -> the voxels of a sparse tensor at its
  level (``floor(p / s)``), averaged;
* :func:`voxel_to_point`: trilinear interpolation from the 8 voxels around each
  point. A voxel of level ``s`` at index ``v`` covers ``[v s, (v + 1) s)`` base
  voxels and its feature sits at its centre, so the corners of point ``p`` are
  ``floor(p / s - 1/2) + {0, 1}^3``. Corners that are not occupied are zeroed
  and the remaining weights renormalised to sum to one (the reference clamps the
  index of a missing corner instead, which copies an unrelated voxel's feature).
  The point's own voxel is always a corner with weight >= 1/8, so the
  renormalisation never divides by zero.

Indices and weights depend only on the points and the level, so they are cached
on the :class:`PointTensor` (shared by every point tensor of one forward pass).
"""

from __future__ import annotations

from typing import Tuple

import torch

from .sparse import CoordinateCache, PointTensor, SparseTensor, hash_coords, neighbour_rows

__all__ = ["initial_voxelize", "point_to_voxel", "voxel_to_point", "scatter_mean"]


def scatter_mean(feats: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    out = feats.new_zeros(n, feats.shape[1]).index_add_(0, index, feats)
    count = torch.bincount(index, minlength=n).clamp_(min=1).to(feats.dtype)
    return out / count.unsqueeze(1)


def _point_voxels(z: PointTensor, stride: int) -> torch.Tensor:
    """Integer voxel coordinates (batch, x, y, z) of every point at level ``stride``."""
    c = torch.empty(z.C.shape[0], 4, dtype=torch.long)
    c[:, 0] = z.C[:, 0].round().long()
    c[:, 1:] = torch.floor(z.C[:, 1:] / stride).long()
    return c


def _find(coords: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Row of each query among ``coords`` or -1."""
    return neighbour_rows(coords, queries, torch.zeros(1, 3, dtype=torch.long))[0]


def initial_voxelize(z: PointTensor) -> SparseTensor:
    """Stride-1 voxels of the points (``floor`` of base-voxel coordinates), features averaged."""
    pc = _point_voxels(z, 1)
    keys = hash_coords(pc)
    uniq, inverse = torch.unique(keys, return_inverse=True)
    coords = torch.empty(uniq.numel(), 4, dtype=torch.long)
    coords[inverse] = pc
    z.cache[("p2v", 1)] = inverse
    return SparseTensor(scatter_mean(z.F, inverse, uniq.numel()), coords, 1, CoordinateCache())


def point_to_voxel(x: SparseTensor, z: PointTensor) -> SparseTensor:
    """Average point features into the voxels of ``x`` (its level, its coordinates)."""
    key = ("p2v", x.s)
    idx = z.cache.get(key)
    if idx is None or idx.numel() != z.F.shape[0]:
        idx = _find(x.C, _point_voxels(z, x.s))
        if bool((idx < 0).any()):
            raise ValueError(f"point_to_voxel: {int((idx < 0).sum())} points fall outside the level-{x.s} voxels")
        z.cache[key] = idx
    return x.replace_feats(scatter_mean(z.F, idx, x.C.shape[0]))


def _trilinear(x: SparseTensor, z: PointTensor) -> Tuple[torch.Tensor, torch.Tensor]:
    key = ("v2p", x.s, x.C.shape[0])
    hit = z.cache.get(key)
    if hit is not None:
        return hit
    u = z.C[:, 1:] / x.s - 0.5
    base = torch.floor(u)
    frac = (u - base).to(z.F.dtype)
    base = base.long()
    n = z.C.shape[0]
    batch = z.C[:, 0].round().long()
    corners = torch.tensor([[dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)], dtype=torch.long)
    idx = neighbour_rows(x.C, torch.cat([batch.unsqueeze(1), base], 1), corners).t()
    wsel = torch.where(corners.unsqueeze(1).bool(), frac.unsqueeze(0), 1 - frac.unsqueeze(0))  # [8, n, 3]
    w = wsel.prod(2).t()
    w = torch.where(idx >= 0, w, torch.zeros_like(w))
    w = w / w.sum(1, keepdim=True)
    z.cache[key] = (idx, w)
    return idx, w


def voxel_to_point(x: SparseTensor, z: PointTensor) -> PointTensor:
    """Trilinear devoxelisation of ``x`` at the points of ``z`` (missing corners renormalised)."""
    idx, w = _trilinear(x, z)
    gathered = x.F.index_select(0, idx.clamp(min=0).reshape(-1)).reshape(idx.shape[0], 8, -1)
    return z.replace_feats((gathered * w.to(x.F.dtype).unsqueeze(2)).sum(1))
