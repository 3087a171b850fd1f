"""Post-training int8 quantisation and the bit-exact int8 reference.

The scheme is the one MCU kernels (CMSIS-NN, TFLite Micro, TinyEngine) execute:

* weights: symmetric, per output channel, int8 in ``[-127, 127]``;
* activations: asymmetric, per tensor, int8 with a zero point, the range
  taken from calibration data (min/max, always containing 0);
* biases: int32 in the accumulator's scale ``s_in * s_w[c]``;
* requantisation: the real factor ``s_in * s_w[c] / s_out`` becomes a Q31
  multiplier and a power-of-two shift; the accumulator is scaled with a
  saturating rounding doubling high multiply followed by a rounding right shift
  (gemmlowp semantics), then offset by the output zero point and clamped to the
  fused activation's range.
* residual adds rescale both inputs to a common scale with 20 bits of headroom
  (TFLite's int8 ADD); average pooling keeps its input's scale and divides with
  rounding half away from zero; concatenation requantises each input to the
  output's scale; a channel scaling (squeeze-and-excite) multiplies the two
  zero-point-corrected int8 values and requantises the product.
* h-swish and h-sigmoid: the producing layer requantises to the activation's
  *input* (its own calibrated range), then a 256-entry int8 table maps each
  value to the output's quantisation (``lut``), as the C kernels do.

:func:`run_int8` implements exactly that arithmetic in numpy (int64) so that the
generated C code can be checked bit for bit against it. Convolutions use torch in
float64, which is exact for these integer products (all partial sums are far
below 2**53).
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, Dict, Optional, Tuple

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F

from .ir import CONV_OPS, LUT_ACTS, apply_act, inputs_of, run_float

__all__ = [
    "quantize_multiplier",
    "requantize",
    "calibrate",
    "quantize_graph",
    "quantize_input",
    "run_int8",
    "dequantize_output",
]

log = logging.getLogger(__name__)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
ADD_LEFT_SHIFT = 20


def quantize_multiplier(real: float) -> Tuple[int, int]:
    """``real ~= q / 2**31 * 2**shift`` with ``q`` in ``[2**30, 2**31)``."""
    if real <= 0.0:
        return 0, 0
    mant, exp = math.frexp(real)
    q = int(round(mant * (1 << 31)))
    if q == (1 << 31):
        q //= 2
        exp += 1
    if exp < -31:  # underflows to zero in any kernel
        return 0, 0
    return q, exp


def _trunc_div(a: np.ndarray, d: int) -> np.ndarray:
    """C99 integer division (rounds toward zero)."""
    q = np.abs(a) // d
    return np.where(a < 0, -q, q)


def requantize(acc: np.ndarray, mult: Any, shift: Any) -> np.ndarray:
    """gemmlowp ``MultiplyByQuantizedMultiplier`` on int64 arrays (broadcasts)."""
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.clip(acc * (np.int64(1) << left), INT32_MIN, INT32_MAX)
    ab = x * mult
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    high = _trunc_div(ab + nudge, 1 << 31)
    high = np.clip(high, INT32_MIN, INT32_MAX)
    mask = (np.int64(1) << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + (remainder > threshold)


def _act_qparams(lo: float, hi: float) -> Tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    # scales are float32 as in a .tflite file, so that multipliers derived from
    # them (in double, as TFLite Micro does) agree bit for bit
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return float(scale), zp


def calibrate(g: nx.DiGraph, calib: torch.Tensor, batch_size: int = 256) -> Dict[str, Tuple[float, float]]:
    """Min/max of every IR tensor over the calibration data."""
    ranges: Dict[str, Tuple[float, float]] = {}
    with torch.no_grad():
        for i in range(0, len(calib), batch_size):
            vals = run_float(g, calib[i : i + batch_size], keep=True)
            for n, v in vals.items():
                lo, hi = float(v.min()), float(v.max())
                if n in ranges:
                    lo, hi = min(lo, ranges[n][0]), max(hi, ranges[n][1])
                ranges[n] = (lo, hi)
    return ranges


def _clamp_range(act: str, scale: float, zp: int) -> Tuple[int, int]:
    qmin, qmax = -128, 127
    if act in ("relu", "relu6"):
        qmin = max(qmin, zp)
    if act == "relu6":
        qmax = min(qmax, zp + int(round(6.0 / scale)))
    return qmin, qmax


def activation_table(act: str, q_in: Tuple[float, int], q_out: Tuple[float, int]) -> np.ndarray:
    """int8 -> int8 table of a fused activation: entry ``v + 128`` is the output
    of the int8 value ``v`` in the input quantisation ``q_in``."""
    (s_in, zp_in), (s_out, zp_out) = q_in, q_out
    real = (np.arange(-128, 128, dtype=np.float64) - zp_in) * s_in
    return np.clip(np.round(apply_act(real, act) / s_out) + zp_out, -128, 127).astype(np.int8)


def quantize_graph(g: nx.DiGraph, calib: Optional[torch.Tensor] = None, seed: int = 0) -> nx.DiGraph:
    """Return a copy of the IR with int8 weights, int32 biases, activation
    ``(scale, zero_point)`` as ``q`` and requantisation parameters on every node.

    ``calib`` is a float NCHW batch; without it a standard-normal batch stands in
    (enough for memory and latency, not for accuracy).
    """
    if calib is None:
        gen = torch.Generator().manual_seed(seed)
        calib = torch.randn(16, *g.graph["input_shape"], generator=gen)
    calib = torch.as_tensor(calib, dtype=torch.float64)
    ranges = calibrate(g, calib)
    q = copy.deepcopy(g)
    q.graph["quantized"] = True
    for n in q.graph["order"]:
        d = q.nodes[n]
        ins = inputs_of(q, n)
        op = d["op"]
        if op in ("avgpool", "global_avgpool", "relu"):
            d["q"] = q.nodes[ins[0]]["q"]  # same scale as the input: no requantisation
        else:
            d["q"] = _act_qparams(*ranges[n])
        if d["act"] in LUT_ACTS:
            # the kernel writes the pre-activation in its own quantisation, the table maps it
            d["q_pre"] = _act_qparams(*ranges[f"{n}@pre"])
            d["lut"] = activation_table(d["act"], d["q_pre"], d["q"])
            s_out, zp_out = d["q_pre"]
            d["qmin"], d["qmax"] = -128, 127
        else:
            s_out, zp_out = d["q"]
            d["qmin"], d["qmax"] = _clamp_range(d["act"], s_out, zp_out)
        if op in CONV_OPS or op == "linear":
            s_in = q.nodes[ins[0]]["q"][0]
            w = d["weight"]
            w2 = w.reshape(w.shape[0], -1)
            absmax = np.abs(w2).max(axis=1)
            w_scale = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32).astype(np.float64)
            wq = np.clip(np.round(w2 / w_scale[:, None]), -127, 127).astype(np.int8).reshape(w.shape)
            d["w_scale"] = w_scale
            d["w_int8"] = wq
            bias_scale = s_in * w_scale
            d["bias_int32"] = np.clip(np.round(d["bias"] / bias_scale), INT32_MIN, INT32_MAX).astype(np.int64)
            mults = [quantize_multiplier(float(s_in * ws / s_out)) for ws in w_scale]
            d["mult"] = np.array([m for m, _ in mults], dtype=np.int64)
            d["shift"] = np.array([s for _, s in mults], dtype=np.int64)
        elif op == "add":
            (s1, _), (s2, _) = q.nodes[ins[0]]["q"], q.nodes[ins[1]]["q"]
            twice_max = 2.0 * max(s1, s2)
            d["add_mult"] = [quantize_multiplier(s1 / twice_max), quantize_multiplier(s2 / twice_max)]
            d["out_mult"] = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * s_out))
        elif op == "mul":
            (sx, _), (ss, _) = q.nodes[ins[0]]["q"], q.nodes[ins[1]]["q"]
            d["mul_mult"] = quantize_multiplier(sx * ss / s_out)
        elif op == "concat":
            d["in_mult"] = [quantize_multiplier(q.nodes[i]["q"][0] / s_out) for i in ins]
    return q


def quantize_input(qg: nx.DiGraph, x: Any) -> np.ndarray:
    """Float NCHW batch -> int8 NHWC batch in the model's input quantisation."""
    x = np.asarray(torch.as_tensor(x, dtype=torch.float64))
    s, zp = qg.nodes[qg.graph["input"]]["q"]
    xq = np.clip(np.round(x / s) + zp, -128, 127).astype(np.int8)
    return np.ascontiguousarray(xq.transpose(0, 2, 3, 1))


