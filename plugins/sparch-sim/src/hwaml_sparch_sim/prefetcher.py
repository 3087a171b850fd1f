"""The row prefetcher: a buffer of B-row lines with lookahead (Belady-style) replacement.

With the condensed representation one row of B is needed once for every
non-zero of the matching column of A, scattered over the condensed columns, so
rows are re-read unless kept on chip. SpArch's prefetcher reads the column
indices of the upcoming A elements (which rows of B will be needed, in order),
fetches those rows ahead of the multipliers into a buffer of fixed-size lines,
and on a miss replaces the line whose next use is furthest in the future -- the
optimal (MIN) policy of Belady (1966), computable here because the future
accesses are known from A.

The hardware sees only ``lookahead`` accesses ahead. A line whose next use is
beyond the window looks "never used again"; among such lines this model evicts
the least recently used one (the information the hardware has), and only with
an unlimited window (``lookahead=0``) is it exact MIN.

:func:`simulate_buffer` returns one miss flag per access of the line trace, so
the caller can attribute DRAM traffic to merge passes; LRU is provided as the
classical policy to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from . import kernels

__all__ = ["LineLayout", "line_layout", "expand_to_lines", "next_use", "simulate_buffer", "BufferStats"]


@dataclass(frozen=True)
class LineLayout:
    """How rows of B map to buffer lines: row k owns lines ``first[k] .. first[k]+count[k]-1``."""

    first: np.ndarray  # int64, per row
    count: np.ndarray  # int64, per row
    line_elems: np.ndarray  # int64, per line: elements it holds (the last line of a row may be partial)


def line_layout(row_lengths: np.ndarray, line_elems: int) -> LineLayout:
    lengths = np.asarray(row_lengths, dtype=np.int64)
    count = -(-lengths // line_elems)  # ceil
    first = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(count[:-1], out=first[1:])
    total = int(count.sum())
    elems = np.full(total, line_elems, dtype=np.int64)
    last = first + count - 1
    has = count > 0
    elems[last[has]] = lengths[has] - (count[has] - 1) * line_elems
    return LineLayout(first, count, elems)


def expand_to_lines(rows: np.ndarray, layout: LineLayout) -> Tuple[np.ndarray, np.ndarray]:
    """Turn a trace of B-row accesses into a trace of line accesses.

    Returns ``(lines, owner)``: the line ids in access order and, for each, the
    index of the row access it came from.
    """
    rows = np.asarray(rows, dtype=np.int64)
    counts = layout.count[rows]
    owner = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    starts = np.repeat(layout.first[rows], counts)
    # position of each line inside its row: a running index that restarts per access
    offsets = np.arange(len(owner), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts + offsets, owner


def _dense_ids(trace: np.ndarray) -> Tuple[np.ndarray, int]:
    """Line ids as dense 0..n-1 (the compiled loops index arrays by line id)."""
    trace = np.asarray(trace)
    if trace.dtype not in (np.int32, np.int64):
        trace = trace.astype(np.int64)
    trace = np.ascontiguousarray(trace)
    if len(trace) == 0:
        return trace, 0
    lo, hi = int(trace.min()), int(trace.max())
    if lo >= 0 and hi < 4 * len(trace) + (1 << 16):
        return trace, hi + 1
    ids, inv = np.unique(trace, return_inverse=True)
    return inv.astype(np.int64), len(ids)


def next_use(trace: np.ndarray) -> np.ndarray:
    """For each access, the index of the next access to the same line (``len(trace)`` if none)."""
    dense, n_lines = _dense_ids(trace)
    return kernels.next_use_of(dense, n_lines)


@dataclass(frozen=True)
class BufferStats:
    accesses: int
    misses: int

    @property
    def hits(self) -> int:
        return self.accesses - self.misses


def simulate_buffer(trace: np.ndarray, capacity: int, policy: str = "belady", lookahead: int = 0) -> np.ndarray:
    """Simulate a fully associative line buffer; return a boolean miss flag per access.

    ``policy``: ``belady`` (evict the furthest next use within ``lookahead``
    accesses, LRU among lines not seen in the window; ``lookahead=0`` sees the
    whole trace) or ``lru``. Both run as compiled loops (:mod:`.kernels`).
    """
    if capacity < 1:
        raise ValueError(f"buffer capacity must be >= 1 line, got {capacity}")
    if policy not in ("belady", "lru"):
        raise ValueError(f"unknown replacement policy {policy!r}; choose 'belady' or 'lru'")
    dense, n_lines = _dense_ids(trace)
    if len(dense) == 0:
        return np.zeros(0, dtype=bool)
    if len(dense) >= 2**31 - 1:
        raise ValueError(f"a trace of {len(dense)} line accesses is too long for the buffer model (int32 indices, < 2**31)")
    if policy == "lru":
        return kernels.lru_misses(dense, n_lines, int(capacity))
    return kernels.belady_misses(dense, n_lines, int(capacity), int(lookahead))
