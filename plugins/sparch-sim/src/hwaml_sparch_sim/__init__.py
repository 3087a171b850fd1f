"""SpArch (Zhang, Wang, Han and Dally, HPCA 2020) as an hwaml plugin.

An outer-product SpGEMM accelerator simulator with each of SpArch's techniques
switchable -- condensed representation of the left matrix, Huffman-tree merge
scheduler, comparator-array merge tree with on-chip accumulation, row prefetcher
with lookahead (Belady) replacement -- next to an OuterSPACE-style baseline.

Names are imported lazily (on first use), so that loading the plugin entry
point stays cheap for every ``hwaml`` command.
"""

from hwaml.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "SparchConfig": ".arch",
        "load_operands": ".matrices",
        "load_workload": ".matrices",
        "poisson2d": ".matrices",
        "poisson3d": ".matrices",
        "read_edge_list": ".matrices",
        "read_matrix_market": ".matrices",
        "rmat": ".matrices",
        "simulate_outerspace": ".outerspace",
        "SimResult": ".simulator",
        "SparchSimulator": ".simulator",
        "simulate_sparch": ".simulator",
    },
)
