"""Partial matrices of the outer product, plain or from the condensed representation of A.

Outer-product SpGEMM writes ``C = A @ B`` as a sum of partial matrices. In the
plain form there is one per non-empty column ``k`` of A: ``A[:, k] (x) B[k, :]``.
SpArch's condensed representation shifts the non-zeros of every row of A to the
left: condensed column ``j`` holds, for each row ``i``, the ``j``-th non-zero of
that row (if any), together with its original column index. Condensed column
``j`` still yields a well-formed partial matrix -- row ``i`` of it is
``A[i, c_ij] * B[c_ij, :]`` -- but there are only ``max_i nnz(A[i, :])`` of them
instead of up to ``n`` columns, so far fewer merge passes. The price is that
one condensed column needs rows of B from many original columns, which the row
prefetcher deals with.

Both forms are described the same way: a partial-matrix ("leaf") index for each
stored element of A (CSR order), and per leaf its number of products (the sum of
``nnz(B[k, :])`` over its elements).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["PartialMatrices", "partial_matrices", "condensed_rank"]


@dataclass(frozen=True)
class PartialMatrices:
    """The leaves of the merge schedule."""

    condensed: bool
    leaf_of_elem: np.ndarray  # per stored element of A (CSR order)
    n_leaves: int
    sizes: np.ndarray  # products (partial-matrix elements) per leaf
    elems_per_leaf: np.ndarray  # A elements per leaf
    order: np.ndarray  # A element indices grouped by leaf, row-major inside a leaf
    starts: np.ndarray  # leaf p owns order[starts[p]:starts[p + 1]]

    def elements(self, leaf: int) -> np.ndarray:
        return self.order[self.starts[leaf] : self.starts[leaf + 1]]


def condensed_rank(A: sp.csr_matrix) -> np.ndarray:
    """The condensed column of every stored element: its rank inside its row."""
    lengths = np.diff(A.indptr)
    return np.arange(A.nnz, dtype=np.int64) - np.repeat(A.indptr[:-1].astype(np.int64), lengths)


def partial_matrices(A: sp.csr_matrix, b_row_lengths: np.ndarray, condensed: bool) -> PartialMatrices:
    """Leaves of the outer product of ``A`` (CSR, sorted indices) with ``B``."""
    cols = A.indices.astype(np.int64)
    if condensed:
        leaf = condensed_rank(A)
    else:
        # one leaf per non-empty column, numbered in column order
        present = np.unique(cols)
        leaf = np.searchsorted(present, cols)
    n_leaves = int(leaf.max()) + 1 if A.nnz else 0
    products = np.asarray(b_row_lengths, dtype=np.int64)[cols]
    sizes = np.bincount(leaf, weights=products, minlength=n_leaves).astype(np.int64)
    counts = np.bincount(leaf, minlength=n_leaves).astype(np.int64)
    order = np.argsort(leaf, kind="stable")
    starts = np.zeros(n_leaves + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return PartialMatrices(condensed, leaf, n_leaves, sizes, counts, order, starts)