def dequantize_output(qg: nx.DiGraph, y: np.ndarray) -> np.ndarray:
    s, zp = qg.nodes[qg.graph["output"]]["q"]
    return (y.astype(np.float64) - zp) * s


def _conv_acc(x: np.ndarray, zp_in: int, d: Dict[str, Any], depthwise: bool) -> np.ndarray:
    """Exact int accumulators of a convolution: NHWC int8 in, NHWC int64 out."""
    xt = torch.from_numpy((x.astype(np.int64) - zp_in).transpose(0, 3, 1, 2).astype(np.float64))
    wt = torch.from_numpy(d["w_int8"].astype(np.float64))
    groups = xt.shape[1] if depthwise else 1
    acc = F.conv2d(xt, wt, None, d["stride"], d["padding"], 1, groups)
    acc = acc.numpy().round().astype(np.int64).transpose(0, 2, 3, 1)
    return acc + d["bias_int32"]


def _finish(acc: np.ndarray, d: Dict[str, Any], mult: Any, shift: Any) -> np.ndarray:
    """Requantise, add the output zero point, clamp; a table activation then
    maps the (pre-activation) int8 values through ``lut``."""
    if "lut" in d:
        y = np.clip(requantize(acc, mult, shift) + d["q_pre"][1], -128, 127)
        return d["lut"][y + 128]
    y = requantize(acc, mult, shift) + d["q"][1]
    return np.clip(y, d["qmin"], d["qmax"]).astype(np.int8)


