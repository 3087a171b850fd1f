"""Compiled hot loops of the simulator (numba, ``cache=True``).

* :func:`count_merge_tree` -- symbolic counting: for every merger of every merge
  pass, the number of distinct output coordinates it emits, without computing
  values and without building C or any partial matrix.
* :func:`subtree_nnz` -- the distinct coordinates of the product of a subset of
  A's elements with B (the oracle scheduler's "real size" of a merge result).
* :func:`belady_misses`, :func:`lru_misses`, :func:`next_use_of` -- the row
  buffer's replacement policies over a trace of line ids.
* :func:`prefetch_stalls` -- prefetch timeliness: cycles the multipliers wait for
  lines that a lookahead-limited prefetcher requested too late.

The counting rests on one observation. Number the partial matrices ("leaves") in
depth-first order of the whole merge schedule (every pass expanded into its
binary tree of comparator-array mergers); then every merger's leaves form a
contiguous range ``[lo, hi]`` of that order. Process the products of one output
row in increasing leaf order and remember, per output column, the leaf position
where it was last seen (``prev``). A product is a new coordinate for exactly
those mergers above its leaf whose range starts after ``prev``; since ``lo``
only decreases on the way to the root, the walk up stops at the first merger
that already holds the coordinate. Work is the number of (product, merger)
pairs in which the product is new: at most products x tree depth, usually close
to the products plus the output sizes. Memory is O(columns + mergers).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "count_merge_tree",
    "count_rows_into",
    "count_state",
    "subtree_nnz",
    "belady_misses",
    "lru_misses",
    "next_use_of",
    "prefetch_stalls",
]


@njit(cache=True, nogil=True)
def count_rows_into(first, stop, state, cnt, rows, row_seen, stamp, last, a_indptr, a_indices, leaf_of_elem, leaf_pos, leaf_bottom, b_indptr, b_indices, parent, lo, is_pass_root):
    """:func:`count_merge_tree` over rows ``first .. stop - 1``, accumulating into the counters
    (``cnt``, ``rows``) and the column state (``row_seen``, ``stamp``, ``last``) of earlier calls,
    so the sweep can be cut into blocks (a progress bar). ``state`` is a scratch buffer at least
    as long as the longest row of A."""
    keys = state
    for i in range(first, stop):
        s, e = a_indptr[i], a_indptr[i + 1]
        ln = e - s
        if ln == 0:
            continue
        for t in range(ln):
            keys[t] = leaf_pos[leaf_of_elem[s + t]]
        order = np.argsort(keys[:ln])
        for t in range(ln):
            el = s + order[t]
            leaf = leaf_of_elem[el]
            pos = leaf_pos[leaf]
            k = a_indices[el]
            bottom = leaf_bottom[leaf]
            lo_bottom = lo[bottom]
            for q in range(b_indptr[k], b_indptr[k + 1]):
                j = b_indices[q]
                if stamp[j] == i:
                    prev = np.int64(last[j])
                    last[j] = pos
                    if lo_bottom <= prev:
                        continue  # already in this leaf merger's output
                else:
                    prev = np.int64(-1)
                    stamp[j] = i
                    last[j] = pos
                v = bottom
                while v >= 0 and lo[v] > prev:
                    cnt[v] += 1
                    if is_pass_root[v] and row_seen[v] != i:
                        row_seen[v] = i
                        rows[v] += 1
                    v = parent[v]


def count_state(n_mergers: int, n_cols: int, max_row: int):
    """Fresh counters and column state for :func:`count_rows_into`."""
    return (
        np.zeros(max(1, max_row), dtype=np.int64),
        np.zeros(n_mergers, dtype=np.int64),
        np.zeros(n_mergers, dtype=np.int64),
        np.full(n_mergers, -1, dtype=np.int64),
        np.full(n_cols, -1, dtype=np.int32),  # per output column: the row where it was last seen
        np.zeros(n_cols, dtype=np.int32),  # ... and the leaf position there
    )


def count_merge_tree(a_indptr, a_indices, leaf_of_elem, leaf_pos, leaf_bottom, b_indptr, b_indices, parent, lo, is_pass_root, n_cols):
    """Distinct coordinates emitted by every merger, and non-empty rows of every pass result.

    ``leaf_bottom[l]``: the merger leaf ``l`` enters; ``parent[v]``: the merger that
    consumes ``v``'s output (-1 for the final root); ``lo[v]``: the first leaf
    position (depth-first) under ``v``.
    """
    n_rows = len(a_indptr) - 1
    max_row = int(np.diff(a_indptr).max()) if n_rows else 0
    state, cnt, rows, row_seen, stamp, last = count_state(len(parent), n_cols, max_row)
    count_rows_into(0, n_rows, state, cnt, rows, row_seen, stamp, last, a_indptr, a_indices, leaf_of_elem, leaf_pos, leaf_bottom, b_indptr, b_indices, parent, lo, is_pass_root)
    return cnt, rows


@njit(cache=True, nogil=True)
def subtree_nnz(elems, a_row, a_indices, b_indptr, b_indices, n_cols):
    """Distinct (row, col) of the products of A's elements ``elems`` (sorted, CSR order) with B."""
    stamp = np.full(n_cols, -1, dtype=np.int64)
    total = 0
    for t in range(elems.shape[0]):
        el = elems[t]
        i = a_row[el]
        k = a_indices[el]
        for q in range(b_indptr[k], b_indptr[k + 1]):
            j = b_indices[q]
            if stamp[j] != i:
                stamp[j] = i
                total += 1
    return total


