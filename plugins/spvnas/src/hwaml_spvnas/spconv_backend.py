"""spconv 2.x (CPU build) as a second sparse backend, behind the same interface.

spconv stores a convolution weight as ``[C_out, K, K, K, C_in]``; this module's
kernels are ``[K^3, C_in, C_out]`` with the offset order of
:func:`hwaml_spvnas.sparse.kernel_offsets` (x slowest), and both compute the
correlation ``out[p] = sum_k in[p + offset_k] @ W[k]``, so one permutation moves a
weight between them. Its kernel maps are read from spconv's indice pairs (a
submanifold map there stores half the offsets and mirrors the rest; the centre
is the identity) so that the tests can compare the maps themselves, not only
the outputs.

Imported only where used: ``import spconv`` takes seconds and its CPU kernels
are built by cumm on first use.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from .sparse import KernelMap, SparseTensor, hash_coords

__all__ = ["spconv_available", "to_spconv_weight", "SpconvRunner", "spconv_kernel_map"]


def spconv_available() -> bool:
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def _spconv():
    import spconv.pytorch as spc

    return spc


def to_spconv_weight(weight: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``[K^3, C_in, C_out]`` -> spconv's ``[C_out, K, K, K, C_in]``."""
    k = int(kernel_size)
    cin, cout = weight.shape[1], weight.shape[2]
    return weight.reshape(k, k, k, cin, cout).permute(4, 0, 1, 2, 3).contiguous()


def _spatial_shape(coords: torch.Tensor, margin: int = 2) -> Tuple[torch.Tensor, list]:
    """spconv wants non-negative indices inside a spatial shape: shift by the minimum,
    rounded down to a multiple of 16 so that floor(c / 2^k) is unchanged by the shift."""
    lo = coords[:, 1:].min(0).values
    shift = torch.div(lo, 16, rounding_mode="floor") * 16
    shifted = coords.clone()
    shifted[:, 1:] -= shift
    hi = shifted[:, 1:].max(0).values
    return shift, [int(h) + margin for h in hi]


class SpconvRunner:
    """Runs the same layer sequence as this package's ``conv3d`` on spconv.

    ``start(x)`` converts a :class:`SparseTensor`; ``conv(t, weight, K, stride,
    transposed, key)`` applies one convolution with a weight in this package's
    layout (``key`` pairs a strided convolution with its transposed inverse, as
    spconv's ``indice_key`` does); ``to_sparse(t)`` converts back.
    """

    def __init__(self) -> None:
        self.spc = _spconv()
        self._shift: Optional[torch.Tensor] = None
        self._layers: Dict[Tuple, torch.nn.Module] = {}

    def start(self, x: SparseTensor):
        shift, shape = _spatial_shape(x.C)
        self._shift = shift
        idx = x.C.clone()
        idx[:, 1:] -= shift
        batch = int(x.C[:, 0].max()) + 1 if x.C.numel() else 1
        return self.spc.SparseConvTensor(x.F, idx.int(), shape, batch)

    def _layer(self, cin: int, cout: int, k: int, stride: int, transposed: bool, key: str):
        spc = self.spc
        sig = (cin, cout, k, stride, transposed, key)
        layer = self._layers.get(sig)
        if layer is None:
            if stride == 1:
                layer = spc.SubMConv3d(cin, cout, k, bias=False, indice_key=key)
            elif transposed:
                layer = spc.SparseInverseConv3d(cin, cout, k, bias=False, indice_key=key)
            else:
                layer = spc.SparseConv3d(cin, cout, k, stride, bias=False, indice_key=key)
            self._layers[sig] = layer
        return layer

    def conv(self, t, weight: torch.Tensor, kernel_size: int, stride: int = 1, transposed: bool = False, key: str = "subm"):
        """One spconv convolution with ``weight`` in this package's layout, differentiable in it."""
        layer = self._layer(weight.shape[1], weight.shape[2], kernel_size, stride, transposed, key)
        saved = layer.weight
        del layer.weight
        try:
            # a plain tensor attribute: spconv's forward reads it, the graph runs through `weight`
            layer.weight = to_spconv_weight(weight, kernel_size)
            return layer(t)
        finally:
            del layer.weight
            layer.weight = saved

    def to_sparse(self, t, stride: int) -> SparseTensor:
        idx = t.indices.long().clone()
        idx[:, 1:] += torch.div(self._shift, stride, rounding_mode="floor")
        return SparseTensor(t.features, idx, stride)


def spconv_kernel_map(coords: torch.Tensor, kernel_size: int, stride: int = 1) -> Tuple[torch.Tensor, KernelMap]:
    """spconv's kernel map of a (submanifold or strided) convolution on ``coords``,
    as output coordinates and a :class:`KernelMap` in this package's offset order."""
    spc = _spconv()
    x = SparseTensor(torch.zeros(coords.shape[0], 1), coords)
    runner = SpconvRunner()
    t = runner.start(x)
    w = torch.zeros(kernel_size ** 3, 1, 1)
    out = runner.conv(t, w, kernel_size, stride, False, key="k")
    data = out.indice_dict["k"]
    pairs, num = data.indice_pairs.long(), data.indice_pair_num.long()
    k3 = kernel_size ** 3
    ins, outs = [], []
    for k in range(k3):
        n = int(num[k])
        ins.append(pairs[0, k, :n].clone())
        outs.append(pairs[1, k, :n].clone())
    if stride == 1 and int(num.sum()) < coords.shape[0] * k3:
        # spconv's submanifold map: offsets past the centre are mirrors of those before it
        centre = k3 // 2
        n = coords.shape[0]
        if ins[centre].numel() == 0:
            ins[centre] = torch.arange(n)
            outs[centre] = torch.arange(n)
        for k in range(centre + 1, k3):
            if ins[k].numel() == 0:
                ins[k], outs[k] = outs[k3 - 1 - k].clone(), ins[k3 - 1 - k].clone()
    out_coords = runner.to_sparse(out, stride).C
    del spc
    return out_coords, KernelMap(ins, outs, coords.shape[0], out_coords.shape[0], kernel_size, stride)


def same_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The permutation ``p`` with ``a[p] == b`` (coordinate sets compared by key)."""
    ka, kb = hash_coords(a), hash_coords(b)
    sa, oa = torch.sort(ka)
    pos = torch.searchsorted(sa, kb).clamp(max=sa.numel() - 1)
    if not torch.equal(sa[pos], kb):
        raise ValueError("the two coordinate sets differ")
    return oa[pos]
