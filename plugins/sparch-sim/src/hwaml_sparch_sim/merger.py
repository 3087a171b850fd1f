"""Element-level model of SpArch's comparator-array merger and merge tree.

A partial matrix streams through the merger as (key, value) pairs sorted by
``key = row * n_cols + col``. One merger holds a window of the next ``w``
elements of each of its two inputs; a ``w x w`` comparator array compares every
pair at once, which gives every element its position in the merged order
(``i + #{b_j < a_i}`` and ``j + #{a_i <= b_j}``), so the ``w`` smallest of the
two windows -- which are the ``w`` smallest remaining overall -- leave in one
cycle. An adder stage behind it accumulates equal keys ("on-chip merging"), so a
coordinate produced by several partial matrices leaves the tree once.

A merge tree of ``ways`` leaves is a binary tree of such mergers; in SpArch the
root is the widest (16 x 16) and widths halve towards the leaves. This module
runs that tree element by element. It is the reference the vectorised simulator
is checked against (same merged stream, cycle count close to
``elements / width``); the simulator itself merges with scipy.sparse, which
produces the identical sorted, accumulated result far faster.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

__all__ = ["comparator_array_merge", "merge_tree", "Stream"]

#: a sorted stream of unique keys with their values
Stream = Tuple[np.ndarray, np.ndarray]


def comparator_array_merge(a: Stream, b: Stream, width: int) -> Tuple[Stream, int]:
    """Merge two sorted key streams with a ``width x width`` comparator array.

    Returns the merged stream (equal keys accumulated) and the number of cycles
    (one per window step, each emitting up to ``width`` elements).
    """
    if width < 1:
        raise ValueError(f"comparator array width must be >= 1, got {width}")
    ka, va = np.asarray(a[0], dtype=np.int64), np.asarray(a[1])
    kb, vb = np.asarray(b[0], dtype=np.int64), np.asarray(b[1])
    ia = ib = 0
    out_k: List[np.ndarray] = []
    out_v: List[np.ndarray] = []
    cycles = 0
    while ia < len(ka) or ib < len(kb):
        wa, wb = ka[ia : ia + width], kb[ib : ib + width]
        xa, xb = va[ia : ia + width], vb[ib : ib + width]
        # the comparator array: less[i, j] = a_i < b_j (ties go to a first)
        less = wa[:, None] <= wb[None, :]
        pos_a = np.arange(len(wa)) + (~less).sum(axis=1)  # b's strictly smaller than a_i
        pos_b = np.arange(len(wb)) + less.sum(axis=0)  # a's not larger than b_j
        # an exhausted side imposes no bound; otherwise only elements provably
        # smaller than everything unseen may leave
        bound_a = ka[ia + width] if ia + width < len(ka) else np.iinfo(np.int64).max
        bound_b = kb[ib + width] if ib + width < len(kb) else np.iinfo(np.int64).max
        bound = min(bound_a, bound_b)
        merged_k = np.empty(len(wa) + len(wb), dtype=np.int64)
        merged_v = np.empty(len(wa) + len(wb), dtype=np.result_type(xa, xb))
        merged_k[pos_a], merged_v[pos_a] = wa, xa
        merged_k[pos_b], merged_v[pos_b] = wb, xb
        emit = min(width, int(np.searchsorted(merged_k, bound, side="left")))
        if emit == 0:  # cannot happen with sorted inputs; guard against an endless loop
            raise ValueError("merger inputs are not sorted")
        taken_a = int((pos_a < emit).sum())
        out_k.append(merged_k[:emit])
        out_v.append(merged_v[:emit])
        ia += taken_a
        ib += emit - taken_a
        cycles += 1
    if not out_k:
        return (np.zeros(0, dtype=np.int64), np.zeros(0)), 0
    keys = np.concatenate(out_k)
    vals = np.concatenate(out_v)
    return _accumulate(keys, vals), cycles


def _accumulate(keys: np.ndarray, vals: np.ndarray) -> Stream:
    """The adder stage: sum runs of equal keys in a sorted stream."""
    if len(keys) == 0:
        return keys, vals
    start = np.concatenate([[True], keys[1:] != keys[:-1]])
    idx = np.flatnonzero(start)
    return keys[idx], np.add.reduceat(vals, idx)


def merge_tree(streams: Sequence[Stream], ways: int, root_width: int) -> Tuple[Stream, int]:
    """Merge up to ``ways`` sorted streams through a binary tree of comparator arrays.

    Level ``l`` below the root uses arrays of width ``max(1, root_width >> l)``.
    The levels run as a pipeline, so the tree's cycle count is that of its
    slowest merger; the result is the fully merged, accumulated stream.
    """
    if len(streams) > ways:
        raise ValueError(f"{len(streams)} streams exceed the {ways}-way merge tree")
    levels = max(1, int(np.ceil(np.log2(max(2, ways)))))
    current = [(_accumulate(*s) if len(s[0]) else s) for s in streams]
    # pad to the number of leaves with empty streams
    empty: Stream = (np.zeros(0, dtype=np.int64), np.zeros(0))
    current = current + [empty] * ((1 << levels) - len(current))
    slowest = 0
    for depth in range(levels - 1, -1, -1):
        width = max(1, root_width >> depth)
        nxt = []
        for i in range(0, len(current), 2):
            merged, cycles = comparator_array_merge(current[i], current[i + 1], width)
            slowest = max(slowest, cycles)
            nxt.append(merged)
        current = nxt
    return current[0], slowest