def _rounded_mean(acc: np.ndarray, n: int) -> np.ndarray:
    return np.where(acc > 0, _trunc_div(acc + n // 2, n), _trunc_div(acc - n // 2, n))


def run_int8(qg: nx.DiGraph, xq: np.ndarray, keep: bool = False) -> Any:
    """Integer reference: int8 NHWC input batch -> int8 output ``(N, F)``
    (or every tensor by name with ``keep``)."""
    vals: Dict[str, np.ndarray] = {}
    for n in qg.graph["order"]:
        d = qg.nodes[n]
        ins = inputs_of(qg, n)
        op = d["op"]
        if op == "input":
            y = np.asarray(xq, dtype=np.int8)
        elif op in ("conv", "pwconv", "dwconv"):
            zp_in = qg.nodes[ins[0]]["q"][1]
            acc = _conv_acc(vals[ins[0]], zp_in, d, op == "dwconv")
            y = _finish(acc, d, d["mult"], d["shift"])
        elif op == "linear":
            zp_in = qg.nodes[ins[0]]["q"][1]
            x = vals[ins[0]].reshape(len(vals[ins[0]]), -1).astype(np.int64) - zp_in
            acc = (torch.from_numpy(x.astype(np.float64)) @ torch.from_numpy(d["w_int8"].astype(np.float64)).T).numpy()
            acc = acc.round().astype(np.int64) + d["bias_int32"]
            y = _finish(acc, d, d["mult"], d["shift"]).reshape(len(x), 1, 1, -1)
        elif op == "add":
            (m1, s1), (m2, s2) = d["add_mult"]
            a = (vals[ins[0]].astype(np.int64) - qg.nodes[ins[0]]["q"][1]) << ADD_LEFT_SHIFT
            b = (vals[ins[1]].astype(np.int64) - qg.nodes[ins[1]]["q"][1]) << ADD_LEFT_SHIFT
            total = requantize(a, m1, s1) + requantize(b, m2, s2)
            y = _finish(total, d, *d["out_mult"])
        elif op == "mul":
            x = vals[ins[0]].astype(np.int64) - qg.nodes[ins[0]]["q"][1]
            sc = vals[ins[1]].astype(np.int64) - qg.nodes[ins[1]]["q"][1]  # (N, 1, 1, C): broadcasts
            y = _finish(x * sc, d, *d["mul_mult"])
        elif op == "concat":
            parts = []
            for i, (m, s) in zip(ins, d["in_mult"]):
                v = vals[i].astype(np.int64) - qg.nodes[i]["q"][1]
                parts.append(np.clip(requantize(v, m, s) + d["q"][1], -128, 127))
            y = np.clip(np.concatenate(parts, axis=3), d["qmin"], d["qmax"]).astype(np.int8)
        elif op == "avgpool":
            x = torch.from_numpy(vals[ins[0]].astype(np.float64).transpose(0, 3, 1, 2))
            k = d["kernel"]
            acc = (F.avg_pool2d(x, k, d["stride"]) * (k * k)).numpy().round().astype(np.int64).transpose(0, 2, 3, 1)
            y = np.clip(_rounded_mean(acc, k * k), d["qmin"], d["qmax"]).astype(np.int8)
        elif op == "global_avgpool":
            x = vals[ins[0]].astype(np.int64)
            cnt = x.shape[1] * x.shape[2]
            acc = x.sum(axis=(1, 2), keepdims=True)
            y = np.clip(_rounded_mean(acc, cnt), d["qmin"], d["qmax"]).astype(np.int8)
        elif op == "relu":
            y = np.clip(vals[ins[0]], d["qmin"], d["qmax"]).astype(np.int8)
        else:  # pragma: no cover
            raise AssertionError(op)
        vals[n] = y
    if keep:
        return vals
    out = vals[qg.graph["output"]]
    return out.reshape(len(out), -1)


def predict_int8(qg: nx.DiGraph, x: Any, batch_size: int = 512) -> np.ndarray:
    """Class predictions of the int8 model for a float NCHW batch."""
    preds = []
    for i in range(0, len(x), batch_size):
        preds.append(run_int8(qg, quantize_input(qg, x[i : i + batch_size])).argmax(1))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
