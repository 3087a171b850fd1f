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
only decreases on the way to the root, they form a chain from the leaf's merger
up. The chain is recorded as two path deltas (+1 at its bottom, -1 above its
top) and every merger's count is the sum of the deltas in its subtree, so a
product costs one column-state lookup and one or two counter updates; only a
column already seen in the row walks up (without writing) to find the chain's
top. Memory is O(columns + mergers).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "count_merge_tree",
    "count_rows_into",
    "count_state",
    "subtree_sums",
    "merger_order",
    "root_links",
    "subtree_nnz",
    "belady_misses",
    "lru_misses",
    "next_use_of",
    "prefetch_stalls",
]


@njit(cache=True, nogil=True)
def count_rows_into(first, stop, state, delta, rows, row_seen, tag, a_indptr, a_indices, leaf_of_elem, leaf_pos, leaf_bottom, leaf_root, root_up, b_indptr, b_indices, b_len, parent, lo):
    """:func:`count_merge_tree` over rows ``first .. stop - 1``, accumulating into the path
    deltas (``delta``), the pass roots' row counts (``rows``) and the column state (``tag``,
    ``row_seen``) of earlier calls, so the sweep can be cut into blocks (a progress bar).
    ``state`` is a scratch buffer at least as long as the longest row of A.

    A product that is new for the mergers ``bottom .. u`` (a chain up the tree) adds 1 at
    ``bottom`` and -1 at ``parent[u]``; a merger's count is the sum of the deltas in its
    subtree (:func:`subtree_sums`). A product whose column is new in the row is new up to
    the final root: one update, no walk. Non-empty rows of a pass result come from A's
    elements alone (a row is non-empty where a leaf under the pass has a product in it).
    """
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
            k = a_indices[el]
            if b_len[k] == 0:
                continue
            leaf = leaf_of_elem[el]
            pos = np.int32(leaf_pos[leaf])
            bottom = leaf_bottom[leaf]
            lo_bottom = lo[bottom]
            # rows of the pass results above this leaf (stop at the first already marked)
            v = leaf_root[leaf]
            while v >= 0 and row_seen[v] != i:
                row_seen[v] = i
                rows[v] += 1
                v = root_up[v]
            for q in range(b_indptr[k], b_indptr[k + 1]):
                j = b_indices[q]
                if tag[j, 0] == i:
                    prev = tag[j, 1]
                    tag[j, 1] = pos
                    if lo_bottom <= prev:
                        continue  # already in this leaf merger's output
                    u = bottom
                    w = parent[u]
                    while w >= 0 and lo[w] > prev:
                        u = w
                        w = parent[u]
                    delta[bottom] += 1
                    if w >= 0:
                        delta[w] -= 1
                else:
                    tag[j, 0] = i
                    tag[j, 1] = pos
                    delta[bottom] += 1  # new for every merger up to the final root


@njit(cache=True, nogil=True)
def subtree_sums(delta, parent, order):
    """Per merger, the sum of ``delta`` over its subtree; ``order`` lists children before parents."""
    out = delta.copy()
    for t in range(order.shape[0]):
        v = order[t]
        w = parent[v]
        if w >= 0:
            out[w] += out[v]
    return out


def count_state(n_mergers: int, n_cols: int, max_row: int):
    """Fresh path deltas, row counters and column state for :func:`count_rows_into`."""
    tag = np.empty((n_cols, 2), dtype=np.int32)  # per output column: the row where it was last seen, and the leaf position there
    tag[:, 0] = -1
    tag[:, 1] = 0
    return (
        np.zeros(max(1, max_row), dtype=np.int64),
        np.zeros(n_mergers, dtype=np.int64),
        np.zeros(n_mergers, dtype=np.int64),
        np.full(n_mergers, -1, dtype=np.int64),
        tag,
    )


def merger_order(parent: np.ndarray) -> np.ndarray:
    """Mergers ordered children before parents (by depth below the final root, deepest first)."""
    n = len(parent)
    depth = np.zeros(n, dtype=np.int64)
    for v in _topdown(parent):
        if parent[v] >= 0:
            depth[v] = depth[parent[v]] + 1
    return np.argsort(-depth, kind="stable")


def _topdown(parent: np.ndarray) -> np.ndarray:
    """Mergers ordered parents before children."""
    n = len(parent)
    children = [[] for _ in range(n)]
    roots = []
    for v, w in enumerate(parent.tolist()):
        (roots if w < 0 else children[w]).append(v)
    out = []
    stack = list(roots)
    while stack:
        v = stack.pop()
        out.append(v)
        stack.extend(children[v])
    return np.asarray(out, dtype=np.int64)


def root_links(parent: np.ndarray, is_pass_root: np.ndarray, leaf_bottom: np.ndarray):
    """Per leaf, the root merger of its pass; per pass root, the root of the pass that consumes it."""
    n = len(parent)
    root_of = np.full(n, -1, dtype=np.int64)
    for v in _topdown(parent).tolist():
        root_of[v] = v if is_pass_root[v] else root_of[parent[v]]
    root_up = np.full(n, -1, dtype=np.int64)
    roots = np.flatnonzero(is_pass_root)
    has = parent[roots] >= 0
    root_up[roots[has]] = root_of[parent[roots[has]]]
    return root_of[leaf_bottom], root_up


