"""The SpArch dataflow: pipelined multiply-and-merge over a scheduled merge tree.

One simulation of ``C = A @ B`` goes through three stages:

1. **Schedule.** A is split into partial matrices (plain columns or condensed
   columns, :mod:`.condensed`). The scheduler (:mod:`.scheduler`, the Huffman
   tree or the in-order baseline) groups them into passes of at most
   ``merge_ways``. The Huffman scheduler works from what the hardware knows
   before merging: each partial matrix's number of products (from A's column
   indices and B's row lengths) and, for a merged result, the sum of its inputs
   (``huffman_sizes: estimate``); ``oracle`` gives it the exact merged sizes, as
   an ablation.
2. **Symbolic counting.** Every pass is expanded into its binary tree of
   comparator-array mergers (port ``q`` of a pass feeds leaf merger ``q // 2``;
   widths halve from the root down). One compiled sweep over the rows of A
   (:func:`.kernels.count_merge_tree`) counts the distinct coordinates every
   merger emits -- pass outputs, spilled sizes and nnz(C) included -- without
   values, without building C and in memory linear in the inputs. The numeric
   product (``numeric=True``) recomputes every pass with scipy.sparse as a check
   of the counts and returns C.
3. **Traffic and time.** B-row accesses (condensed form) go through the row
   buffer (:mod:`.prefetcher`). DRAM bytes follow the storage formats (CSC/CSR
   pointers, condensed A's extra index, row ids of spilled partial matrices,
   headers) rounded up to ``burst_bytes`` per contiguous transfer. A pass takes
   the longest of its merge time (the slowest merger: input elements / its
   width), its multiplier time and its DRAM time, plus the tree fill, one DRAM
   latency and the stalls of prefetches that arrive late
   (:func:`.kernels.prefetch_stalls`); the pass is labelled by the bound it hit.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from . import kernels
from .arch import SparchConfig, area_breakdown
from .condensed import PartialMatrices, partial_matrices
from .matrices import Operands
from .prefetcher import line_layout, simulate_buffer
from .scheduler import MergeNode, run_schedule

log = logging.getLogger(__name__)

__all__ = ["SimResult", "SparchSimulator", "simulate_sparch", "DRAM_CATEGORIES", "BOUNDS", "symbolic_nnz"]

#: DRAM traffic categories, in bytes ("metadata": pointers, row ids of partial results, headers)
DRAM_CATEGORIES = ("a_read", "b_read", "partial_write", "partial_read", "c_write", "metadata")
#: a counting sweep over more products than this is cut into blocks behind a progress bar
PROGRESS_PRODUCTS = 20_000_000
#: what limited a pass
BOUNDS = ("merge", "multiply", "memory", "latency")


@dataclass
class SimResult:
    """What one simulated SpGEMM cost (SpArch or the OuterSPACE model)."""

    name: str
    model: str
    dram: Dict[str, float]
    cycles: float
    energy_pj: Dict[str, float]
    multiplies: int
    nnz_c: int
    clock_ghz: float
    product: Optional[sp.csr_matrix] = None
    stats: Dict[str, Any] = field(default_factory=dict)

    @property
    def dram_bytes(self) -> float:
        return float(sum(self.dram.values()))

    @property
    def energy_uj(self) -> float:
        return float(sum(self.energy_pj.values())) * 1e-6

    @property
    def runtime_ms(self) -> float:
        return self.cycles / (self.clock_ghz * 1e9) * 1e3

    def summary(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "dram_bytes": self.dram_bytes,
            "dram": dict(self.dram),
            "cycles": self.cycles,
            "runtime_ms": self.runtime_ms,
            "energy_uj": self.energy_uj,
            "energy_pj": dict(self.energy_pj),
            "multiplies": self.multiplies,
            "nnz_c": self.nnz_c,
            **{k: v for k, v in self.stats.items() if isinstance(v, (int, float, str, bool, dict))},
        }


def _bursts(nbytes: np.ndarray | float, burst: int) -> np.ndarray | float:
    """Bytes moved when ``nbytes`` contiguous bytes are read in bursts of ``burst``."""
    if burst <= 1:
        return nbytes
    return np.ceil(np.asarray(nbytes, dtype=np.float64) / burst) * burst


@dataclass
class _Schedule:
    """Stages 1-2: the schedule and its symbolic counts; reused across buffer, bandwidth,
    width, latency and energy parameters (they do not change the merge tree)."""

    passes: List[MergeNode]
    partials: PartialMatrices
    ways: int
    # mergers (all passes): level in its pass's tree (root 0), pass, input and output elements
    m_level: np.ndarray
    m_pass: np.ndarray
    m_in: np.ndarray
    m_out: np.ndarray
    pass_root: np.ndarray  # merger id of every pass's root
    pass_out: np.ndarray  # distinct coordinates of every pass result
    pass_rows: np.ndarray  # non-empty rows of every pass result
    pass_mults: np.ndarray  # products generated in each pass
    pass_a_elems: np.ndarray  # A elements read by each pass
    pass_leaves: np.ndarray  # partial matrices fed by each pass
    pass_a_bytes_leaf: List[np.ndarray]  # per pass, A elements of each leaf (burst rounding per leaf stream)
    trace_rows: np.ndarray  # B-row access trace (condensed: per element; plain: per leaf)
    trace_pass: np.ndarray  # pass of each access
    nnz_c: int
    product: Optional[sp.csr_matrix]
    seconds: float
    # buffer simulations of this schedule's trace, by (line_elems, buffer_lines, policy, lookahead):
    # design points that differ only in widths, bandwidth, latency or energies reuse them
    buffer_runs: Dict[Tuple[Any, ...], Tuple[Any, ...]] = field(default_factory=dict)


class SparchSimulator:
    """Simulates SpArch on operand pairs; remembers schedules between design points.

    The schedule stage depends only on the matrix and on (condensed, huffman,
    huffman_sizes, merge_ways); buffer sizes, bandwidth, widths, latency and
    energies reuse it, which makes design-space search over them cheap.
    ``numeric=True`` also computes C (scipy.sparse, per pass) and checks every
    pass's symbolic count against it.
    """

    def __init__(self, max_cached: int = 16, numeric: bool = False):
        self._cache: Dict[Tuple[Any, ...], _Schedule] = {}
        self.max_cached = max_cached
        self.numeric = numeric

    def schedule(self, ops: Operands, cfg: SparchConfig) -> _Schedule:
        key = (id(ops.A), id(ops.B), cfg.condensed, cfg.huffman, cfg.huffman_sizes if cfg.huffman else "-", cfg.merge_ways, self.numeric)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if len(self._cache) >= self.max_cached:
            self._cache.pop(next(iter(self._cache)))
        sched = _build_schedule(ops, cfg, self.numeric)
        self._cache[key] = sched
        return sched

    def run(self, ops: Operands, cfg: SparchConfig) -> SimResult:
        t0 = time.perf_counter()
        sched = self.schedule(ops, cfg)
        result = _account(ops, cfg, sched)
        result.stats["sim_seconds"] = time.perf_counter() - t0
        result.stats["schedule_seconds"] = sched.seconds
        return result


def simulate_sparch(ops: Operands, cfg: Optional[SparchConfig] = None, numeric: bool = False) -> SimResult:
    """Simulate one SpGEMM on SpArch (a fresh simulator, no schedule reuse)."""
    return SparchSimulator(numeric=numeric).run(ops, cfg or SparchConfig())


def _row_of_elem(A: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(A.shape[0], dtype=np.int64), np.diff(A.indptr))


def symbolic_nnz(A: sp.csr_matrix, B: sp.csr_matrix) -> int:
    """nnz of the structure of ``A @ B`` (no values, no product built)."""
    elems = np.arange(A.nnz, dtype=np.int64)
    return int(kernels.subtree_nnz(elems, _row_of_elem(A), A.indices.astype(np.int64), B.indptr.astype(np.int64), B.indices.astype(np.int64), B.shape[1]))


# ---------------------------------------------------------------------------
# stage 1-2: schedule and symbolic counting
# ---------------------------------------------------------------------------


def _build_schedule(ops: Operands, cfg: SparchConfig, numeric: bool) -> _Schedule:
    t0 = time.perf_counter()
    A, B = ops.A, ops.B
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"{ops.name}: A is {A.shape[0]} x {A.shape[1]} but B has {B.shape[0]} rows")
    b_indptr = B.indptr.astype(np.int64, copy=False)
    b_indices = B.indices  # int32 (scipy) or int64: the kernels take either
    a_indptr = A.indptr.astype(np.int64, copy=False)
    a_indices = A.indices.astype(np.int64)
    b_len = np.diff(b_indptr)
    partials = partial_matrices(A, b_len, cfg.condensed)
    ways = cfg.merge_ways
    levels = cfg.tree_levels
    rows_of = None

    if cfg.huffman and cfg.huffman_sizes == "oracle":
        rows_of = _row_of_elem(A)
        subtree: Dict[int, np.ndarray] = {}

        def merge(node: MergeNode) -> int:
            parts = [partials.elements(p) for p in node.leaves] + [subtree.pop(c) for c in node.spilled_children]
            elems = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            if not node.is_root:
                subtree[node.index] = elems
            return int(kernels.subtree_nnz(elems, rows_of, a_indices, b_indptr, b_indices, B.shape[1]))

    else:

        def merge(node: MergeNode) -> int:
            return node.input_nnz  # the estimate: no accumulation known before merging

    policy = "huffman" if cfg.huffman else "in_order"
    passes = run_schedule(policy, partials.sizes.tolist(), ways, merge)
    n_pass = len(passes)
    if n_pass == 0:
        z = np.zeros(0, dtype=np.int64)
        return _Schedule(passes, partials, ways, z, z, z, z, z, z, z, z, z, z, [], z, z, 0, sp.csr_matrix((A.shape[0], B.shape[1])) if numeric else None, time.perf_counter() - t0)

    # -- expand every pass into its tree of mergers ------------------------------------
    m_parent: List[np.ndarray] = []
    m_level: List[np.ndarray] = []
    m_pass: List[np.ndarray] = []
    base_of_pass = np.zeros(n_pass, dtype=np.int64)  # first merger id of the pass
    offsets_of_pass: List[np.ndarray] = []  # per pass: merger id offset per level
    next_id = 0
    for p, node in enumerate(passes):
        c = len(node.children)
        counts = [max(1, -(-c // (1 << (levels - l)))) for l in range(levels)]
        offs = np.zeros(levels, dtype=np.int64)
        base_of_pass[p] = next_id
        for l in range(levels):
            offs[l] = next_id
            ids_parent = np.full(counts[l], -1, dtype=np.int64) if l == 0 else offs[l - 1] + (np.arange(counts[l]) >> 1)
            m_parent.append(ids_parent)
            m_level.append(np.full(counts[l], l, dtype=np.int64))
            m_pass.append(np.full(counts[l], p, dtype=np.int64))
            next_id += counts[l]
        offsets_of_pass.append(offs)
    parent = np.concatenate(m_parent)
    level = np.concatenate(m_level)
    mpass = np.concatenate(m_pass)
    n_m = len(parent)
    pass_root = base_of_pass.copy()
    n_leaves = partials.n_leaves
    leaf_bottom = np.full(n_leaves, -1, dtype=np.int64)
    pass_of_leaf = np.zeros(n_leaves, dtype=np.int64)
    port_of_leaf = np.zeros(n_leaves, dtype=np.int64)
    for p, node in enumerate(passes):
        bottom0 = offsets_of_pass[p][levels - 1]
        for q, (kind, idx) in enumerate(node.children):
            if kind == "leaf":
                leaf_bottom[idx] = bottom0 + (q >> 1)
                pass_of_leaf[idx] = p
                port_of_leaf[idx] = q
            else:
                parent[pass_root[idx]] = bottom0 + (q >> 1)
    # depth-first leaf positions from the root pass, ports in order
    leaf_pos = np.zeros(n_leaves, dtype=np.int64)
    counter = 0
    stack: List[Tuple[int, int]] = [(n_pass - 1, 0)]
    while stack:
        p, q = stack.pop()
        children = passes[p].children
        while q < len(children):
            kind, idx = children[q]
            q += 1
            if kind == "leaf":
                leaf_pos[idx] = counter
                counter += 1
            else:
                stack.append((p, q))
                stack.append((idx, 0))
                break
    big = np.iinfo(np.int64).max
    lo = np.full(n_m, big, dtype=np.int64)
    np.minimum.at(lo, leaf_bottom, leaf_pos)
    # children before parents: passes in execution order, levels bottom-up
    order = np.lexsort((-level, mpass))
    for v in order.tolist():
        u = parent[v]
        if u >= 0 and lo[v] < lo[u]:
            lo[u] = lo[v]
    is_root = np.zeros(n_m, dtype=np.bool_)
    is_root[pass_root] = True
    cnt, rows_ne = _count_with_progress(ops.name, a_indptr, a_indices, partials.leaf_of_elem.astype(np.int64), leaf_pos, leaf_bottom, b_indptr, b_indices, parent, lo, is_root, B.shape[1], int(partials.sizes.sum()), order)
    m_in = np.zeros(n_m, dtype=np.int64)
    has_parent = parent >= 0
    np.add.at(m_in, parent[has_parent], cnt[has_parent])
    np.add.at(m_in, leaf_bottom, partials.sizes)
    pass_out = cnt[pass_root]
    pass_rows = rows_ne[pass_root]
    # per-pass products and A elements; the true sizes replace the estimates
    pass_mults = np.bincount(pass_of_leaf, weights=partials.sizes, minlength=n_pass).astype(np.int64)
    pass_a = np.bincount(pass_of_leaf, weights=partials.elems_per_leaf, minlength=n_pass).astype(np.int64)
    pass_leaves = np.bincount(pass_of_leaf, minlength=n_pass).astype(np.int64)
    for p, node in enumerate(passes):
        node.output_nnz = int(pass_out[p])
        node.input_nnz = int(pass_mults[p] + sum(int(pass_out[c]) for c in node.spilled_children))
    pass_a_leaf = [partials.elems_per_leaf[node.leaves] for node in passes]

    # -- B-row access trace --------------------------------------------------------------
    if partials.condensed:
        if rows_of is None:
            rows_of = _row_of_elem(A)
        leaf = partials.leaf_of_elem
        key = (pass_of_leaf[leaf] * A.shape[0] + rows_of) * ways + port_of_leaf[leaf]
        order = np.argsort(key, kind="stable")
        trace_rows = a_indices[order]
        trace_pass = pass_of_leaf[leaf[order]]
    else:
        # plain form: leaf l is column present[l] of A; each leaf reads its B row once
        present = np.unique(a_indices)
        leaf_order = np.lexsort((port_of_leaf, pass_of_leaf))
        trace_rows = present[leaf_order]
        trace_pass = pass_of_leaf[leaf_order]
    nnz_c = int(pass_out[-1])
    product = _numeric_check(ops, partials, passes, pass_out) if numeric else None
    seconds = time.perf_counter() - t0
    log.debug("%s: %d leaves, %d passes, %d mergers, schedule %.2fs", ops.name, n_leaves, n_pass, n_m, seconds)
    return _Schedule(
        passes, partials, ways, level, mpass, m_in, cnt, pass_root, pass_out, pass_rows, pass_mults, pass_a, pass_leaves, pass_a_leaf, trace_rows, trace_pass, nnz_c, product, seconds
    )


def _count_with_progress(name, a_indptr, a_indices, leaf_of_elem, leaf_pos, leaf_bottom, b_indptr, b_indices, parent, lo, is_root, n_cols, products, order):
    """The counting sweep (single-threaded, like scipy's product it is compared with), cut into
    blocks of rows with about equal products behind a progress bar when it is long."""
    n_rows = len(a_indptr) - 1
    max_row = int(np.diff(a_indptr).max()) if n_rows else 0
    state, delta, rows, row_seen, tag = kernels.count_state(len(parent), n_cols, max_row)
    leaf_root, root_up = kernels.root_links(parent, is_root, leaf_bottom)
    b_len = np.diff(b_indptr)
    blocks = 1 if products < PROGRESS_PRODUCTS else 50
    if blocks == 1:
        bounds = [0, n_rows]
    else:
        cum = np.concatenate([[0.0], np.cumsum(b_len[a_indices], dtype=np.float64)])
        per_row = cum[a_indptr]  # products before each row
        bounds = np.unique(np.searchsorted(per_row, np.linspace(0, per_row[-1], blocks + 1))).tolist()
        bounds[0], bounds[-1] = 0, n_rows
        bounds = sorted(set(bounds))
    from hwaml.progress import progress

    for r0, r1 in progress(list(zip(bounds[:-1], bounds[1:])), desc=f"{name}: counting", unit="block"):
        kernels.count_rows_into(r0, r1, state, delta, rows, row_seen, tag, a_indptr, a_indices, leaf_of_elem, leaf_pos, leaf_bottom, leaf_root, root_up, b_indptr, b_indices, b_len, parent, lo)
    cnt = kernels.subtree_sums(delta, parent, order)
    return cnt, rows


def _numeric_check(ops: Operands, partials: PartialMatrices, passes: List[MergeNode], pass_out: np.ndarray) -> sp.csr_matrix:
    """Compute every pass with scipy.sparse (values) and check the symbolic counts against
    the structure of the same pass computed on |A| and |B| (no cancellation)."""
    A, B = ops.A, ops.B
    shape = (A.shape[0], B.shape[1])
    rows_of, cols_of = _row_of_elem(A), A.indices.astype(np.int64)
    absB = abs(B)
    results: Dict[int, Tuple[sp.csr_matrix, sp.csr_matrix]] = {}
    product = None
    for p, node in enumerate(passes):
        vals, struct = [], []
        if node.leaves:
            elems = np.concatenate([partials.elements(l) for l in node.leaves])
            S = sp.csr_matrix((A.data[elems], (rows_of[elems], cols_of[elems])), shape=A.shape)
            vals.append(sp.csr_matrix(S @ B))
            struct.append(sp.csr_matrix(abs(S) @ absB))
        for c in node.spilled_children:
            v, s = results.pop(c)
            vals.append(v)
            struct.append(s)
        v = _sum_sparse(vals, shape)
        s = _sum_sparse(struct, shape)
        s.eliminate_zeros()
        if s.nnz != pass_out[p]:
            raise RuntimeError(f"{ops.name}: pass {p}: symbolic count {pass_out[p]} != numeric structure {s.nnz}")
        if node.is_root:
            product = v
        else:
            results[node.index] = (v, s)
    return product


def _sum_sparse(parts: List[sp.csr_matrix], shape: Tuple[int, int]) -> sp.csr_matrix:
    if not parts:
        return sp.csr_matrix(shape)
    ordered = sorted(parts, key=lambda p: p.nnz)
    out = ordered[0]
    for part in ordered[1:]:
        out = out + part
    out = sp.csr_matrix(out)
    out.sort_indices()
    return out


# ---------------------------------------------------------------------------
# stage 3: B traffic, formats, time, energy
# ---------------------------------------------------------------------------


def _b_traffic(ops: Operands, cfg: SparchConfig, sched: _Schedule) -> Dict[str, Any]:
    """Per pass: B data and pointer bytes fetched, buffer bytes read, prefetch trace details."""
    eb, burst = cfg.element_bytes, cfg.burst_bytes
    b_len = np.diff(ops.B.indptr).astype(np.int64)
    n = len(sched.passes)
    rows = sched.trace_rows
    row_data = _bursts(b_len[rows] * float(eb), burst) if (not sched.partials.condensed or not (cfg.prefetcher or cfg.buffer_without_prefetcher == "lru")) else None
    out: Dict[str, Any] = {"buffer_read": np.zeros(n), "line_accesses": 0, "line_misses": 0, "stall": np.zeros(n)}
    if not sched.partials.condensed:
        # plain form: each leaf streams its B row once; leaves of an in-order pass are
        # consecutive columns (pointers stream), Huffman passes pick columns anywhere
        ptr = float(cfg.pointer_bytes) if not cfg.huffman else float(max(burst, cfg.pointer_bytes))
        out["b_data"] = np.bincount(sched.trace_pass, weights=row_data, minlength=n)
        out["b_meta"] = np.bincount(sched.trace_pass, weights=np.full(len(rows), ptr), minlength=n)
        out["fetch_is_random"] = bool(cfg.huffman)
        return out
    random_ptr = float(max(burst, cfg.pointer_bytes))  # a row pointer read at random costs a burst
    if cfg.prefetcher:
        policy = cfg.replacement
    elif cfg.buffer_without_prefetcher == "lru":
        policy = "lru"  # a demand-fetched cache of the same size, blind to the future
    else:
        policy = None  # no buffer: every use of a row comes from DRAM
    if policy is None:
        out["b_data"] = np.bincount(sched.trace_pass, weights=row_data, minlength=n)
        out["b_meta"] = np.bincount(sched.trace_pass, weights=np.full(len(rows), random_ptr), minlength=n)
        # demand fetch: every access waits for DRAM unless requests overlap; modelled per pass below
        out["demand_rows"] = np.bincount(sched.trace_pass, minlength=n)
        return out
    key = (cfg.line_elems, cfg.buffer_lines, policy, cfg.lookahead if policy == "belady" else 0)
    hit = sched.buffer_runs.get(key)
    if hit is None:
        layout = line_layout(b_len, cfg.line_elems)
        lines, owner = kernels.expand_lines(rows, layout.first, layout.count)
        miss = simulate_buffer(lines, cfg.buffer_lines, policy, cfg.lookahead)
        if len(sched.buffer_runs) >= 2:  # each holds a line trace: keep memory bounded
            sched.buffer_runs.pop(next(iter(sched.buffer_runs)))
        sched.buffer_runs[key] = hit = (layout, lines, owner, miss)
    layout, lines, owner, miss = hit
    b_data, b_meta, buf_read, buf_write, acc = kernels.line_traffic(
        lines, owner, rows, sched.trace_pass, layout.first, layout.line_elems, miss, n, float(eb), int(burst), random_ptr
    )
    out.update(b_data=b_data, b_meta=b_meta, buffer_read=buf_read, buffer_write=buf_write)
    out.update(line_accesses=int(len(lines)), line_misses=int(miss.sum()), _miss=miss, _lines=lines, _owner=owner, _acc=acc, _layout=layout)
    out["prefetch"] = policy != "lru" or cfg.prefetcher
    return out


def _account(ops: Operands, cfg: SparchConfig, sched: _Schedule) -> SimResult:
    eb, ib, pb, burst = cfg.element_bytes, cfg.index_bytes, cfg.pointer_bytes, cfg.burst_bytes
    passes = sched.passes
    n = len(passes)
    if n == 0:
        empty = {k: 0.0 for k in DRAM_CATEGORIES}
        return SimResult(ops.name, "sparch", empty, 0.0, {k: 0.0 for k in ("dram", "buffer", "multiply", "merge", "control", "leakage")}, 0, 0, cfg.clock_ghz, sched.product, {"passes": 0, "bound_passes": {b: 0 for b in BOUNDS}})
    bt = _b_traffic(ops, cfg, sched)
    is_root = np.zeros(n, dtype=bool)
    is_root[-1] = True
    out = sched.pass_out.astype(np.float64)
    rows_ne = sched.pass_rows.astype(np.float64)
    # -- formats ---------------------------------------------------------------------
    # A: condensed columns hold (value, original column) plus a row id per element; plain
    # CSC columns hold (value, row id). One pointer per leaf column. Each leaf streams.
    a_elem = float(eb + ib) if sched.partials.condensed else float(eb)
    a_read = np.array([float(_bursts(x * a_elem, burst).sum()) if len(x) else 0.0 for x in sched.pass_a_bytes_leaf])
    a_meta = sched.pass_leaves * float(2 * pb)
    # spilled partial matrices: elements (value, column) + (row id, pointer) per non-empty row + one header burst
    spill_bytes = out * eb + rows_ne * (ib + pb)
    spill_stream = _bursts(out * eb, burst)
    spill_meta = _bursts(rows_ne * (ib + pb), burst) + burst
    write = np.where(is_root, 0.0, spill_stream)
    write_meta = np.where(is_root, 0.0, spill_meta)
    read = np.zeros(n)
    read_meta = np.zeros(n)
    for p, node in enumerate(passes):
        for c in node.spilled_children:
            read[p] += spill_stream[c]
            read_meta[p] += spill_meta[c]
    n_rows = ops.A.shape[0]
    c_write = float(_bursts(out[-1] * eb, burst))
    c_meta = float(_bursts((n_rows + 1) * pb, burst))
    pass_bytes = a_read + a_meta + bt["b_data"] + bt["b_meta"] + write + write_meta + read + read_meta
    pass_bytes[-1] += c_write + c_meta
    dram = {
        "a_read": float(a_read.sum()),
        "b_read": float(bt["b_data"].sum()),
        "partial_write": float(write.sum()),
        "partial_read": float(read.sum()),
        "c_write": c_write,
        "metadata": float(a_meta.sum() + bt["b_meta"].sum() + write_meta.sum() + read_meta.sum() + c_meta),
    }
    # -- time ------------------------------------------------------------------------
    widths = np.array(cfg.merger_widths(), dtype=np.float64)
    m_cycles = np.ceil(sched.m_in / widths[sched.m_level])
    merge_cycles = np.zeros(n)
    np.maximum.at(merge_cycles, sched.m_pass, m_cycles)
    slowest_level = np.zeros(n, dtype=np.int64)
    is_max = m_cycles >= merge_cycles[sched.m_pass]
    slowest_level[sched.m_pass[is_max]] = sched.m_level[is_max]
    mult_cycles = np.ceil(sched.pass_mults / cfg.multipliers)
    mem_cycles = pass_bytes / cfg.bytes_per_cycle
    compute = np.maximum(np.maximum(merge_cycles, mult_cycles), mem_cycles)
    latency = cfg.latency_cycles
    stall = np.zeros(n)
    if "_miss" in bt and len(bt["_miss"]):
        # the multipliers consume lines at the pass's pace; a prefetch is issued `distance`
        # accesses ahead (the lookahead, at most what the buffer can hold)
        acc_per_pass = bt["_acc"]
        pace = np.where(acc_per_pass > 0, compute / np.maximum(acc_per_pass, 1), 0.0)
        if cfg.prefetcher:
            distance = min(cfg.lookahead if cfg.lookahead > 0 else cfg.buffer_lines, cfg.buffer_lines)
        else:
            distance = 0  # a demand cache requests a line when it is needed
        stall = kernels.prefetch_stalls(
            bt["_miss"], bt["_lines"], bt["_owner"], sched.trace_pass, bt["_layout"].line_elems, pace, n, int(distance), float(latency), float(eb), int(burst), float(cfg.bytes_per_cycle)
        )
    elif "demand_rows" in bt:
        # no buffer, no prefetch: requests overlap only as far as the HBM channels allow
        channels = max(1, math.ceil(cfg.bandwidth_gbps / cfg.area.channel_gbps))
        stall = np.maximum(0.0, bt["demand_rows"] * latency / channels - compute)
    fill = cfg.tree_levels * cfg.pipeline_latency
    pass_cycles = compute + fill + latency + stall
    labels = np.stack([merge_cycles, mult_cycles, mem_cycles, fill + latency + stall])
    bound = np.argmax(labels, axis=0)
    # -- energy ----------------------------------------------------------------------
    e = cfg.energy
    multiplies = int(sched.pass_mults.sum())
    widths_of = widths[sched.m_level]
    buffer_bytes = float(bt["buffer_read"].sum()) + float(bt.get("buffer_write", np.zeros(1)).sum())
    total_cycles = float(pass_cycles.sum())
    area = area_breakdown(cfg)
    a_elems = float(sched.pass_a_elems.sum())
    sched_ops = float(n * cfg.merge_ways * max(1.0, math.log2(max(2, len(passes) + sched.partials.n_leaves)))) if cfg.huffman else 0.0
    energy = {
        "dram": sum(dram.values()) * e.dram_pj_per_byte,
        "buffer": buffer_bytes * e.sram_pj_per_byte,
        "multiply": multiplies * e.multiply_pj,
        "merge": float(sched.m_in.sum()) * e.merge_pj_per_element_level + float((sched.m_in * widths_of).sum()) * e.comparator_pj,
        "control": (a_elems * 2 * ib * e.fifo_pj_per_byte if cfg.prefetcher else 0.0) + bt["line_accesses"] * e.tag_lookup_pj + sched_ops * e.scheduler_pj_per_op,
        "leakage": sum(area.values()) * e.leakage_mw_per_mm2 * 1e-3 * total_cycles / (cfg.clock_ghz * 1e9) * 1e12,
    }
    bound_passes = {b: int((bound == i).sum()) for i, b in enumerate(BOUNDS)}
    bound_cycles = {b: float(pass_cycles[bound == i].sum() / total_cycles) for i, b in enumerate(BOUNDS)}
    levels_hist = {f"L{l}": int(((bound == 0) & (slowest_level == l)).sum()) for l in range(cfg.tree_levels)}
    dominant = BOUNDS[int(np.argmax([bound_cycles[b] for b in BOUNDS]))]
    stats: Dict[str, Any] = dict(
        leaves=sched.partials.n_leaves,
        passes=n,
        spilled_passes=n - 1,
        bound=dominant,
        bound_passes=bound_passes,
        bound_cycle_share=bound_cycles,
        merge_bound_slowest_level=levels_hist,
        merge_cycles=float(merge_cycles.sum()),
        multiply_cycles=float(mult_cycles.sum()),
        memory_cycles=float(mem_cycles.sum()),
        latency_cycles=float(n * latency + fill * n),
        prefetch_stall_cycles=float(stall.sum()),
        memory_bound_fraction=float((bound == 2).mean()),
        line_accesses=bt["line_accesses"],
        line_misses=bt["line_misses"],
        buffer_hit_rate=float(1.0 - bt["line_misses"] / bt["line_accesses"]) if bt["line_accesses"] else 1.0,
        condensed=cfg.condensed,
        huffman=cfg.huffman,
        prefetcher=cfg.prefetcher,
    )
    return SimResult(
        name=ops.name,
        model="sparch",
        dram=dram,
        cycles=total_cycles,
        energy_pj=energy,
        multiplies=multiplies,
        nnz_c=sched.nnz_c,
        clock_ghz=cfg.clock_ghz,
        product=sched.product,
        stats=stats,
    )
