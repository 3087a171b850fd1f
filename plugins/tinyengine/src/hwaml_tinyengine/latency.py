"""The latency model, fitted to instruction counts measured in QEMU.

Each layer call of the generated firmware is described by the work its kernel
really does (features below, computed from the memory plan: patch regions,
padding rows and columns, pixel pairs, SIMD steps and tails, requantised outputs, calls),
and its instructions are a non-negative linear function of them, one set of
coefficients per op type and core. The coefficients are fitted by
``benchmarks/tinyengine/calibrate_latency.py`` to per-layer counts of the
profiling firmware (``make profile``) under ``qemu-system-arm -icount shift=0``
and shipped in ``hwaml_tinyengine/data/latency_fit.json`` (coefficients and
the measured rows they were fitted on).

Cycles = instructions x the profile's ``cycles_per_instruction`` (an assumption
per core, sources in :mod:`.device`); latency = cycles / clock.

Features (summed over a layer's calls, i.e. over patches in the patch stage):

``conv``      SIMD steps (4 MACs), tail MACs, outputs (requantised), column entries (im2col), pixels, calls
``pwconv``    SIMD steps (2 pixels x 1 channel x 4 inputs), tail MACs, outputs, pixel pairs,
              column steps (4 inputs of a pixel pair widened to int16), calls
``dwconv``    calls whose input window needs padding (te_dwconv.h's ring path): taps (every
              output runs the whole K x K window on the padded ring), outputs, channel rows
              (output rows x channels), gathered rows and gathered entries (input rows and
              values copied into the ring, per channel), channels; calls whose window lies
              inside the tensor (the direct path: the interior tiles of the patch stage):
              direct taps, direct weight reloads (taps past the 10 packed in registers, per
              pair), direct outputs, direct channel rows, direct channels; calls
``linear``    SIMD steps (2 outputs x 4 inputs), tail MACs, outputs, calls
others        output elements, input elements, calls
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import networkx as nx
import numpy as np

from .ir import inputs_of

__all__ = ["FEATURES", "layer_features", "load_fit", "predict_instructions", "predict_layer_instructions", "fit_coefficients", "FIT_FILE"]

FIT_FILE = "latency_fit.json"

#: feature names per op type ("other" for the elementwise and pooling ops)
FEATURES: Dict[str, Tuple[str, ...]] = {
    "conv": ("simd_steps", "tail_macs", "outputs", "columns", "pixels", "calls"),
    "pwconv": ("simd_steps", "tail_macs", "outputs", "pixel_pairs", "column_steps", "calls"),
    "dwconv": ("taps", "outputs", "channel_rows", "gathered_rows", "gathered", "channels",
               "direct_taps", "direct_reloads", "direct_outputs", "direct_channel_rows", "direct_channels", "calls"),
    "linear": ("simd_steps", "tail_macs", "outputs", "calls"),
    "other": ("out_elements", "in_elements", "calls"),
}


def _kind(op: str) -> str:
    return op if op in FEATURES else "other"


def _regions(plan: Any, n: str) -> List[Tuple[int, int, int, int]]:
    g = plan.graph
    _, h, w = g.nodes[n]["shape"]
    if plan.patch is not None and n in plan.patch.layers:
        return [tuple(r) for r in plan.patch.regions[n]]
    return [(0, h, 0, w)]


def layer_features(g: nx.DiGraph, n: str, regions: Sequence[Tuple[int, int, int, int]]) -> Dict[str, float]:
    """The features of layer ``n`` computed over ``regions`` (one per kernel call)."""
    d = g.nodes[n]
    op = d["op"]
    c, _, _ = d["shape"]
    ins = inputs_of(g, n)
    cin, ih, iw = g.nodes[ins[0]]["shape"] if ins else (0, 0, 0)
    f = {k: 0.0 for k in FEATURES[_kind(op)]}
    for y0, y1, x0, x1 in regions:
        pix = (y1 - y0) * (x1 - x0)
        f["calls"] += 1
        if op == "conv":
            kkc = d["kernel"] ** 2 * cin
            f["simd_steps"] += pix * c * (kkc // 4)
            f["tail_macs"] += pix * c * (kkc % 4)
            f["outputs"] += pix * c
            f["columns"] += pix * kkc
            f["pixels"] += pix
        elif op == "pwconv":
            pairs = (pix + 1) // 2
            f["simd_steps"] += pairs * c * (cin // 4)
            f["tail_macs"] += pairs * c * (cin % 4)
            f["outputs"] += pix * c
            f["pixel_pairs"] += pairs
            f["column_steps"] += pairs * (cin // 4)
        elif op == "dwconv":
            k, s, p = d["kernel"], d["stride"], d["padding"]
            if y0 * s - p >= 0 and (y1 - 1) * s - p + k <= ih and x0 * s - p >= 0 and (x1 - 1) * s - p + k <= iw:
                # the window is inside the tensor: te_dwconv.h's direct path (the planner's in-place
                # buffers always pass its write-order check: codegen._check_dw_direct)
                f["direct_taps"] += pix * c * k * k
                f["direct_reloads"] += pix * c * max(0, (k * k + 1) // 2 - 5)
                f["direct_outputs"] += pix * c
                f["direct_channel_rows"] += c * (y1 - y0)
                f["direct_channels"] += c
                continue
            # the input rows and columns of the window that lie inside the tensor (te_dwconv.h's ring)
            rows = max(0, min(ih, (y1 - 1) * s - p + k) - max(0, y0 * s - p))
            ix0, rl = x0 * s - p, (x1 - x0 - 1) * s + k
            cols = max(0, min(rl, iw - ix0) - max(0, -ix0))
            f["taps"] += pix * c * k * k
            f["outputs"] += pix * c
            f["gathered_rows"] += c * rows
            f["gathered"] += c * rows * cols
            f["channel_rows"] += c * (y1 - y0)
            f["channels"] += c
        elif op == "linear":
            n_in = cin * ih * iw
            f["simd_steps"] += (c // 2) * (n_in // 4)
            f["tail_macs"] += (c // 2) * 2 * (n_in % 4) + (c % 2) * n_in
            f["outputs"] += c
        else:
            f["out_elements"] += pix * c
            if op in ("avgpool",):
                f["in_elements"] += pix * c * d["kernel"] ** 2
            elif op == "global_avgpool":
                f["in_elements"] += cin * ih * iw
            else:
                f["in_elements"] += pix * c * max(1, len(ins))
    return f


def plan_features(plan: Any) -> List[Tuple[str, str, Dict[str, float]]]:
    """(layer, op, features) of every layer of a memory plan, in schedule order."""
    g = plan.graph
    return [(n, g.nodes[n]["op"], layer_features(g, n, _regions(plan, n))) for n in plan.steps]


@lru_cache(maxsize=None)
def _load(name: str) -> Dict[str, Any]:
    text = resources.files("hwaml_tinyengine").joinpath("data").joinpath(name).read_text()
    data = json.loads(text)
    if "cores" not in data:
        raise ValueError(f"hwaml_tinyengine/data/{name}: no 'cores' entry (malformed latency fit)")
    return data


def load_fit(core: str) -> Dict[str, Dict[str, float]]:
    """The fitted coefficients of ``core`` (``cortex-m4``, ``cortex-m7``): op kind -> feature -> instructions."""
    data = _load(FIT_FILE)
    key = core if core in data["cores"] else ("cortex-m7" if core.startswith("cortex-m7") else "cortex-m4")
    if key not in data["cores"]:
        raise ValueError(f"latency fit has no core {core!r} (fitted: {sorted(data['cores'])})")
    return data["cores"][key]["coefficients"]


def _dot(coef: Mapping[str, float], f: Mapping[str, float]) -> float:
    return float(sum(coef.get(k, 0.0) * v for k, v in f.items()))


def predict_layer_instructions(plan: Any, core: str) -> List[Dict[str, Any]]:
    """Predicted instructions per layer (one row per layer: layer, op, instructions)."""
    coef = load_fit(core)
    return [{"layer": n, "op": op, "instructions": _dot(coef[_kind(op)], f)} for n, op, f in plan_features(plan)]


def predict_instructions(plan: Any, core: str) -> float:
    """Predicted instructions of one inference of ``plan`` on ``core``."""
    data = _load(FIT_FILE)
    key = core if core in data["cores"] else ("cortex-m7" if core.startswith("cortex-m7") else "cortex-m4")
    base = float(data["cores"].get(key, {}).get("per_inference", 0.0))
    return base + sum(r["instructions"] for r in predict_layer_instructions(plan, core))


def fit_coefficients(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Non-negative least squares per op kind on measured rows
    (``{"op", "features", "instructions"}``); relative errors weigh equally
    (each row is scaled by 1 / its instructions)."""
    from scipy.optimize import nnls

    out: Dict[str, Dict[str, float]] = {}
    for kind, names in FEATURES.items():
        sel = [r for r in rows if _kind(r["op"]) == kind and r["instructions"] > 0]
        if not sel:
            continue
        A = np.array([[r["features"][k] for k in names] for r in sel], dtype=np.float64)
        y = np.array([r["instructions"] for r in sel], dtype=np.float64)
        w = 1.0 / np.sqrt(y)  # between absolute and relative weighting
        coef, _ = nnls(A * w[:, None], y * w)
        out[kind] = {k: float(v) for k, v in zip(names, coef)}
    return out
