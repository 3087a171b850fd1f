"""The OuterSPACE baseline (Pal et al., HPCA 2018) with its own organisation.

OuterSPACE computes the outer product in two phases on ``tiles x pes_per_tile``
simple SPMD processing elements (16 x 16 = 256 PEs at 1.5 GHz); each tile's PEs
share an L0 cache (16 KiB, usable as scratchpad in the merge phase) through a
crossbar, and the tiles reach HBM through a second crossbar.

*Multiply phase*: a PE takes column ``k`` of A (CSC) and row ``k`` of B (CSR),
reads both once and writes every product ``A[i, k] * B[k, j]`` to DRAM, grouped
as one linked-list chunk per (row ``i``, column ``k``) -- value and column index
per product plus a chunk header (next pointer, length), each chunk rounded up to
DRAM bursts. *Merge phase*: a PE takes an output row, reads its chunks back,
sorts and accumulates them, and writes the row of C (CSR).

Time per phase is the longest of the PE compute time (cycles per product or per
merged element, the per-PE costs calibrated to OuterSPACE's reported mean of
2.9 GFLOPS, see the benchmark page), the crossbar time and the DRAM time, plus one
DRAM latency; energy uses the same per-event table as the SpArch model.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .arch import SparchConfig
from .matrices import Operands
from .simulator import SimResult, _bursts, symbolic_nnz

__all__ = ["simulate_outerspace", "count_multiplies"]


def count_multiplies(ops: Operands) -> int:
    """Products of the outer product: sum over k of nnz(A[:, k]) * nnz(B[k, :])."""
    a_col = np.bincount(ops.A.indices, minlength=ops.A.shape[1]).astype(np.int64)
    b_row = np.diff(ops.B.indptr).astype(np.int64)
    return int(a_col @ b_row)


def simulate_outerspace(ops: Operands, cfg: Optional[SparchConfig] = None, nnz_c: Optional[int] = None) -> SimResult:
    """DRAM traffic, cycles (at OuterSPACE's clock) and energy of the two-phase outer product.

    ``nnz_c`` (the output's non-zeros) is counted symbolically when not given.
    """
    cfg = cfg or SparchConfig()
    o = cfg.outerspace
    eb, pb, burst = cfg.element_bytes, cfg.pointer_bytes, cfg.burst_bytes
    a_col = np.bincount(ops.A.indices, minlength=ops.A.shape[1]).astype(np.int64)
    b_row = np.diff(ops.B.indptr).astype(np.int64)
    multiplies = int(a_col @ b_row)
    used = a_col > 0
    used_b = int(b_row[used].sum())  # rows of B whose A column is empty are never fetched
    if nnz_c is None:
        nnz_c = symbolic_nnz(ops.A, ops.B)
    # one chunk per A element: its products (value + column) and a header, in whole bursts
    chunk = _bursts(b_row[ops.A.indices].astype(np.float64) * eb + o.chunk_header_bytes, burst)
    chunk = chunk[b_row[ops.A.indices] > 0]
    partial = float(chunk.sum())
    n_rows = ops.A.shape[0]
    dram = {
        "a_read": float(_bursts(ops.A.nnz * float(eb), burst)),
        "b_read": float(_bursts(used_b * float(eb), burst)),
        "partial_write": partial,
        "partial_read": partial,
        "c_write": float(_bursts(nnz_c * float(eb), burst)),
        "metadata": float(_bursts((ops.A.shape[1] + 1) * pb, burst) * 2 + _bursts((n_rows + 1) * pb, burst)),
    }
    pes = o.tiles * o.pes_per_tile
    bpc = o.bandwidth_gbps / o.clock_ghz  # bytes per OuterSPACE cycle
    xbar = o.tiles * o.crossbar_bytes_per_cycle_per_tile
    lat = cfg.dram_latency_ns * o.clock_ghz
    mul_bytes = dram["a_read"] + dram["b_read"] + dram["partial_write"] + dram["metadata"] * 2 / 3
    mrg_bytes = dram["partial_read"] + dram["c_write"] + dram["metadata"] / 3
    mul_parts = {"compute": multiplies * o.multiply_cycles_per_product / pes, "crossbar": mul_bytes / xbar, "memory": mul_bytes / bpc}
    mrg_parts = {"compute": multiplies * o.merge_cycles_per_element / pes, "crossbar": mrg_bytes / xbar, "memory": mrg_bytes / bpc}
    multiply_phase = max(mul_parts.values()) + lat
    merge_phase = max(mrg_parts.values()) + lat
    e = cfg.energy
    seconds = (multiply_phase + merge_phase) / (o.clock_ghz * 1e9)
    # L0 traffic: every partial product passes the L0 on its way out and back in
    l0_bytes = 2.0 * multiplies * eb
    energy = {
        "dram": sum(dram.values()) * e.dram_pj_per_byte,
        "buffer": l0_bytes * e.sram_pj_per_byte,
        "multiply": multiplies * e.multiply_pj,
        "merge": multiplies * (e.merge_pj_per_element_level + e.comparator_pj * max(1.0, np.log2(max(2.0, multiplies / max(1, nnz_c))))),
        "control": 0.0,
        "leakage": 87.0 * e.leakage_mw_per_mm2 * 1e-3 * seconds * 1e12,  # 87 mm^2 (reported, 32 nm)
    }
    return SimResult(
        name=ops.name,
        model="outerspace",
        dram=dram,
        cycles=float(multiply_phase + merge_phase),
        energy_pj=energy,
        multiplies=multiplies,
        nnz_c=int(nnz_c),
        clock_ghz=o.clock_ghz,
        product=None,
        stats={
            "multiply_phase_cycles": multiply_phase,
            "merge_phase_cycles": merge_phase,
            "multiply_bound": max(mul_parts, key=mul_parts.get),
            "merge_bound": max(mrg_parts, key=mrg_parts.get),
            "gflops": 2.0 * multiplies / seconds / 1e9 if seconds > 0 else 0.0,
        },
    )
