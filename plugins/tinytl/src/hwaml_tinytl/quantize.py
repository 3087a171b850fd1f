"""8-bit storage of frozen weights: per-layer k-means with 256 clusters (TinyTL Sec. 3.1).

Frozen weights never change during transfer, so they are stored as one byte
index per weight into a per-layer codebook of 256 floats (Deep Compression's
weight sharing, linear centroid initialisation, Lloyd iterations). Trainable
parameters stay at 32 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, Tuple

import torch
from torch import nn

__all__ = ["Codebook", "kmeans_1d", "quantize_frozen_weights", "frozen_weight_layers"]

N_CLUSTERS = 256


@dataclass
class Codebook:
    """One layer's quantised weight: ``codes`` (uint8, the weight's shape) index ``centroids``."""

    codes: torch.Tensor
    centroids: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        return self.centroids[self.codes.long()]

    def nbytes(self) -> int:
        return self.codes.numel() * self.codes.element_size() + self.centroids.numel() * self.centroids.element_size()


def kmeans_1d(values: torch.Tensor, k: int = N_CLUSTERS, iters: int = 50) -> Codebook:
    """Lloyd's k-means on the scalars of ``values`` with ``k`` centroids initialised
    linearly between the minimum and the maximum; exact in 1-D through sorting
    (each cluster is an interval between centroid midpoints)."""
    if k > 256:
        raise ValueError(f"k={k}: codes are stored in uint8, at most 256 clusters")
    flat = values.detach().reshape(-1).double()
    if flat.numel() == 0:
        raise ValueError("cannot quantise an empty tensor")
    lo, hi = float(flat.min()), float(flat.max())
    centroids = torch.linspace(lo, hi, k, dtype=torch.float64)
    for _ in range(iters):
        bounds = (centroids[1:] + centroids[:-1]) / 2
        idx = torch.searchsorted(bounds, flat)
        counts = torch.bincount(idx, minlength=k)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, flat)
        new = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        # keep centroids sorted (empty clusters keep their place)
        new, _ = new.sort()
        if torch.equal(new, centroids):
            break
        centroids = new
    bounds = (centroids[1:] + centroids[:-1]) / 2
    codes = torch.searchsorted(bounds, flat).to(torch.uint8).reshape(values.shape)
    return Codebook(codes, centroids.to(values.dtype))


def frozen_weight_layers(net: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """Convolutions and linear layers whose weight is frozen (``requires_grad`` false)."""
    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.requires_grad:
            yield name, m


def quantize_frozen_weights(net: nn.Module, k: int = N_CLUSTERS) -> Dict[str, Codebook]:
    """Quantise every frozen conv/linear weight of ``net`` in place (values replaced by
    their centroids) and return the codebooks by module name. Trainable weights are
    left at full precision."""
    books: Dict[str, Codebook] = {}
    for name, m in frozen_weight_layers(net):
        book = kmeans_1d(m.weight, k)
        with torch.no_grad():
            m.weight.copy_(book.dequantize())
        books[name] = book
    return books