def count_merge_tree(a_indptr, a_indices, leaf_of_elem, leaf_pos, leaf_bottom, b_indptr, b_indices, parent, lo, is_pass_root, n_cols):
    """Distinct coordinates emitted by every merger, and non-empty rows of every pass result.

    ``leaf_bottom[l]``: the merger leaf ``l`` enters; ``parent[v]``: the merger that
    consumes ``v``'s output (-1 for the final root); ``lo[v]``: the first leaf
    position (depth-first) under ``v``.
    """
    n_rows = len(a_indptr) - 1
    max_row = int(np.diff(a_indptr).max()) if n_rows else 0
    state, delta, rows, row_seen, tag = count_state(len(parent), n_cols, max_row)
    leaf_root, root_up = root_links(parent, is_pass_root, leaf_bottom)
    b_len = np.diff(b_indptr)
    count_rows_into(0, n_rows, state, delta, rows, row_seen, tag, a_indptr, a_indices, leaf_of_elem, leaf_pos, leaf_bottom, leaf_root, root_up, b_indptr, b_indices, b_len, parent, lo)
    return subtree_sums(delta, parent, merger_order(parent)), rows


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
    out = np.full(n, n, dtype=np.int32)  # traces are shorter than 2**31 (int32 halves the memory)
    seen = np.full(n_lines, n, dtype=np.int32)
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
    _sift_down(hk, hv, 0, size)
    return size


@njit(cache=True, nogil=True)
def _sift_down(hk, hv, i, size):
    """Move entry ``i`` of the min-heap ``hk[:size]`` (values ``hv``) down to its place."""
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


@njit(cache=True, nogil=True)
def belady_misses(trace, n_lines, capacity, window):
    """Lookahead replacement: evict the furthest next use seen within ``window``
    accesses; lines whose next use is beyond the window cannot be ranked and go
    first, least recently used first (``window <= 0``: the whole trace, exact MIN).

    A cached line whose next use ``j`` is beyond the window becomes rankable at step
    ``j - window``; that step finds it by looking at ``trace[j]``, so no event list is
    sorted or kept. Lines never used again become rankable (furthest of all) at step
    ``n - window``.
    """
    n = trace.shape[0]
    miss = np.zeros(n, dtype=np.bool_)
    nu_arr = next_use_of(trace, n_lines)
    if window <= 0 or window > n:
        window = n + 1
    st = np.full((n_lines, 2), -1, dtype=np.int32)  # per line: next use if cached (-1: not cached), last use
    unseen = np.zeros(n_lines, dtype=np.bool_)
    # lazy deletion leaves stale entries behind; at most `capacity` entries of each heap are
    # live, so dropping the stale ones whenever a heap outgrows `limit` keeps both heaps small
    # (cache-resident) at O(1) amortised cost per access
    limit = 4 * capacity + 1024
    vk = np.empty(limit + 2, dtype=np.int32)  # visible heap: key -next use
    vv = np.empty(limit + 2, dtype=np.int32)
    vs = 0
    uk = np.empty(limit + 2, dtype=np.int32)  # unseen heap: key last use
    uv = np.empty(limit + 2, dtype=np.int32)
    us = 0
    n_cached = 0
    for i in range(n):
        j = i + window
        if j < n:
            x = trace[j]
            if unseen[x] and st[x, 0] == j:  # x's next use enters the window now
                unseen[x] = False
                vs = _push(vk, vv, vs, -j, x)
                if vs > limit:
                    vs = _compact(vk, vv, vs, st, unseen, True)
        elif j == n:  # lines never used again enter the window (as the furthest uses)
            for t in range(us):
                x = uv[t]
                if unseen[x] and st[x, 0] == n and st[x, 1] == uk[t]:
                    unseen[x] = False
                    vs = _push(vk, vv, vs, -n, x)
                    if vs > limit:
                        vs = _compact(vk, vv, vs, st, unseen, True)
            us = _compact(uk, uv, us, st, unseen, False)
        line = trace[i]
        nu = nu_arr[i]
        if st[line, 0] < 0:
            miss[i] = True
            if n_cached >= capacity:
                victim = -1
                while us > 0:
                    t, cand = uk[0], uv[0]
                    us = _pop(uk, uv, us)
                    if st[cand, 0] >= 0 and unseen[cand] and st[cand, 1] == t:
                        victim = cand
                        break
                if victim < 0:
                    while True:
                        key, cand = vk[0], vv[0]
                        vs = _pop(vk, vv, vs)
                        if st[cand, 0] == -key and not unseen[cand]:
                            victim = cand
                            break
                st[victim, 0] = -1
                unseen[victim] = False
                n_cached -= 1
            n_cached += 1
        st[line, 0] = nu
        st[line, 1] = i
        if nu - i > window:
            unseen[line] = True
            us = _push(uk, uv, us, i, line)
            if us > limit:
                us = _compact(uk, uv, us, st, unseen, False)
        else:
            unseen[line] = False
            vs = _push(vk, vv, vs, -nu, line)
            if vs > limit:
                vs = _compact(vk, vv, vs, st, unseen, True)
    return miss


@njit(cache=True, nogil=True)
def _compact(hk, hv, size, st, unseen, visible):
    """Drop the stale entries of a lazy-deletion heap and re-heapify the live ones in place."""
    m = 0
    for t in range(size):
        key, x = hk[t], hv[t]
        if visible:
            live = st[x, 0] == -key and not unseen[x]
        else:
            live = st[x, 0] >= 0 and unseen[x] and st[x, 1] == key
        if live:
            hk[m] = key
            hv[m] = x
            m += 1
    for start in range(m // 2 - 1, -1, -1):  # heapify
        _sift_down(hk, hv, start, m)
    return m


@njit(cache=True, nogil=True)
def expand_lines(rows, first, count):
    """B-row accesses -> buffer-line accesses: (line ids, index of the row access of each)."""
    n = rows.shape[0]
    total = 0
    for t in range(n):
        total += count[rows[t]]
    lines = np.empty(total, dtype=np.int32)  # line ids < nnz(B) < 2**31
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
