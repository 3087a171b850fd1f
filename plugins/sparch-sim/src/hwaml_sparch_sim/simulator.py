"""The SpArch dataflow: pipelined multiply-and-merge over a scheduled merge tree.

One simulation of ``C = A @ B`` goes through three stages:

1. **Schedule and compute.** A is split into partial matrices (plain columns or
   condensed columns, :mod:`.condensed`). The scheduler (:mod:`.scheduler`, the
   Huffman tree or the in-order baseline) groups them into passes of at most
   ``merge_ways``. A pass multiplies its leaves (each A element times its row of
   B, straight into the tree, never to DRAM) and merges them with the spilled
   results of earlier passes; the merged, accumulated result is spilled to DRAM
   unless the pass is the last one, whose result is C. Every pass is computed
   numerically with scipy.sparse (the same sorted, accumulated stream the
   comparator-array tree of :mod:`.merger` produces), so the product returned
   is the product of the simulated schedule, not a separate ``A @ B``.
2. **B-row traffic.** In the plain form each leaf reads its row of B once. In
   the condensed form a pass reads, row by row of the output, the B rows named
   by the column indices of its A elements; this trace goes through the row
   prefetcher's buffer (:mod:`.prefetcher`, lookahead Belady replacement). With
   the prefetcher switched off the same buffer works as a demand-fetched LRU
   cache (``buffer_without_prefetcher: lru``) or is absent (``none``: every use of
   a row comes from DRAM).
3. **Time and energy.** Each pass takes the longest of its merge throughput
   (``merger_width`` elements per cycle at the root), its multiplier throughput
   and its DRAM transfer time at the HBM bandwidth, plus the tree's pipeline
   fill; energy adds DRAM bytes, buffer reads, multiplies and comparator steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from .arch import SparchConfig
from .condensed import PartialMatrices, partial_matrices
from .matrices import Operands
from .prefetcher import expand_to_lines, line_layout, simulate_buffer
from .scheduler import MergeNode, run_schedule

log = logging.getLogger(__name__)

__all__ = ["SimResult", "SparchSimulator", "simulate_sparch", "DRAM_CATEGORIES"]

#: DRAM traffic categories, in bytes
DRAM_CATEGORIES = ("a_read", "b_read", "partial_write", "partial_read", "c_write")


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
            **{k: v for k, v in self.stats.items() if isinstance(v, (int, float, str, bool))},
        }


@dataclass
class _Schedule:
    """Stage 1 output, reusable across buffer, bandwidth and energy parameters."""

    nodes: List[MergeNode]
    partials: PartialMatrices
    product: sp.csr_matrix
    node_mults: np.ndarray  # products generated in each pass
    node_a_elems: np.ndarray  # A elements read by each pass
    node_b_rows: List[np.ndarray]  # per pass, the B-row access trace (condensed) or rows read (plain)
    seconds: float


def _sum_sparse(parts: List[sp.csr_matrix], shape: Tuple[int, int]) -> sp.csr_matrix:
    """Merge the partial results of one pass into a sorted, accumulated matrix.

    scipy's CSR addition is a linear sorted merge that sums equal coordinates (a
    two-way merger with its adder); adding the smallest operands first touches
    the large ones once, the same reasoning as the Huffman scheduler's.
    """
    if not parts:
        return sp.csr_matrix(shape)
    ordered = sorted(parts, key=lambda p: p.nnz)
    out = ordered[0]
    for part in ordered[1:]:
        out = out + part
    out = sp.csr_matrix(out)
    out.sort_indices()
    return out


class SparchSimulator:
    """Simulates SpArch on operand pairs; remembers schedules between design points.

    The schedule stage depends only on the matrix and on (condensed, huffman,
    merge_ways); buffer sizes, bandwidth, widths and energies reuse it, which
    makes design-space search over the other parameters cheap.
    """

    def __init__(self, max_cached: int = 16):
        self._cache: Dict[Tuple[Any, ...], _Schedule] = {}
        self.max_cached = max_cached

    def schedule(self, ops: Operands, cfg: SparchConfig) -> _Schedule:
        key = (id(ops.A), id(ops.B), cfg.condensed, cfg.huffman, cfg.merge_ways)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if len(self._cache) >= self.max_cached:
            self._cache.pop(next(iter(self._cache)))
        sched = _build_schedule(ops, cfg)
        self._cache[key] = sched
        return sched

    def run(self, ops: Operands, cfg: SparchConfig) -> SimResult:
        t0 = time.perf_counter()
        sched = self.schedule(ops, cfg)
        result = _account(ops, cfg, sched)
        result.stats["sim_seconds"] = time.perf_counter() - t0
        result.stats["schedule_seconds"] = sched.seconds
        return result


def simulate_sparch(ops: Operands, cfg: Optional[SparchConfig] = None) -> SimResult:
    """Simulate one SpGEMM on SpArch (a fresh simulator, no schedule reuse)."""
    return SparchSimulator().run(ops, cfg or SparchConfig())


# ---------------------------------------------------------------------------
# stage 1: schedule and compute
# ---------------------------------------------------------------------------


def _build_schedule(ops: Operands, cfg: SparchConfig) -> _Schedule:
    t0 = time.perf_counter()
    A, B = ops.A, ops.B
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"{ops.name}: A is {A.shape[0]} x {A.shape[1]} but B has {B.shape[0]} rows")
    shape = (A.shape[0], B.shape[1])
    b_len = np.diff(B.indptr).astype(np.int64)
    partials = partial_matrices(A, b_len, cfg.condensed)
    rows_of = np.repeat(np.arange(A.shape[0], dtype=np.int64), np.diff(A.indptr))
    cols_of = A.indices.astype(np.int64)
    results: Dict[int, sp.csr_matrix] = {}
    node_mults: List[int] = []
    node_a: List[int] = []
    node_trace: List[np.ndarray] = []
    product_holder: List[sp.csr_matrix] = []

    def merge(node: MergeNode) -> int:
        parts: List[sp.csr_matrix] = []
        if node.leaves:
            elems = np.concatenate([partials.elements(p) for p in node.leaves])
            r, c = rows_of[elems], cols_of[elems]
            # the leaves' A elements as one sparse matrix: multiplying it by B is the
            # multiplier array feeding those leaves into the tree at once
            S = sp.csr_matrix((A.data[elems], (r, c)), shape=A.shape)
            parts.append(sp.csr_matrix(S @ B))
            if partials.condensed:
                # the order the multipliers ask for B rows: output row by output row,
                # across the pass's leaves in port order
                port = np.repeat(np.arange(len(node.leaves)), partials.elems_per_leaf[node.leaves])
                node_trace.append(c[np.lexsort((port, r))])
            else:
                node_trace.append(np.unique(c))
            node_mults.append(int(b_len[c].sum()))
            node_a.append(len(elems))
        else:
            node_trace.append(np.zeros(0, dtype=np.int64))
            node_mults.append(0)
            node_a.append(0)
        for child in node.spilled_children:
            parts.append(results.pop(child))
        merged = _sum_sparse(parts, shape)
        if node.is_root:
            product_holder.append(merged)
        else:
            results[node.index] = merged
        return merged.nnz

    policy = "huffman" if cfg.huffman else "in_order"
    nodes = run_schedule(policy, partials.sizes.tolist(), cfg.merge_ways, merge)
    product = product_holder[0] if product_holder else sp.csr_matrix(shape)
    seconds = time.perf_counter() - t0
    log.debug("%s: %d leaves, %d passes, schedule %.2fs", ops.name, partials.n_leaves, len(nodes), seconds)
    return _Schedule(nodes, partials, product, np.asarray(node_mults, dtype=np.int64), np.asarray(node_a, dtype=np.int64), node_trace, seconds)


# ---------------------------------------------------------------------------
# stages 2 and 3: B traffic, time, energy
# ---------------------------------------------------------------------------


def _b_traffic(ops: Operands, cfg: SparchConfig, sched: _Schedule) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """Per pass: B bytes fetched from DRAM and B bytes read from the on-chip buffer."""
    eb = cfg.element_bytes
    b_len = np.diff(ops.B.indptr).astype(np.int64)
    n = len(sched.nodes)
    stats: Dict[str, Any] = {}
    row_bytes = np.array([b_len[t].sum() * eb for t in sched.node_b_rows], dtype=np.float64)
    if not sched.partials.condensed:
        return row_bytes, np.zeros(n), stats  # plain form: each leaf reads its B row once
    if cfg.prefetcher:
        policy = cfg.replacement
    elif cfg.buffer_without_prefetcher == "lru":
        policy = "lru"  # a demand-fetched cache of the same size, blind to the future
    else:
        return row_bytes, np.zeros(n), stats  # no buffer: every use of a row comes from DRAM
    lengths = np.array([len(t) for t in sched.node_b_rows], dtype=np.int64)
    trace_rows = np.concatenate(sched.node_b_rows) if n else np.zeros(0, dtype=np.int64)
    node_of_access = np.repeat(np.arange(n), lengths)
    layout = line_layout(b_len, cfg.line_elems)
    lines, owner = expand_to_lines(trace_rows, layout)
    miss = simulate_buffer(lines, cfg.buffer_lines, policy, cfg.lookahead)
    line_bytes = layout.line_elems[lines].astype(np.float64) * eb
    fetched = np.bincount(node_of_access[owner], weights=line_bytes * miss, minlength=n)
    stats.update(line_accesses=int(len(lines)), line_misses=int(miss.sum()), buffer_hit_rate=float(1.0 - miss.mean()) if len(lines) else 1.0)
    return fetched, row_bytes, stats


def _account(ops: Operands, cfg: SparchConfig, sched: _Schedule) -> SimResult:
    eb = cfg.element_bytes
    nodes = sched.nodes
    n = len(nodes)
    b_dram, b_buffer, stats = _b_traffic(ops, cfg, sched)
    out_nnz = np.array([nd.output_nnz for nd in nodes], dtype=np.float64)
    in_nnz = np.array([nd.input_nnz for nd in nodes], dtype=np.float64)
    is_root = np.array([nd.is_root for nd in nodes], dtype=bool)
    spill_read = np.array([sum(nodes[c].output_nnz for c in nd.spilled_children) for nd in nodes], dtype=np.float64) * eb
    a_read = sched.node_a_elems.astype(np.float64) * eb
    write = out_nnz * eb
    node_bytes = a_read + b_dram + spill_read + write
    merge_cycles = in_nnz / cfg.merger_width
    mult_cycles = sched.node_mults / cfg.multipliers
    mem_cycles = node_bytes / cfg.bytes_per_cycle
    fill = cfg.tree_levels * cfg.pipeline_latency
    node_cycles = np.maximum(np.maximum(merge_cycles, mult_cycles), mem_cycles) + fill if n else np.zeros(0)
    dram = {
        "a_read": float(a_read.sum()),
        "b_read": float(b_dram.sum()),
        "partial_write": float(write[~is_root].sum()),
        "partial_read": float(spill_read.sum()),
        "c_write": float(write[is_root].sum()),
    }
    multiplies = int(sched.node_mults.sum())
    e = cfg.energy
    energy = {
        "dram": sum(dram.values()) * e.dram_pj_per_byte,
        "buffer": float(b_buffer.sum()) * e.sram_pj_per_byte,
        "multiply": multiplies * e.multiply_pj,
        "merge": float(in_nnz.sum()) * cfg.tree_levels * e.merge_pj_per_element_level,
    }
    bound = np.where(mem_cycles >= np.maximum(merge_cycles, mult_cycles), 1, 0) if n else np.zeros(0)
    stats.update(
        leaves=sched.partials.n_leaves,
        passes=n,
        spilled_passes=int((~is_root).sum()),
        memory_bound_fraction=float(bound.mean()) if n else 0.0,
        condensed=cfg.condensed,
        huffman=cfg.huffman,
        prefetcher=cfg.prefetcher,
    )
    return SimResult(
        name=ops.name,
        model="sparch",
        dram=dram,
        cycles=float(node_cycles.sum()),
        energy_pj=energy,
        multiplies=multiplies,
        nnz_c=int(sched.product.nnz),
        clock_ghz=cfg.clock_ghz,
        product=sched.product,
        stats=stats,
    )
