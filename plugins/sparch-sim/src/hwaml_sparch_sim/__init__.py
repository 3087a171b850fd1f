"""SpArch (Zhang, Wang, Han and Dally, HPCA 2020) as an hwaml plugin.

An outer-product SpGEMM accelerator simulator with each of SpArch's techniques
switchable -- condensed representation of the left matrix, Huffman-tree merge
scheduler, comparator-array merge tree with on-chip accumulation, row prefetcher
with lookahead (Belady) replacement -- next to an OuterSPACE-style baseline.
"""

from .arch import SparchConfig
from .matrices import load_operands, load_workload, poisson2d, poisson3d, read_edge_list, read_matrix_market, rmat
from .outerspace import simulate_outerspace
from .simulator import SimResult, SparchSimulator, simulate_sparch

__all__ = [
    "SparchConfig",
    "SimResult",
    "SparchSimulator",
    "simulate_sparch",
    "simulate_outerspace",
    "load_operands",
    "load_workload",
    "read_matrix_market",
    "read_edge_list",
    "rmat",
    "poisson2d",
    "poisson3d",
]
