"""Write an int8 .tflite flatbuffer for TFLite Micro from TinyEngine's quantised IR.

Benchmark-only (needs the ``bench`` extra: tflite-micro ships the TFLite schema's
generated object API, flatbuffers serialises it). The same int8 parameters that
TinyEngine compiles go into the flatbuffer, so TFLM runs the very same quantised
network: per-channel int8 weights, int32 biases, per-tensor activation scales
and zero points, fused ReLU/ReLU6.

PyTorch pads symmetrically; TFLite's SAME padding puts the extra row at the
bottom for stride 2. Where they differ an explicit PAD op (filled with the
input zero point) precedes a VALID convolution -- what PyTorch-to-TFLite
converters emit as well. Weights are stored inline in the flatbuffer (TFLM
cannot read external buffers).
"""

from __future__ import annotations

from typing import Dict, List

import flatbuffers
import networkx as nx
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

from hwaml_tinyengine.ir import inputs_of

_ACT = {"none": fb.ActivationFunctionType.NONE, "relu": fb.ActivationFunctionType.RELU, "relu6": fb.ActivationFunctionType.RELU6}


class _Writer:
    def __init__(self) -> None:
        self.model = fb.ModelT()
        self.model.version = 3
        self.model.operatorCodes = []
        self.model.buffers = [fb.BufferT()]
        self.sub = fb.SubGraphT()
        self.sub.tensors, self.sub.operators, self.sub.inputs, self.sub.outputs = [], [], [], []
        self.codes: Dict[int, int] = {}

    def buffer(self, arr: np.ndarray) -> int:
        b = fb.BufferT()
        b.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8)
        self.model.buffers.append(b)
        return len(self.model.buffers) - 1

    def tensor(self, name: str, shape: List[int], ttype: int, scale, zp, data: np.ndarray = None, qdim: int = 0) -> int:
        t = fb.TensorT()
        t.name, t.shape, t.type = name, [int(s) for s in shape], ttype
        t.buffer = self.buffer(data) if data is not None else 0
        q = fb.QuantizationParametersT()
        q.scale = [float(s) for s in np.atleast_1d(scale)]
        q.zeroPoint = [int(z) for z in np.atleast_1d(zp)]
        q.quantizedDimension = qdim
        t.quantization = q
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def op(self, code: int, inputs: List[int], outputs: List[int], opt_type: int = 0, opts=None) -> None:
        if code not in self.codes:
            oc = fb.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self.model.operatorCodes.append(oc)
            self.codes[code] = len(self.model.operatorCodes) - 1
        o = fb.OperatorT()
        o.opcodeIndex = self.codes[code]
        o.inputs, o.outputs = inputs, outputs
        o.builtinOptionsType = opt_type
        o.builtinOptions = opts
        self.sub.operators.append(o)

    def finish(self) -> bytes:
        self.model.subgraphs = [self.sub]
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _same_matches(in_size: int, k: int, s: int, p: int) -> bool:
    """Does TFLite SAME padding equal PyTorch's symmetric padding ``p``?"""
    out = (in_size + 2 * p - k) // s + 1
    if out != -(-in_size // s):
        return False
    total = max((out - 1) * s + k - in_size, 0)
    return total // 2 == p


def write_tflite(qg: nx.DiGraph, explicit_pad: bool = True) -> bytes:
    """The quantised IR as an int8 .tflite model (NHWC, batch 1).

    ``explicit_pad=False`` uses TFLite SAME padding everywhere instead of PAD
    ops: TFLM's best case for memory, at the price of a one-pixel shift on
    stride-2 layers (outputs no longer identical to TinyEngine's).
    """
    w = _Writer()
    tid: Dict[str, int] = {}
    for n in qg.graph["order"]:
        d = qg.nodes[n]
        c, h, wd = d["shape"]
        s, zp = d["q"]
        op = d["op"]
        shape = [1, h, wd, c] if op != "linear" else [1, c]
        out = w.tensor(n, shape, fb.TensorType.INT8, s, zp)
        tid[n] = out
        if op == "input":
            w.sub.inputs.append(out)
            continue
        ins = inputs_of(qg, n)
        src = tid[ins[0]] if ins else None
        if op in ("conv", "pwconv", "dwconv"):
            sc_in, zp_in = qg.nodes[ins[0]]["q"]
            cin, ih, iw = qg.nodes[ins[0]]["shape"]
            k, st, p = d["kernel"], d["stride"], d["padding"]
            pad_mode = fb.Padding.VALID if p == 0 else fb.Padding.SAME
            if explicit_pad and p and not (_same_matches(ih, k, st, p) and _same_matches(iw, k, st, p)):
                pads = w.tensor(f"{n}/pads", [4, 2], fb.TensorType.INT32, 0.0, 0, np.array([[0, 0], [p, p], [p, p], [0, 0]], dtype=np.int32))
                padded = w.tensor(f"{n}/padded", [1, ih + 2 * p, iw + 2 * p, cin], fb.TensorType.INT8, sc_in, zp_in)
                w.op(fb.BuiltinOperator.PAD, [src, pads], [padded], fb.BuiltinOptions.PadOptions, fb.PadOptionsT())
                src, pad_mode = padded, fb.Padding.VALID
            wq = d["w_int8"]
            if op == "dwconv":
                wt = wq[:, 0].transpose(1, 2, 0)[None]  # 1, kh, kw, C
                filt = w.tensor(f"{n}/w", list(wt.shape), fb.TensorType.INT8, d["w_scale"], np.zeros(c, int), wt.astype(np.int8), qdim=3)
            else:
                wt = wq.transpose(0, 2, 3, 1)  # O, kh, kw, I
                filt = w.tensor(f"{n}/w", list(wt.shape), fb.TensorType.INT8, d["w_scale"], np.zeros(c, int), wt.astype(np.int8), qdim=0)
            bias = w.tensor(f"{n}/b", [c], fb.TensorType.INT32, sc_in * d["w_scale"], np.zeros(c, int), d["bias_int32"].astype(np.int32))
            if op == "dwconv":
                o = fb.DepthwiseConv2DOptionsT()
                o.depthMultiplier = 1
                opt_type, code = fb.BuiltinOptions.DepthwiseConv2DOptions, fb.BuiltinOperator.DEPTHWISE_CONV_2D
            else:
                o = fb.Conv2DOptionsT()
                opt_type, code = fb.BuiltinOptions.Conv2DOptions, fb.BuiltinOperator.CONV_2D
            o.padding, o.strideW, o.strideH = pad_mode, st, st
            o.dilationWFactor = o.dilationHFactor = 1
            o.fusedActivationFunction = _ACT[d["act"]]
            w.op(code, [src, filt, bias], [out], opt_type, o)
        elif op == "add":
            o = fb.AddOptionsT()
            o.fusedActivationFunction = _ACT[d["act"]]
            w.op(fb.BuiltinOperator.ADD, [tid[ins[0]], tid[ins[1]]], [out], fb.BuiltinOptions.AddOptions, o)
        elif op in ("avgpool", "global_avgpool"):
            _, ih, iw = qg.nodes[ins[0]]["shape"]
            o = fb.Pool2DOptionsT()
            o.padding = fb.Padding.VALID
            if op == "avgpool":
                o.strideW = o.strideH = d["stride"]
                o.filterWidth = o.filterHeight = d["kernel"]
            else:
                o.strideW = o.strideH = 1
                o.filterHeight, o.filterWidth = ih, iw
            o.fusedActivationFunction = fb.ActivationFunctionType.NONE
            w.op(fb.BuiltinOperator.AVERAGE_POOL_2D, [src], [out], fb.BuiltinOptions.Pool2DOptions, o)
        elif op == "linear":
            sc_in = qg.nodes[ins[0]]["q"][0]
            filt = w.tensor(f"{n}/w", list(d["w_int8"].shape), fb.TensorType.INT8, d["w_scale"], np.zeros(c, int), d["w_int8"].astype(np.int8), qdim=0)
            bias = w.tensor(f"{n}/b", [c], fb.TensorType.INT32, sc_in * d["w_scale"], np.zeros(c, int), d["bias_int32"].astype(np.int32))
            o = fb.FullyConnectedOptionsT()
            o.fusedActivationFunction = _ACT[d["act"]]
            w.op(fb.BuiltinOperator.FULLY_CONNECTED, [src, filt, bias], [out], fb.BuiltinOptions.FullyConnectedOptions, o)
        else:
            raise NotImplementedError(f"tflite_writer: op {op!r} ({n}) is not exported")
    w.sub.outputs.append(tid[qg.graph["output"]])
    return w.finish()