@njit(cache=True, nogil=True)
def next_use_of(trace, n_lines):
    """Index of the next access to the same line (``len(trace)`` if none)."""
    n = trace.shape[0]
    out = np.full(n, n, dtype=np.int64)
    seen = np.full(n_lines, n, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        x = trace[i]
        out[i] = seen[x]
        seen[x] = i
    return out


@njit(cache=True, nogil=True)
def lru_misses(trace, n_lines, capacity):
    """Fully associative LRU buffer (doubly linked list over line ids)."""
    n = trace.shape[0]
    miss = np.zeros(n, dtype=np.bool_)
    prv = np.full(n_lines, -1, dtype=np.int64)
    nxt = np.full(n_lines, -1, dtype=np.int64)
    cached = np.zeros(n_lines, dtype=np.bool_)
    head = -1  # most recent
    tail = -1  # least recent
    size = 0
    for i in range(n):
        x = trace[i]
        if cached[x]:
            if head == x:
                continue
            # unlink
            p, q = prv[x], nxt[x]
            if p >= 0:
                nxt[p] = q
            if q >= 0:
                prv[q] = p
            if tail == x:
                tail = p
        else:
            miss[i] = True
            if size >= capacity:
                victim = tail
                tail = prv[victim]
                if tail >= 0:
                    nxt[tail] = -1
                else:
                    head = -1
                cached[victim] = False
                size -= 1
            cached[x] = True
            size += 1
        prv[x] = -1
        nxt[x] = head
        if head >= 0:
            prv[head] = x
        head = x
        if tail < 0:
            tail = x
    return miss


@njit(cache=True, nogil=True)
def _push(hk, hv, size, key, val):
    """Push onto a min-heap stored in (hk, hv)."""
    i = size
    hk[i] = key
    hv[i] = val
    while i > 0:
        p = (i - 1) >> 1
        if hk[p] <= hk[i]:
            break
        hk[p], hk[i] = hk[i], hk[p]
        hv[p], hv[i] = hv[i], hv[p]
        i = p
    return size + 1


@njit(cache=True, nogil=True)
def _pop(hk, hv, size):
    """Remove the top of the min-heap; returns the new size (top was hk[0], hv[0])."""
    size -= 1
    hk[0] = hk[size]
    hv[0] = hv[size]
    i = 0
    while True:
        l = 2 * i + 1
        if l >= size:
            break
        r = l + 1
        m = l
        if r < size and hk[r] < hk[l]:
            m = r
        if hk[i] <= hk[m]:
            break
        hk[m], hk[i] = hk[i], hk[m]
        hv[m], hv[i] = hv[i], hv[m]
        i = m
    return size


@njit(cache=True, nogil=True)
def belady_misses(trace, n_lines, capacity, window):
    """Lookahead replacement: evict the furthest next use seen within ``window``
    accesses; lines whose next use is beyond the window cannot be ranked and go
    first, least recently used first (``window <= 0``: the whole trace, exact MIN)."""
    n = trace.shape[0]
    miss = np.zeros(n, dtype=np.bool_)
    nu_arr = next_use_of(trace, n_lines).astype(np.int32)  # indices < 2**31: int32 halves the memory
    if window <= 0:
        window = n + 1
    nu_of = np.full(n_lines, -1, dtype=np.int64)  # next use of a cached line, -1 = not cached
    last_use = np.zeros(n_lines, dtype=np.int64)
    unseen = np.zeros(n_lines, dtype=np.bool_)
    # events: a far next use enters the window at time nu - window
    far = np.empty(n, dtype=np.int32)
    nf = 0
    for i in range(n):
        if nu_arr[i] - i > window:
            far[nf] = i
            nf += 1
    far = far[:nf]
    enter = nu_arr[far] - window
    order = np.argsort(enter, kind="mergesort")
    ev_time = enter[order]
    ev_acc = far[order]
    cap_heap = n + nf + 1
    vk = np.empty(cap_heap, dtype=np.int32)  # visible heap: key -next use
    vv = np.empty(cap_heap, dtype=np.int32)
    vs = 0
    uk = np.empty(n + 1, dtype=np.int32)  # unseen heap: key last use
    uv = np.empty(n + 1, dtype=np.int32)
    us = 0
    n_cached = 0
    ev = 0
    for i in range(n):
        while ev < nf and ev_time[ev] <= i:
            a = ev_acc[ev]
            line = trace[a]
            if unseen[line] and nu_of[line] == nu_arr[a]:
                unseen[line] = False
                vs = _push(vk, vv, vs, -nu_arr[a], line)
            ev += 1
        line = trace[i]
        nu = nu_arr[i]
        if nu_of[line] < 0:
            miss[i] = True
            if n_cached >= capacity:
                victim = -1
                while us > 0:
                    t, cand = uk[0], uv[0]
                    us = _pop(uk, uv, us)
                    if nu_of[cand] >= 0 and unseen[cand] and last_use[cand] == t:
                        victim = cand
                        break
                if victim < 0:
                    while True:
                        key, cand = vk[0], vv[0]
                        vs = _pop(vk, vv, vs)
                        if nu_of[cand] == -key and not unseen[cand]:
                            victim = cand
                            break
                nu_of[victim] = -1
                unseen[victim] = False
                n_cached -= 1
            n_cached += 1
        nu_of[line] = nu
        last_use[line] = i
        if nu - i > window:
            unseen[line] = True
            us = _push(uk, uv, us, i, line)
        else:
            unseen[line] = False
            vs = _push(vk, vv, vs, -nu, line)
        if vs > cap_heap - 2:  # compact stale entries (cannot normally happen)
            vs = 0
            for x in range(n_lines):
                if nu_of[x] >= 0 and not unseen[x]:
                    vs = _push(vk, vv, vs, -nu_of[x], x)
    return miss


@njit(cache=True, nogil=True)
def expand_lines(rows, first, count):
    """B-row accesses -> buffer-line accesses: (line ids, index of the row access of each)."""
    n = rows.shape[0]
    total = 0
    for t in range(n):
        total += count[rows[t]]
    lines = np.empty(total, dtype=np.int64)
    owner = np.empty(total, dtype=np.int32)
    o = 0
    for t in range(n):
        r = rows[t]
        f = first[r]
        for c in range(count[r]):
            lines[o] = f + c
            owner[o] = t
            o += 1
    return lines, owner


@njit(cache=True, nogil=True)
def line_traffic(lines, owner, rows, trace_pass, first, line_elems, miss, n_pass, elem_bytes, burst, ptr_bytes):
    """Per pass: B bytes fetched (lines rounded to bursts), pointer bytes (one access per fetched
    row), bytes read from and written to the buffer, and line accesses."""
    b_data = np.zeros(n_pass)
    b_meta = np.zeros(n_pass)
    buf_read = np.zeros(n_pass)
    buf_write = np.zeros(n_pass)
    acc = np.zeros(n_pass)
    for i in range(lines.shape[0]):
        ln = lines[i]
        t = owner[i]
        p = trace_pass[t]
        nbytes = line_elems[ln] * elem_bytes
        acc[p] += 1.0
        buf_read[p] += nbytes
        if miss[i]:
            rounded = nbytes if burst <= 1 else np.ceil(nbytes / burst) * burst
            b_data[p] += rounded
            buf_write[p] += nbytes
            if ln == first[rows[t]]:
                b_meta[p] += ptr_bytes
    return b_data, b_meta, buf_read, buf_write, acc


@njit(cache=True, nogil=True)
def prefetch_stalls(miss, lines, owner, trace_pass, line_elems, pace, n_passes, distance, latency, elem_bytes, burst, bytes_per_cycle):
    """Cycles lost waiting for late prefetches, per pass.

    The consumer works through the line accesses in order, ``pace[pass]`` cycles each.
    The line of access ``i`` is requested when the consumer is ``distance``
    accesses behind it (the lookahead), and arrives ``latency`` plus its transfer
    time later; a missed line that has not arrived when it is needed stalls the
    consumer until it does. Hits cost no wait.
    """
    n = miss.shape[0]
    stall = np.zeros(n_passes, dtype=np.float64)
    start = np.zeros(n + 1, dtype=np.float64)  # time the consumer reaches access i
    t = 0.0
    for i in range(n):
        start[i] = t
        p = trace_pass[owner[i]]
        if miss[i]:
            nbytes = line_elems[lines[i]] * elem_bytes
            if burst > 1:
                nbytes = np.ceil(nbytes / burst) * burst
            issue = start[i - distance] if i >= distance else 0.0
            arrive = issue + latency + nbytes / bytes_per_cycle
            if arrive > t:
                stall[p] += arrive - t
                t = arrive
        t += pace[p]
    return stall
