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

import heapq
from collections import OrderedDict
from dataclasses import dataclass
from typing import Tuple

import numpy as np

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


def next_use(trace: np.ndarray) -> np.ndarray:
    """For each access, the index of the next access to the same line (``len(trace)`` if none)."""
    trace = np.asarray(trace)
    n = len(trace)
    out = np.full(n, n, dtype=np.int64)
    if n < 2:
        return out
    order = np.argsort(trace, kind="stable")
    ts = trace[order]
    same = ts[1:] == ts[:-1]
    out[order[:-1][same]] = order[1:][same]
    return out


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
    whole trace) or ``lru``.
    """
    trace = np.asarray(trace, dtype=np.int64)
    if capacity < 1:
        raise ValueError(f"buffer capacity must be >= 1 line, got {capacity}")
    if policy == "lru":
        return _lru(trace, capacity)
    if policy == "belady":
        return _belady(trace, capacity, lookahead)
    raise ValueError(f"unknown replacement policy {policy!r}; choose 'belady' or 'lru'")


def _lru(trace: np.ndarray, capacity: int) -> np.ndarray:
    miss = np.zeros(len(trace), dtype=bool)
    cache: "OrderedDict[int, None]" = OrderedDict()
    move = cache.move_to_end
    for i, line in enumerate(trace.tolist()):
        if line in cache:
            move(line)
            continue
        miss[i] = True
        if len(cache) >= capacity:
            cache.popitem(last=False)
        cache[line] = None
    return miss


def _belady(trace: np.ndarray, capacity: int, lookahead: int) -> np.ndarray:
    n = len(trace)
    miss = np.zeros(n, dtype=bool)
    nxt_arr = next_use(trace)
    window = lookahead if lookahead > 0 else n + 1
    # Accesses whose next use lies beyond the window, ordered by the time that use
    # enters the window: until then the hardware cannot rank the line.
    far = np.flatnonzero(nxt_arr - np.arange(n) > window)
    enter_at = nxt_arr[far] - window
    by_time = np.argsort(enter_at, kind="stable")
    ev_time = enter_at[by_time].tolist()
    ev_line = trace[far][by_time].tolist()
    ev_nu = nxt_arr[far][by_time].tolist()
    n_events = len(ev_time)
    nxt = nxt_arr.tolist()
    lines = trace.tolist()
    nu_of: dict = {}  # cached line -> its next use
    heap: list = []  # (-next use, line) of cached lines with a visible next use; stale entries skipped lazily
    # cached lines with no visible next use, least recently used first (a line joins
    # when it is used, so appending keeps recency order)
    unseen: "OrderedDict[int, int]" = OrderedDict()
    push, pop = heapq.heappush, heapq.heappop
    ev = 0
    for i in range(n):
        while ev < n_events and ev_time[ev] <= i:
            gone = ev_line[ev]
            if unseen.get(gone) == ev_nu[ev]:
                del unseen[gone]
                push(heap, (-ev_nu[ev], gone))
            ev += 1
        line = lines[i]
        nu = nxt[i]
        if line not in nu_of:
            miss[i] = True
            if len(nu_of) >= capacity:
                if unseen:
                    # lines not used within the window cannot be ranked: evict the LRU one
                    victim, _ = unseen.popitem(last=False)
                else:
                    while True:  # the furthest visible next use (dropping stale entries)
                        neg, victim = pop(heap)
                        if nu_of.get(victim) == -neg:
                            break
                del nu_of[victim]
        nu_of[line] = nu
        if nu - i > window:
            unseen[line] = nu
        else:
            push(heap, (-nu, line))
            if len(heap) > 8 * capacity + 64:
                heap = [(-v, k) for k, v in nu_of.items() if k not in unseen]
                heapq.heapify(heap)
    return miss
