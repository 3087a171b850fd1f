"""A torchsparse-compatible sparse tensor library in pure PyTorch (runs on CPU).

The names follow torchsparse (``SparseTensor`` with ``.F``/``.C``/``.s``,
``PointTensor``, ``sparse_quantize``, ``Conv3d``, ``BatchNorm``, ``ReLU``,
``cat``) so that SPVNAS code reads as it does upstream. The machinery is the
textbook one:

* coordinates ``[N, 4]`` int64 (batch, x, y, z), stored in the units of their
  stride level (a tensor at stride 4 holds ``floor(c / 4)``), are packed into one
  order-preserving int64 key each; ``unique`` of the keys voxelises and
  downsamples (hashing by sort/unique instead of a GPU hash table). Neighbours
  are found through the occupied (batch, x, y) columns and a compact table of
  each column's z-span, or by ``searchsorted`` over the sorted keys when the
  spans are too large for the table (:func:`neighbour_rows`);
* a *kernel map* lists, for every kernel offset, the (input row, output row)
  pairs it connects; a convolution is gather -> matmul -> scatter-add over the
  offsets, so autograd differentiates it exactly;
* stride-1 convolutions are submanifold (outputs at the input coordinates), a
  stride-``s`` convolution outputs ``unique(floor(c / s))``, and a transposed
  convolution reuses the cached map of the strided convolution it inverts, so it
  returns exactly the encoder's coordinates in the encoder's order.

Kernel maps and coordinates are cached in a :class:`CoordinateCache` shared by
every tensor derived from one input (torchsparse's ``cmaps``/``kmaps``).
Every convolution adds ``pairs x C_in x C_out`` to the active
:func:`count_macs` counter: the MAC count SPVNAS users asked for (one
multiply-accumulate per kernel-map entry and channel pair).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = [
    "SparseTensor",
    "PointTensor",
    "CoordinateCache",
    "KernelMap",
    "sparse_quantize",
    "hash_coords",
    "kernel_offsets",
    "build_submanifold_map",
    "build_strided_map",
    "conv3d",
    "Conv3d",
    "BatchNorm",
    "ReLU",
    "cat",
    "count_macs",
    "MacCounter",
]

# 18 bits per axis (coordinates within +-131072 voxels of the origin, i.e.
# +-6.5 km at 5 cm) and 9 bits of batch index fit one signed int64 key.
_AXIS_BITS = 18
_AXIS_OFFSET = 1 << (_AXIS_BITS - 1)
_AXIS_MASK = (1 << _AXIS_BITS) - 1
_MAX_BATCH = 1 << (63 - 3 * _AXIS_BITS)


def hash_coords(coords: torch.Tensor) -> torch.Tensor:
    """Pack ``[N, 4]`` integer coordinates (batch, x, y, z) into one int64 key each.

    The packing is order preserving in (batch, x, y, z), so sorting keys sorts
    coordinates lexicographically. Raises ``ValueError`` for coordinates outside
    the representable range instead of letting keys collide.
    """
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise ValueError(f"coordinates must be [N, 4] (batch, x, y, z), got shape {tuple(coords.shape)}")
    c = coords.long()
    if c.numel():
        xyz = c[:, 1:]
        lo, hi = int(xyz.min()), int(xyz.max())
        if lo < -_AXIS_OFFSET or hi >= _AXIS_OFFSET:
            raise ValueError(f"voxel coordinates must lie in [{-_AXIS_OFFSET}, {_AXIS_OFFSET}), got [{lo}, {hi}] (use a coarser voxel size)")
        b_lo, b_hi = int(c[:, 0].min()), int(c[:, 0].max())
        if b_lo < 0 or b_hi >= _MAX_BATCH:
            raise ValueError(f"batch indices must lie in [0, {_MAX_BATCH}), got [{b_lo}, {b_hi}]")
    x = c[:, 1] + _AXIS_OFFSET
    y = c[:, 2] + _AXIS_OFFSET
    z = c[:, 3] + _AXIS_OFFSET
    return (c[:, 0] << (3 * _AXIS_BITS)) | (x << (2 * _AXIS_BITS)) | (y << _AXIS_BITS) | z


def kernel_offsets(kernel_size: int) -> torch.Tensor:
    """Offsets ``[K^3, 3]`` of a cubic kernel, x slowest, z fastest.

    Odd kernels are centred (``-K//2 .. K//2``); even kernels start at 0
    (``0 .. K-1``), so a kernel-2 stride-2 convolution maps each input voxel to
    exactly one output voxel, ``floor(c / 2)``, through offset ``c mod 2``.
    """
    k = int(kernel_size)
    if k < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    r = range(-(k // 2), k // 2 + 1) if k % 2 else range(0, k)
    return torch.tensor(list(itertools.product(r, r, r)), dtype=torch.long)


@dataclass
class KernelMap:
    """For each kernel offset ``k``: the input rows ``in_idx[k]`` that feed the
    output rows ``out_idx[k]`` through the weight slice ``W[k]``."""

    in_idx: List[torch.Tensor]
    out_idx: List[torch.Tensor]
    n_in: int
    n_out: int
    kernel_size: int
    stride: int
    #: every input row appears in exactly one pair (a kernel that tiles its stride)
    tiles_inputs: bool = False

    def pairs(self) -> int:
        """The number of kernel-map entries (the MAC multiplier of one channel pair)."""
        return int(sum(int(t.numel()) for t in self.in_idx))

    def identity_offset(self) -> Optional[int]:
        """The offset that maps every row to itself (a submanifold kernel's centre), if any."""
        if self.stride != 1 or self.kernel_size % 2 == 0 or self.n_in != self.n_out:
            return None
        return len(self.in_idx) // 2

    def transposed(self) -> "KernelMap":
        t = KernelMap(self.out_idx, self.in_idx, self.n_out, self.n_in, self.kernel_size, self.stride)
        t.single_source = self.tiles_inputs
        t.derived = self.derived  # shared, so every transposed use reuses what the first one derived
        return t

    #: every output row receives exactly one pair (the transpose of a tiling map)
    single_source: bool = False
    #: index arrays derived from the map once and reused by later convolutions
    derived: Dict[str, Tuple] = field(default_factory=dict, repr=False, compare=False)

    def single_source_layout(self) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
        """For a single-source map: every pair's input row in offset order, the
        position of each output row's pair in that order, and the pairs per offset."""
        got = self.derived.get("single_source")
        if got is None:
            ins, outs = torch.cat(self.in_idx), torch.cat(self.out_idx)
            rank = torch.empty(self.n_out, dtype=torch.long)
            rank[outs] = torch.arange(outs.numel())
            got = self.derived["single_source"] = (ins, rank, [int(t.numel()) for t in self.in_idx])
        return got


@dataclass
class CoordinateCache:
    """Coordinates per stride level and kernel maps, shared by every tensor
    derived from one input (so a decoder finds its encoder's maps)."""

    coords: Dict[int, torch.Tensor] = field(default_factory=dict)
    kmaps: Dict[Tuple, KernelMap] = field(default_factory=dict)


class SparseTensor:
    """Features ``F`` ``[N, C]`` at integer coordinates ``C`` ``[N, 4]`` (batch, x, y, z)
    of stride level ``s`` (coordinates in units of ``s`` base voxels)."""

    def __init__(self, feats: torch.Tensor, coords: torch.Tensor, stride: int = 1, cache: Optional[CoordinateCache] = None):
        if feats.ndim != 2:
            raise ValueError(f"features must be [N, C], got shape {tuple(feats.shape)}")
        if coords.ndim != 2 or coords.shape[1] != 4 or coords.shape[0] != feats.shape[0]:
            raise ValueError(f"coordinates must be [N, 4] with N = {feats.shape[0]} rows, got {tuple(coords.shape)}")
        if coords.dtype.is_floating_point:
            raise ValueError("SparseTensor coordinates must be integers (quantise points with sparse_quantize first)")
        self.F = feats
        self.C = coords.long()
        self.s = int(stride)
        self.cache = cache if cache is not None else CoordinateCache()
        self.cache.coords.setdefault(self.s, self.C)

    def replace_feats(self, feats: torch.Tensor) -> "SparseTensor":
        """The same coordinates (and cache) with new features."""
        return SparseTensor(feats, self.C, self.s, self.cache)

    def __repr__(self) -> str:
        return f"SparseTensor(N={self.F.shape[0]}, C={self.F.shape[1]}, stride={self.s})"


class PointTensor:
    """Point features ``F`` ``[N, C]`` at continuous coordinates ``C`` ``[N, 4]``
    (batch, then x, y, z in base-voxel units). ``cache`` holds per-stride voxel
    indices and interpolation weights, shared by tensors with the same points."""

    def __init__(self, feats: torch.Tensor, coords: torch.Tensor, cache: Optional[dict] = None):
        if coords.ndim != 2 or coords.shape[1] != 4 or coords.shape[0] != feats.shape[0]:
            raise ValueError(f"point coordinates must be [N, 4] with N = {feats.shape[0]} rows, got {tuple(coords.shape)}")
        self.F = feats
        self.C = coords
        self.cache = cache if cache is not None else {}

    def replace_feats(self, feats: torch.Tensor) -> "PointTensor":
        return PointTensor(feats, self.C, self.cache)

    def __repr__(self) -> str:
        return f"PointTensor(N={self.F.shape[0]}, C={self.F.shape[1]})"


def sparse_quantize(coords, voxel_size=1.0, *, return_index: bool = False, return_inverse: bool = False):
    """Voxelise points: ``floor(coords / voxel_size)``, one row per occupied voxel.

    ``coords`` is ``[N, D]`` (numpy or torch, float or int). Returns the unique
    voxel coordinates (int32, numpy), plus with ``return_index`` the index of one
    representative point per voxel (its first point), plus with
    ``return_inverse`` the voxel of every point, so that
    ``voxels[inverse] == floor(coords / voxel_size)`` and ``coords[indices]``
    are the representatives. The order is the lexicographic order of the voxels.
    """
    arr = coords.detach().cpu().numpy() if isinstance(coords, torch.Tensor) else np.asarray(coords)
    if arr.ndim != 2:
        raise ValueError(f"sparse_quantize expects [N, D] coordinates, got shape {arr.shape}")
    vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (arr.shape[1],))
    if np.any(vs <= 0):
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    q = np.floor(arr.astype(np.float64) / vs).astype(np.int64)
    indices, inverse = _unique_rows(q)
    inverse = inverse.reshape(-1)
    voxels = q[indices].astype(np.int32)
    out = [voxels]
    if return_index:
        out.append(indices)
    if return_inverse:
        out.append(inverse)
    return out[0] if len(out) == 1 else tuple(out)


def _unique_rows(q: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """First index of each distinct row (rows in lexicographic order) and every row's group.

    Rows are packed into one int64 by mixed radix when their ranges allow (order
    preserving, and far faster than ``np.unique(axis=0)``), otherwise compared as rows.
    """
    if q.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo = q.min(0)
    span = q.max(0) - lo + 1
    if float(np.prod(span.astype(np.float64))) < 2.0 ** 62:
        key = np.zeros(q.shape[0], dtype=np.int64)
        for d in range(q.shape[1]):
            key = key * int(span[d]) + (q[:, d] - lo[d])
        _, indices, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, indices, inverse = np.unique(q, axis=0, return_index=True, return_inverse=True)
    return indices, inverse.reshape(-1)


def _offset_keys(offsets: torch.Tensor) -> torch.Tensor:
    """Key increments of coordinate offsets: the packing is linear per axis, so
    ``hash(c + d) == hash(c) + offset_key(d)`` while ``c + d`` stays in range."""
    return (offsets[:, 0] << (2 * _AXIS_BITS)) + (offsets[:, 1] << _AXIS_BITS) + offsets[:, 2]


#: a dense (batch, x, y) column table is used for neighbour look-ups up to this many cells
DENSE_INDEX_CELLS = 1 << 26


def neighbour_rows(coords: torch.Tensor, base: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``rows[k, j]``: the row of ``coords`` at ``base[j] + offsets[k]``, or -1.

    Two strategies with the same answers. Usually: the occupied (batch, x, y)
    columns are found by ``unique`` of column keys over the bounding box (padded by
    the offsets, so an (x, y) offset is a constant key step), a neighbouring column
    by ``searchsorted`` of the (few) distinct query columns, and a voxel by one
    gather from a compact table holding, per occupied column, the rows of its
    z-span; offsets differing only in z share their column look-up. When the
    z-spans add up to more than ``DENSE_INDEX_CELLS`` cells: binary search
    (``searchsorted``) of the packed voxel keys, an offset a constant key increment.
    """
    K, n = offsets.shape[0], base.shape[0]
    if coords.shape[0] == 0 or n == 0 or K == 0:
        return torch.full((K, n), -1, dtype=torch.long)
    off_lo, off_hi = offsets.min(0).values, offsets.max(0).values
    c_lo, c_hi = torch.aminmax(coords[:, 1:], dim=0)
    b_lo, b_hi = (c_lo, c_hi) if base is coords else torch.aminmax(base[:, 1:], dim=0)
    lo = torch.minimum(c_lo, b_lo + off_lo)
    hi = torch.maximum(c_hi, b_hi + off_hi)
    ext = (hi - lo + 1).tolist()
    X, Y = int(ext[0]), int(ext[1])
    rel = coords[:, 1:] - lo
    col_key = (coords[:, 0] * X + rel[:, 0]) * Y + rel[:, 1]
    if bool((col_key[1:] >= col_key[:-1]).all()):  # coordinates in key order (as voxelised): no sort
        cols, col_of = torch.unique_consecutive(col_key, return_inverse=True)
    else:
        cols, col_of = torch.unique(col_key, return_inverse=True)
    nc = cols.numel()
    z = rel[:, 2]
    # per occupied column: its z-span [zlo, zhi] and where that span starts in the table;
    # entry nc is a sentinel column with an empty span (missing neighbour columns)
    # per occupied column: its z-span [zlo, zhi], stored in the table padded by one
    # empty (-1) cell at each end, so a z outside the span is clamped onto a pad cell
    zlo = torch.full((nc + 1,), 1 << 40, dtype=torch.long).scatter_reduce_(0, col_of, z, "amin")
    zhi = torch.full((nc + 1,), -(1 << 40), dtype=torch.long).scatter_reduce_(0, col_of, z, "amax")
    span = zhi[:nc] - zlo[:nc] + 3
    total = int(span.sum())
    if total <= DENSE_INDEX_CELLS:
        start = torch.zeros(nc + 1, dtype=torch.long)
        torch.cumsum(span, 0, out=start[1:])
        zlo -= 1
        zhi += 1
        shift = start - zlo  # table position of (column, z) = shift[column] + clamp(z, zlo - 1, zhi + 1)
        # entry nc: a sentinel column (missing neighbours) whose only cell is the table's last, empty one
        shift[nc], zlo[nc], zhi[nc] = total, 0, 0
        table = torch.full((total + 1,), -1, dtype=torch.long)
        table[shift.index_select(0, col_of) + z] = torch.arange(coords.shape[0])
        if base is coords:
            qcols, qcol_of, bz = cols, col_of, z
        else:
            brel = base[:, 1:] - lo
            qcols, qcol_of = torch.unique((base[:, 0] * X + brel[:, 0]) * Y + brel[:, 1], return_inverse=True)
            bz = brel[:, 2]
        col_step = (offsets[:, 0] * Y + offsets[:, 1]).tolist()
        dzs = offsets[:, 2].tolist()
        out = torch.empty(K, n, dtype=torch.long)
        col_cache: Dict[int, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        # first index of cols >= qcols + step, per step; cols_end has a sentinel past every key
        first: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}
        cols_end = torch.cat([cols, cols.new_full((1,), 1 << 62)])
        for k in range(K):
            step = col_step[k]
            if step not in col_cache:  # offsets differing only in z share their column look-up
                if step == 0 and qcols is cols:
                    ncol = col_of
                    first[0] = (torch.arange(nc), torch.ones(nc, dtype=torch.long))
                else:
                    q = qcols + step
                    if step - 1 in first:  # keys are distinct integers: step's first index follows from step - 1's
                        p, hit = first[step - 1]
                        pos = p + hit
                    elif step == -1 and qcols is cols:  # the first key >= c - 1 is c's predecessor or c itself
                        pos = torch.arange(nc)
                        pos[1:] -= (cols[:-1] == cols[1:] - 1).long()
                    else:
                        pos = torch.searchsorted(cols, q)
                    hit = cols_end.index_select(0, pos) == q
                    first[step] = (pos, hit.long())
                    ncol = torch.where(hit, pos, nc).index_select(0, qcol_of)
                col_cache[step] = (shift.index_select(0, ncol), zlo.index_select(0, ncol), zhi.index_select(0, ncol))
            sh, zl, zh = col_cache[step]
            torch.index_select(table, 0, sh + torch.clamp(bz + dzs[k], zl, zh), out=out[k])
        return out
    _check_margin(base, int(offsets.min()), int(offsets.max()))
    sorted_keys, order = torch.sort(hash_coords(coords))
    queries = hash_coords(base).unsqueeze(0) + _offset_keys(offsets).unsqueeze(1)
    pos = torch.searchsorted(sorted_keys, queries.reshape(-1)).clamp_(max=sorted_keys.numel() - 1)
    hit = sorted_keys[pos] == queries.reshape(-1)
    return torch.where(hit, order[pos], -1).reshape(K, n)


def _query_all(coords: torch.Tensor, base: torch.Tensor, offsets: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """For each offset: (output rows o, input rows i) where ``base[o] + offset`` is input row i."""
    rows = neighbour_rows(coords, base, offsets)
    n = rows.shape[1]
    found = rows.view(-1) >= 0
    counts = torch.count_nonzero(found.view(rows.shape), dim=1).tolist()
    # one nonzero over all offsets: flat (offset, row) positions, offsets in order, rows ascending within each
    flat = found.nonzero().squeeze(1)
    ins = list(torch.split(rows.view(-1).index_select(0, flat), counts))
    outs = [f - k * n if k else f for k, f in enumerate(torch.split(flat, counts))]
    return outs, ins


def _check_margin(coords: torch.Tensor, lo: int, hi: int) -> None:
    if coords.numel():
        hash_coords(torch.stack([coords.min(0).values + torch.tensor([0, lo, lo, lo]), coords.max(0).values + torch.tensor([0, hi, hi, hi])]))


def build_submanifold_map(coords: torch.Tensor, kernel_size: int) -> KernelMap:
    """Kernel map of a stride-1 (submanifold) convolution: output row ``o`` at
    ``coords[o]`` reads input row ``i`` at ``coords[o] + offset``."""
    offsets = kernel_offsets(kernel_size)
    n = coords.shape[0]
    if kernel_size % 2 == 0:
        outs, ins = _query_all(coords, coords, offsets)
        return KernelMap(ins, outs, n, n, int(kernel_size), 1)
    # offsets k and K-1-k are opposite: "o reads i through d" is "i reads o through -d",
    # so half the look-ups suffice (the centre maps every row to itself)
    half = len(offsets) // 2
    outs, ins = _query_all(coords, coords, offsets[:half])
    centre = torch.arange(n)
    outs = outs + [centre] + [ins[half - 1 - j] for j in range(half)]
    ins = ins + [centre] + [outs[half - 1 - j] for j in range(half)]
    return KernelMap(ins, outs, n, n, int(kernel_size), 1)


def _downsample(coords: torch.Tensor, stride: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``unique(floor(c / stride))`` per batch in key (lexicographic) order, and each input's output row."""
    down = coords.clone()
    down[:, 1:] = torch.div(coords[:, 1:], stride, rounding_mode="floor")
    keys = hash_coords(down)
    uniq, inverse = torch.unique(keys, return_inverse=True)
    out = torch.empty(uniq.numel(), 4, dtype=torch.long)
    out[inverse] = down
    return out, inverse


def downsample_coords(coords: torch.Tensor, stride: int) -> torch.Tensor:
    """``unique(floor(c / stride))`` per batch, in key (lexicographic) order."""
    return _downsample(coords, stride)[0]


def build_strided_map(coords: torch.Tensor, kernel_size: int, stride: int) -> Tuple[torch.Tensor, KernelMap]:
    """Output coordinates ``unique(floor(c / stride))`` and the kernel map: output
    ``o`` reads the input at ``o * stride + offset``.

    When the kernel tiles the stride (kernel 2, stride 2) every input feeds exactly
    one output, ``floor(c / stride)``, through offset ``c mod stride``: the map
    needs no look-up.
    """
    out_coords, inverse = _downsample(coords, stride)
    offsets = kernel_offsets(kernel_size)
    if kernel_size == stride:
        rem = coords[:, 1:] - torch.div(coords[:, 1:], stride, rounding_mode="floor") * stride
        k_of = (rem[:, 0] * kernel_size + rem[:, 1]) * kernel_size + rem[:, 2]
        order = torch.argsort(k_of, stable=True)
        counts = torch.bincount(k_of, minlength=kernel_size ** 3).tolist()
        ins = list(torch.split(order, counts))
        outs = [inverse[i] for i in ins]
        return out_coords, KernelMap(ins, outs, coords.shape[0], out_coords.shape[0], int(kernel_size), int(stride), tiles_inputs=True)
    scaled = out_coords.clone()
    scaled[:, 1:] *= stride
    outs, ins = _query_all(coords, scaled, offsets)
    return out_coords, KernelMap(ins, outs, coords.shape[0], out_coords.shape[0], int(kernel_size), int(stride))


# --------------------------------------------------------------------------- MACs

class MacCounter:
    """Accumulates multiply-accumulates of sparse convolutions and linear layers."""

    def __init__(self) -> None:
        self.total = 0
        self.by_layer: List[Tuple[str, int]] = []

    def add(self, what: str, macs: int) -> None:
        self.total += int(macs)
        self.by_layer.append((what, int(macs)))


_COUNTERS: List[MacCounter] = []


@contextlib.contextmanager
def count_macs() -> Iterator[MacCounter]:
    """``with count_macs() as m: net(x)``: ``m.total`` is ``sum(pairs x C_in x C_out)``
    over the sparse convolutions plus ``N x C_in x C_out`` over point-wise linear layers."""
    counter = MacCounter()
    _COUNTERS.append(counter)
    try:
        yield counter
    finally:
        _COUNTERS.remove(counter)


def record_macs(what: str, macs: int) -> None:
    for c in _COUNTERS:
        c.add(what, macs)


# --------------------------------------------------------------------------- convolution

class _GatherMatmulScatter(torch.autograd.Function):
    """``out[o] += in[i] @ W[k]`` over a kernel map, with a hand-written backward:
    autograd through index_select would allocate a zero input-sized gradient per
    offset; here every offset accumulates into one buffer."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: "KernelMap") -> torch.Tensor:
        ctx.kmap = kmap
        ctx.save_for_backward(feats, weight)
        identity = kmap.identity_offset()
        if kmap.single_source:
            # each output row has one source: one gather of every pair's input (in offset
            # order), one matmul per offset into its slice, one gather into output order
            ins, rank, counts = kmap.single_source_layout()
            gathered = feats.index_select(0, ins)
            res = feats.new_empty(ins.numel(), weight.shape[2])
            a = 0
            for k, c in enumerate(counts):
                if c:
                    torch.mm(gathered[a : a + c], weight[k], out=res[a : a + c])
                a += c
            return res.index_select(0, rank)
        out = feats @ weight[identity] if identity is not None else feats.new_zeros(kmap.n_out, weight.shape[2])
        for k, (i, o) in enumerate(zip(kmap.in_idx, kmap.out_idx)):
            if k != identity and i.numel():
                out.index_add_(0, o, feats.index_select(0, i) @ weight[k])
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        feats, weight = ctx.saved_tensors
        kmap = ctx.kmap
        identity = kmap.identity_offset()
        grad_in = grad_w = None
        need_in, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_in:
            grad_in = grad_out @ weight[identity].t() if identity is not None else grad_out.new_zeros(feats.shape)
        if need_w:
            grad_w = torch.zeros_like(weight)
        for k, (i, o) in enumerate(zip(kmap.in_idx, kmap.out_idx)):
            if k == identity:
                if need_w:
                    grad_w[k] = feats.t() @ grad_out
                continue
            if not i.numel():
                continue
            g = grad_out.index_select(0, o)
            if need_in:
                grad_in.index_add_(0, i, g @ weight[k].t())
            if need_w:
                grad_w[k] = feats.index_select(0, i).t() @ g
        return grad_in, grad_w, None


def apply_kernel_map(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Gather -> matmul -> scatter-add over the kernel offsets.

    ``weight`` is ``[K^3, C_in, C_out]``; returns ``[kmap.n_out, C_out]``.
    """
    if weight.shape[0] != len(kmap.in_idx):
        raise ValueError(f"weight has {weight.shape[0]} kernel offsets, the kernel map {len(kmap.in_idx)}")
    if feats.shape[0] != kmap.n_in:
        raise ValueError(f"{feats.shape[0]} input rows for a kernel map over {kmap.n_in}")
    record_macs("conv", kmap.pairs() * weight.shape[1] * weight.shape[2])
    return _GatherMatmulScatter.apply(feats, weight, kmap)


def conv3d(x: SparseTensor, weight: torch.Tensor, kernel_size: int, stride: int = 1, transposed: bool = False, bias: Optional[torch.Tensor] = None) -> SparseTensor:
    """A sparse 3D convolution with torchsparse's coordinate semantics.

    * ``stride == 1``: submanifold, outputs at ``x.C`` (map cached per level and kernel);
    * ``stride > 1``: outputs at ``unique(floor(x.C / stride))`` (level ``x.s * stride``);
    * ``transposed``: from level ``x.s`` back to ``x.s // stride`` through the cached
      map of the strided convolution that produced ``x`` (the encoder's coordinates,
      in order). A transposed convolution without that map is an error.
    """
    if x.F.shape[1] != weight.shape[1]:
        raise ValueError(f"input has {x.F.shape[1]} channels, the weight expects {weight.shape[1]}")
    cache = x.cache
    if stride == 1:
        key = ("subm", x.s, int(kernel_size))
        kmap = cache.kmaps.get(key)
        if kmap is None:
            kmap = cache.kmaps[key] = build_submanifold_map(x.C, kernel_size)
        out = SparseTensor(apply_kernel_map(x.F, weight, kmap), x.C, x.s, cache)
    elif not transposed:
        key = ("down", x.s, int(kernel_size), int(stride))
        kmap = cache.kmaps.get(key)
        level = x.s * stride
        if kmap is None:
            out_coords, kmap = build_strided_map(x.C, kernel_size, stride)
            cache.kmaps[key] = kmap
            cache.coords[level] = out_coords
        out = SparseTensor(apply_kernel_map(x.F, weight, kmap), cache.coords[level], level, cache)
    else:
        if x.s % stride:
            raise ValueError(f"cannot transpose a stride-{stride} convolution from level {x.s}")
        level = x.s // stride
        key = ("down", level, int(kernel_size), int(stride))
        kmap = cache.kmaps.get(key)
        if kmap is None:
            raise ValueError(
                f"transposed convolution at level {x.s}: no cached kernel-{kernel_size} stride-{stride} map from level {level} "
                "(a transposed convolution inverts a strided one of the same input)"
            )
        out = SparseTensor(apply_kernel_map(x.F, weight, kmap.transposed()), cache.coords[level], level, cache)
    if bias is not None:
        out = out.replace_feats(out.F + bias)
    return out


class Conv3d(nn.Module):
    """torchsparse's ``spnn.Conv3d``: weight ``[K^3, C_in, C_out]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, bias: bool = False, transposed: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.transposed = int(kernel_size), int(stride), bool(transposed)
        k3 = self.kernel_size ** 3
        self.kernel = nn.Parameter(torch.empty(k3, self.in_channels, self.out_channels))
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        bound = 1.0 / math.sqrt(self.in_channels * k3)
        nn.init.uniform_(self.kernel, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return conv3d(x, self.kernel, self.kernel_size, self.stride, self.transposed, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, transposed={self.transposed}"


class BatchNorm(nn.BatchNorm1d):
    """Batch normalisation of a sparse tensor's features."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace_feats(super().forward(x.F))


class ReLU(nn.ReLU):
    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace_feats(super().forward(x.F))


def cat(tensors: Sequence[SparseTensor]) -> SparseTensor:
    """Concatenate features of sparse tensors at the same coordinates (same order)."""
    first = tensors[0]
    for t in tensors[1:]:
        if t.s != first.s or t.C.shape != first.C.shape or not torch.equal(t.C, first.C):
            raise ValueError("torchsparse.cat needs tensors at identical coordinates (same level, same order)")
    return first.replace_feats(torch.cat([t.F for t in tensors], dim=1))
