"""SpArch (Zhang, Wang, Han and Dally, HPCA 2020) as an hwaml plugin.

An outer-product SpGEMM accelerator simulator with each of SpArch's techniques
switchable -- condensed representation of the left matrix, Huffman-tree merge
scheduler, comparator-array merge tree with on-chip accumulation, row prefetcher
with lookahead (Belady) replacement -- next to an OuterSPACE-style baseline.

Names are imported lazily (on first use), so that loading the plugin entry
point stays cheap for every ``hwaml`` command.
"""

import importlib
from typing import Any

_EXPORTS = {
    'SparchConfig': '.arch',
    'load_operands': '.matrices',
    'load_workload': '.matrices',
    'poisson2d': '.matrices',
    'poisson3d': '.matrices',
    'read_edge_list': '.matrices',
    'read_matrix_market': '.matrices',
    'rmat': '.matrices',
    'simulate_outerspace': '.outerspace',
    'SimResult': '.simulator',
    'SparchSimulator': '.simulator',
    'simulate_sparch': '.simulator',
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
