"""Flash accounting of an IR graph: the constants the generated C holds and its code.

Constants are counted as the generator writes them (each array padded to 4
bytes, as the linker places them): int8 weights; per output channel an int32
bias, an int32 multiplier and an int8 shift; 256 bytes per h-swish/h-sigmoid
table; the int16 window tables of every layer call (one row per patch in the
patch stage); the int32 part tables of concatenations. Code is a per-op model
of the Thumb-2 bytes the kernels compile to at -O2 (fitted to linked firmware by
``benchmarks/tinyengine/calibrate_flash.py``, shipped in
``hwaml_tinyengine/data/flash_fit.json``), plus the fixed part of the model
(its API functions). The harness, startup and vector table are not the model's.

Flash depends on the graph and the patch plan only (not on the device), so this
module sits below both :mod:`.memory_planner` (which records the figure in every
:class:`~.memory_planner.MemoryPlan`) and :mod:`.device`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Dict, Optional

import networkx as nx
import numpy as np

from .ir import CONV_OPS, LUT_ACTS, inputs_of

__all__ = ["flash_breakdown", "flash_bytes", "code_features", "CODE_BYTES_BASE", "CODE_BYTES_PER_LAYER", "FLASH_FIT_FILE"]

FLASH_FIT_FILE = "flash_fit.json"
#: fallbacks when no fit is shipped (older estimate): runtime bytes and bytes per layer
CODE_BYTES_BASE = 6 * 1024
CODE_BYTES_PER_LAYER = 320


def _pad4(n: int) -> int:
    return (int(n) + 3) & ~3


def code_features(g: nx.DiGraph) -> Dict[str, float]:
    """What the generated code's size depends on: layers per op, and the
    unrolled loops (depthwise K*K taps; dense convolution K*K*C_in column
    entries)."""
    f: Dict[str, float] = {"model": 1.0}
    for n in g.graph["order"]:
        d = g.nodes[n]
        op = d["op"]
        if op == "input":
            continue
        f[f"n_{op}"] = f.get(f"n_{op}", 0.0) + 1
        if op == "dwconv":
            f["dw_taps"] = f.get("dw_taps", 0.0) + d["kernel"] ** 2
        elif op == "conv":
            cin = g.nodes[inputs_of(g, n)[0]]["shape"][0]
            f["conv_columns"] = f.get("conv_columns", 0.0) + d["kernel"] ** 2 * cin
        if d.get("act") in LUT_ACTS:
            f["n_lut"] = f.get("n_lut", 0.0) + 1
    return f


@lru_cache(maxsize=None)
def _fit() -> Optional[Dict[str, float]]:
    try:
        text = resources.files("hwaml_tinyengine").joinpath("data").joinpath(FLASH_FIT_FILE).read_text()
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if "coefficients" not in data:
        raise ValueError(f"hwaml_tinyengine/data/{FLASH_FIT_FILE}: no 'coefficients' (malformed Flash fit)")
    return {str(k): float(v) for k, v in data["coefficients"].items()}


def _window_entries(g: nx.DiGraph, n: str, patch: Any) -> int:
    row = 7 + 3 * len(inputs_of(g, n))
    calls = patch.n**2 if patch is not None and n in patch.layers else 1
    return row * calls


def flash_breakdown(g: nx.DiGraph, patch: Any = None) -> Dict[str, int]:
    """Bytes of the model in Flash: ``weights``, ``per_channel_params`` (bias,
    multiplier, shift, tables), ``window_tables`` (with ``patch``, the patch
    plan, one row per patch of the stage's layers) and ``code``."""
    weights = params = tables = 0
    for n in g.graph["order"]:
        d = g.nodes[n]
        if d["op"] == "input":
            continue
        if d["op"] in CONV_OPS or d["op"] == "linear":
            cout = int(d["weight"].shape[0])
            weights += _pad4(int(np.prod(d["weight"].shape)))
            params += 2 * 4 * cout + _pad4(cout)
        if d.get("act") in LUT_ACTS:
            params += 256
        if d["op"] == "concat":
            params += 16 * len(inputs_of(g, n))
        tables += _pad4(2 * _window_entries(g, n, patch))
    coef = _fit()
    feats = code_features(g)
    if coef is None:
        code = CODE_BYTES_BASE + CODE_BYTES_PER_LAYER * int(sum(v for k, v in feats.items() if k.startswith("n_") and k != "n_lut"))
    else:
        code = int(round(sum(coef.get(k, 0.0) * v for k, v in feats.items())))
    return {"weights": weights, "per_channel_params": params, "window_tables": tables, "code": code}


def flash_bytes(g: nx.DiGraph, patch: Any = None) -> int:
    """Total Flash bytes of :func:`flash_breakdown`."""
    return int(sum(flash_breakdown(g, patch).values()))
