"""The OuterSPACE-style baseline (Pal et al., HPCA 2018): outer product in two phases.

*Multiply phase*: for every column ``k`` of A, read ``A[:, k]`` and ``B[k, :]``
once and write every product ``A[i, k] * B[k, j]`` to DRAM as a partial-product
element (value and column index, grouped by output row). *Merge phase*: read
all partial products back, sort and accumulate them row by row, and write C.

Input reuse is perfect (each A and B element is read once) but every product
crosses the DRAM interface twice, which is the traffic SpArch removes. The
model uses the same clock, bandwidth, element size, multipliers, merge
throughput and energy table as the SpArch simulation it is compared with.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .arch import SparchConfig
from .matrices import Operands
from .simulator import SimResult

__all__ = ["simulate_outerspace", "count_multiplies"]


def count_multiplies(ops: Operands) -> int:
    """Products of the outer product: sum over k of nnz(A[:, k]) * nnz(B[k, :])."""
    a_col = np.bincount(ops.A.indices, minlength=ops.A.shape[1]).astype(np.int64)
    b_row = np.diff(ops.B.indptr).astype(np.int64)
    return int(a_col @ b_row)


def simulate_outerspace(ops: Operands, cfg: Optional[SparchConfig] = None, nnz_c: Optional[int] = None) -> SimResult:
    """DRAM traffic, cycles and energy of the two-phase outer product.

    ``nnz_c`` (the output's non-zeros) is computed with ``A @ B`` when not given.
    """
    cfg = cfg or SparchConfig()
    eb = cfg.element_bytes
    a_col = np.bincount(ops.A.indices, minlength=ops.A.shape[1]).astype(np.int64)
    b_row = np.diff(ops.B.indptr).astype(np.int64)
    multiplies = int(a_col @ b_row)
    used_b = int(b_row[a_col > 0].sum())  # rows of B whose A column is empty are never fetched
    if nnz_c is None:
        nnz_c = int((ops.A @ ops.B).nnz)
    dram = {
        "a_read": float(ops.A.nnz * eb),
        "b_read": float(used_b * eb),
        "partial_write": float(multiplies * eb),
        "partial_read": float(multiplies * eb),
        "c_write": float(nnz_c * eb),
    }
    bpc = cfg.bytes_per_cycle
    multiply_phase = max(multiplies / cfg.multipliers, (dram["a_read"] + dram["b_read"] + dram["partial_write"]) / bpc)
    merge_phase = max(multiplies / cfg.merger_width, (dram["partial_read"] + dram["c_write"]) / bpc)
    e = cfg.energy
    energy = {
        "dram": sum(dram.values()) * e.dram_pj_per_byte,
        "buffer": 0.0,
        "multiply": multiplies * e.multiply_pj,
        "merge": multiplies * cfg.tree_levels * e.merge_pj_per_element_level,
    }
    return SimResult(
        name=ops.name,
        model="outerspace",
        dram=dram,
        cycles=float(multiply_phase + merge_phase),
        energy_pj=energy,
        multiplies=multiplies,
        nnz_c=int(nnz_c),
        clock_ghz=cfg.clock_ghz,
        product=None,
        stats={"multiply_phase_cycles": multiply_phase, "merge_phase_cycles": merge_phase},
    )
