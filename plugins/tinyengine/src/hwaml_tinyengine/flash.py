"""Flash accounting of an IR graph: int8 weights, per-channel parameters and code.

Flash depends on the graph only (not on the device nor on the memory plan), so
this module sits below both :mod:`.memory_planner` (which records the figure in
every :class:`~.memory_planner.MemoryPlan`) and :mod:`.device`.
"""

from __future__ import annotations

from typing import Dict

import networkx as nx
import numpy as np

from .ir import CONV_OPS, LUT_ACTS

__all__ = ["flash_breakdown", "flash_bytes", "CODE_BYTES_BASE", "CODE_BYTES_PER_LAYER"]

#: Flash taken by the runtime (kernels, requantisation helpers, startup) and
#: per generated layer call; estimates for Thumb-2 code at -O2.
CODE_BYTES_BASE = 6 * 1024
CODE_BYTES_PER_LAYER = 320


def flash_breakdown(g: nx.DiGraph) -> Dict[str, int]:
    """Bytes of constants (int8 weights; int32 bias and multiplier, int8 shift
    per output channel; a 256-byte table per h-swish/h-sigmoid) and the code
    estimate."""
    weights = params = layers = 0
    for n in g.graph["order"]:
        d = g.nodes[n]
        if d["op"] == "input":
            continue
        layers += 1
        if d["op"] in CONV_OPS or d["op"] == "linear":
            weights += int(np.prod(d["weight"].shape))
            params += int(d["weight"].shape[0]) * (4 + 4 + 1)
        if d.get("act") in LUT_ACTS:
            params += 256
    code = CODE_BYTES_BASE + CODE_BYTES_PER_LAYER * layers
    return {"weights": weights, "per_channel_params": params, "code": code}


def flash_bytes(g: nx.DiGraph) -> int:
    """Total Flash bytes of :func:`flash_breakdown`."""
    return int(sum(flash_breakdown(g).values()))
