"""Import a PyTorch model into TinyEngine's graph IR (a networkx DiGraph).

The model is traced with ``torch.fx``; shapes come from ``ShapeProp`` on one
example input. Every IR node is a layer that produces one tensor, named after
the node. Node attributes:

``op``
    ``input``, ``conv`` (dense k x k), ``pwconv`` (1 x 1), ``dwconv``
    (depthwise), ``linear``, ``add``, ``mul`` (a tensor times a per-channel
    ``C x 1 x 1`` tensor: the scaling of a squeeze-and-excite block),
    ``concat``, ``avgpool``, ``global_avgpool`` or ``relu`` (a standalone
    ReLU/ReLU6 that could not be fused).
``shape``
    output shape ``(C, H, W)`` without the batch; a linear layer's output is
    ``(F, 1, 1)``.
``act``
    ``"none"``, ``"relu"`` or ``"relu6"`` (a fused activation clamp), or
    ``"hswish"``/``"hsigmoid"`` (MobileNetV3's hard swish and hard sigmoid,
    fused into the convolution or linear layer producing their input; int8
    kernels apply them through a 256-entry table, see :data:`LUT_ACTS`).
``weight``/``bias``
    float32 numpy arrays, batch norm already folded in; a linear layer's weight
    columns are ordered H, W, C (the memory order of the deployed tensors).
``kernel``/``stride``/``padding``
    for convolutions and pooling.
``source``
    where the layer came from in the torch model (module path or fx node).

Edges carry ``port`` (the input index of the consumer). ``graph.graph`` holds
``order`` (topological order of node names), ``input`` and ``output``.
Anything outside the supported set raises :class:`UnsupportedOpError` naming the
op and its place in the model.
"""

from __future__ import annotations

import operator
from typing import Any, Dict, List, Optional, Sequence, Tuple

import networkx as nx
import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["UnsupportedOpError", "import_model", "run_float", "macs_of", "SPATIAL_OPS", "CONV_OPS", "LUT_ACTS", "apply_act"]

CONV_OPS = ("conv", "pwconv", "dwconv")
#: activations that are not clamps: computed in int8 by a table lookup on the
#: producer's (pre-activation) int8 output
LUT_ACTS = ("hswish", "hsigmoid")
#: ops that compute each output pixel from a bounded input window (patchable)
SPATIAL_OPS = ("conv", "pwconv", "dwconv", "add", "concat", "avgpool", "relu")


class UnsupportedOpError(ValueError):
    """The model uses an operation TinyEngine cannot compile; names the op and where."""

    def __init__(self, op: str, where: str, why: str = ""):
        self.op = op
        self.where = where
        extra = f": {why}" if why else ""
        super().__init__(f"unsupported operation {op!r} at {where}{extra}")


_RELU_FUNCS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hswish", F.hardsigmoid: "hsigmoid"}
_ACT_MODULES = ((nn.ReLU, "relu"), (nn.ReLU6, "relu6"), (nn.Hardswish, "hswish"), (nn.Hardsigmoid, "hsigmoid"))
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "hardswish": "hswish", "hardsigmoid": "hsigmoid"}
_ADD_FUNCS = (operator.add, torch.add, operator.iadd)
_MUL_FUNCS = (operator.mul, torch.mul, operator.imul)
_IDENTITY_MODULES = (nn.Identity, nn.Dropout)


def _where(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"module '{node.target}' (fx node '{node.name}')"
    return f"fx node '{node.name}'"


def _op_name(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


class _Builder:
    def __init__(self, gm: torch.fx.GraphModule):
        self.gm = gm
        self.g = nx.DiGraph()
        self.alias: Dict[str, str] = {}  # fx node name -> IR node name
        self.flat: Dict[str, bool] = {}  # IR tensors seen through a flatten

    def src(self, arg: Any, node: torch.fx.Node) -> str:
        if not isinstance(arg, torch.fx.Node):
            raise UnsupportedOpError(_op_name(node, self.gm), _where(node, self.gm), "expects tensor inputs")
        return self.alias[arg.name]

    def add(self, name: str, inputs: Sequence[str], **attrs: Any) -> None:
        attrs.setdefault("act", "none")
        self.g.add_node(name, **attrs)
        for port, s in enumerate(inputs):
            self.g.add_edge(s, name, port=port)

    def shape(self, node: torch.fx.Node) -> Tuple[int, int, int]:
        meta = node.meta.get("tensor_meta")
        shp = tuple(meta.shape)[1:]
        if len(shp) == 1:
            return (int(shp[0]), 1, 1)
        if len(shp) != 3:
            raise UnsupportedOpError(_op_name(node, self.gm), _where(node, self.gm), f"tensor of rank {len(shp) + 1}; only NCHW and NC are supported")
        return tuple(int(s) for s in shp)  # type: ignore[return-value]

    def users_of(self, name: str) -> List[str]:
        return list(self.g.successors(name))

    # An activation is fused into its producer when the producer is its only
    # reader and has no activation yet (TinyEngine fuses the clamp into the
    # requantisation of the producing kernel).
    # Clamps also fuse into adds and channel scalings; table activations
    # (h-swish, h-sigmoid) into convolutions and linear layers only.
    def activation(self, node: torch.fx.Node, kind: str) -> None:
        s = self.src(node.args[0], node)
        fx_src = node.args[0]
        prod = self.g.nodes[s]
        producers = CONV_OPS + ("linear",) if kind in LUT_ACTS else CONV_OPS + ("linear", "add", "mul")
        fusable = prod["op"] in producers and prod["act"] == "none" and len(fx_src.users) == 1
        if fusable:
            prod["act"] = kind
            self.alias[node.name] = s
        elif kind in LUT_ACTS:
            raise UnsupportedOpError(
                {"hswish": "Hardswish", "hsigmoid": "Hardsigmoid"}[kind],
                _where(node, self.gm),
                "only directly after a convolution or linear layer (batch norm between is fine) whose output has no other reader",
            )
        else:
            self.add(node.name, [s], op="relu", act=kind, shape=self.shape(node), source=_where(node, self.gm))
            self.alias[node.name] = node.name

    def conv(self, node: torch.fx.Node, m: nn.Conv2d) -> None:
        where = _where(node, self.gm)
        if m.padding_mode != "zeros":
            raise UnsupportedOpError("Conv2d", where, f"padding_mode={m.padding_mode!r}")
        if isinstance(m.padding, str) and m.padding == "same" and (m.kernel_size[0] % 2 == 0 or m.stride != (1, 1)):
            raise UnsupportedOpError("Conv2d", where, "padding='same' with an even kernel or stride > 1")
        if m.dilation != (1, 1):
            raise UnsupportedOpError("Conv2d", where, "dilation != 1")
        kh, kw = m.kernel_size
        sh, sw = m.stride
        if kh != kw or sh != sw:
            raise UnsupportedOpError("Conv2d", where, "non-square kernel or stride")
        if isinstance(m.padding, str):
            pad = 0 if m.padding == "valid" else (kh - 1) // 2
        else:
            ph, pw = m.padding
            if ph != pw:
                raise UnsupportedOpError("Conv2d", where, "non-square padding")
            pad = ph
        cin, cout, groups = m.in_channels, m.out_channels, m.groups
        if groups == 1:
            op = "pwconv" if kh == 1 and pad == 0 else "conv"
        elif groups == cin == cout:
            op = "dwconv"
        else:
            raise UnsupportedOpError("Conv2d", where, f"grouped convolution (groups={groups}) is neither dense nor depthwise")
        w = m.weight.detach().cpu().double().numpy()
        b = m.bias.detach().cpu().double().numpy() if m.bias is not None else np.zeros(cout)
        self.add(
            node.name,
            [self.src(node.args[0], node)],
            op=op,
            weight=w,
            bias=b,
            kernel=int(kh),
            stride=int(sh),
            padding=int(pad),
            shape=self.shape(node),
            source=where,
        )
        self.alias[node.name] = node.name

    def batchnorm(self, node: torch.fx.Node, m: nn.BatchNorm2d) -> None:
        s = self.src(node.args[0], node)
        prod = self.g.nodes[s]
        if prod["op"] not in CONV_OPS or prod["act"] != "none" or len(node.args[0].users) != 1:
            raise UnsupportedOpError("BatchNorm2d", _where(node, self.gm), "only batch norm directly after a convolution (folded into it) is supported")
        mean = m.running_mean.detach().cpu().double().numpy()
        var = m.running_var.detach().cpu().double().numpy()
        gamma = m.weight.detach().cpu().double().numpy() if m.weight is not None else np.ones_like(mean)
        beta = m.bias.detach().cpu().double().numpy() if m.bias is not None else np.zeros_like(mean)
        scale = gamma / np.sqrt(var + m.eps)
        prod["weight"] = prod["weight"] * scale.reshape(-1, 1, 1, 1)
        prod["bias"] = (prod["bias"] - mean) * scale + beta
        prod["source"] += f" + folded '{node.target}'"
        self.alias[node.name] = s

    def linear(self, node: torch.fx.Node, weight: np.ndarray, bias: Optional[np.ndarray]) -> None:
        s = self.src(node.args[0], node)
        c, h, w = self.g.nodes[s]["shape"]
        wt = weight.astype(np.float64)
        if wt.shape[1] != c * h * w:
            raise UnsupportedOpError("Linear", _where(node, self.gm), f"expects {wt.shape[1]} features, input has {c * h * w}")
        if h * w > 1:  # torch flattens C,H,W; the deployed tensor is H,W,C
            wt = wt.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(wt.shape[0], -1)
        b = bias.astype(np.float64) if bias is not None else np.zeros(wt.shape[0])
        self.add(node.name, [s], op="linear", weight=wt, bias=b, shape=self.shape(node), source=_where(node, self.gm))
        self.alias[node.name] = node.name

    def pool(self, node: torch.fx.Node, kernel: Any, stride: Any, padding: Any, ceil_mode: bool, name: str) -> None:
        where = _where(node, self.gm)
        k = kernel if isinstance(kernel, int) else kernel[0]
        s = stride if stride is not None else k
        s = s if isinstance(s, int) else (s[0] if len(s) else k)
        p = padding if isinstance(padding, int) else padding[0]
        if p != 0 or ceil_mode:
            raise UnsupportedOpError(name, where, "average pooling with padding or ceil_mode")
        src = self.src(node.args[0], node)
        shp = self.shape(node)
        if shp[1] == 1 and shp[2] == 1 and self.g.nodes[src]["shape"][1] == k and self.g.nodes[src]["shape"][2] == k:
            self.add(node.name, [src], op="global_avgpool", shape=shp, source=where)
        else:
            self.add(node.name, [src], op="avgpool", kernel=int(k), stride=int(s), padding=0, shape=shp, source=where)
        self.alias[node.name] = node.name

    def global_pool(self, node: torch.fx.Node) -> None:
        self.add(node.name, [self.src(node.args[0], node)], op="global_avgpool", shape=self.shape(node), source=_where(node, self.gm))
        self.alias[node.name] = node.name

    def flatten(self, node: torch.fx.Node) -> None:
        # Flatten/view to (N, -1) moves no data in H,W,C order; the linear layer
        # that reads it permutes its weight columns instead.
        self.alias[node.name] = self.src(node.args[0], node)

    def binary_add(self, node: torch.fx.Node) -> None:
        a, b = node.args[0], node.args[1]
        if not isinstance(a, torch.fx.Node) or not isinstance(b, torch.fx.Node) or node.kwargs.get("alpha", 1) != 1:
            raise UnsupportedOpError("add", _where(node, self.gm), "only tensor + tensor is supported")
        self.add(node.name, [self.src(a, node), self.src(b, node)], op="add", shape=self.shape(node), source=_where(node, self.gm))
        self.alias[node.name] = node.name

    def binary_mul(self, node: torch.fx.Node) -> None:
        """``x * s`` with ``s`` of shape ``C x 1 x 1`` (squeeze-and-excite); either order."""
        a, b = node.args[0], node.args[1]
        where = _where(node, self.gm)
        if not isinstance(a, torch.fx.Node) or not isinstance(b, torch.fx.Node):
            raise UnsupportedOpError("mul", where, "only tensor * tensor is supported (a constant factor belongs in the weights)")
        x, s = self.src(a, node), self.src(b, node)
        sx, ss = self.g.nodes[x]["shape"], self.g.nodes[s]["shape"]
        if sx[1:] == (1, 1) and ss[1:] != (1, 1):
            x, s, sx, ss = s, x, ss, sx
        if ss != (sx[0], 1, 1):
            raise UnsupportedOpError("mul", where, f"operands of shapes {sx} and {ss}; only a tensor times a per-channel (C x 1 x 1) tensor is supported")
        self.add(node.name, [x, s], op="mul", shape=self.shape(node), source=where)
        self.alias[node.name] = node.name

    def concat(self, node: torch.fx.Node) -> None:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim not in (1, -3):
            raise UnsupportedOpError("cat", _where(node, self.gm), f"concatenation along dim {dim}; only channels (dim=1)")
        self.add(node.name, [self.src(t, node) for t in tensors], op="concat", shape=self.shape(node), source=_where(node, self.gm))
        self.alias[node.name] = node.name


def _is_global_mean(node: torch.fx.Node) -> bool:
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if dims is None:
        return False
    dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
    return sorted(d % 4 for d in dims) == [2, 3]


def _is_flatten_view(node: torch.fx.Node) -> bool:
    shape = node.args[1:]
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = tuple(shape[0])
    return len(shape) == 2 and shape[1] == -1


def import_model(model: nn.Module, input_shape: Sequence[int]) -> nx.DiGraph:
    """Trace ``model`` and return the IR graph (see the module docstring).

    :param input_shape: ``(C, H, W)`` of one input image (no batch).
    :raises UnsupportedOpError: naming the op and its module or fx node.
    """
    model = model.eval()
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - tracing errors are user errors
        raise UnsupportedOpError("<trace>", type(model).__name__, f"torch.fx could not trace the model: {exc}") from exc
    example = torch.zeros(1, *[int(s) for s in input_shape])
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    b = _Builder(gm)
    output_name = None
    for node in gm.graph.nodes:
        where = _where(node, gm)
        if node.op == "placeholder":
            if b.g.number_of_nodes():
                raise UnsupportedOpError("second input", where, "models must take exactly one tensor")
            b.add(node.name, [], op="input", shape=b.shape(node), source=where)
            b.alias[node.name] = node.name
            b.g.graph["input"] = node.name
        elif node.op == "get_attr":
            raise UnsupportedOpError("get_attr", where, f"parameter '{node.target}' used directly in the forward pass")
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, torch.fx.Node):
                raise UnsupportedOpError("output", where, "the model must return exactly one tensor")
            output_name = b.alias[out.name]
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            if isinstance(m, nn.Conv2d):
                b.conv(node, m)
            elif isinstance(m, nn.BatchNorm2d):
                b.batchnorm(node, m)
            elif any(isinstance(m, cls) for cls, _ in _ACT_MODULES):
                b.activation(node, next(kind for cls, kind in _ACT_MODULES if isinstance(m, cls)))
            elif isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 6.0):
                b.activation(node, "relu6")
            elif isinstance(m, nn.Linear):
                b.linear(node, m.weight.detach().cpu().numpy(), None if m.bias is None else m.bias.detach().cpu().numpy())
            elif isinstance(m, nn.AvgPool2d):
                b.pool(node, m.kernel_size, m.stride, m.padding, m.ceil_mode, "AvgPool2d")
            elif isinstance(m, nn.AdaptiveAvgPool2d):
                osz = m.output_size if isinstance(m.output_size, int) else m.output_size[0]
                if osz != 1 or (not isinstance(m.output_size, int) and tuple(m.output_size) != (1, 1)):
                    raise UnsupportedOpError("AdaptiveAvgPool2d", where, "only output_size=1 (global pooling)")
                b.global_pool(node)
            elif isinstance(m, nn.Flatten):
                b.flatten(node)
            elif isinstance(m, _IDENTITY_MODULES):
                b.alias[node.name] = b.src(node.args[0], node)
            else:
                raise UnsupportedOpError(type(m).__name__, where)
        elif node.op == "call_function":
            t = node.target
            if t in _RELU_FUNCS:
                b.activation(node, _RELU_FUNCS[t])
            elif t is F.hardtanh and tuple(node.args[1:3]) == (0.0, 6.0):
                b.activation(node, "relu6")
            elif t in _ADD_FUNCS:
                b.binary_add(node)
            elif t in _MUL_FUNCS:
                b.binary_mul(node)
            elif t is torch.cat:
                b.concat(node)
            elif t is torch.flatten:
                b.flatten(node)
            elif t is F.adaptive_avg_pool2d:
                b.global_pool(node)
            elif t is F.avg_pool2d:
                a = list(node.args) + [None] * 6
                b.pool(node, a[1], a[2] if a[2] is not None else node.kwargs.get("stride"), a[3] or node.kwargs.get("padding", 0), bool(a[4] or node.kwargs.get("ceil_mode", False)), "avg_pool2d")
            elif t is F.linear:
                wnode = node.args[1]
                raise UnsupportedOpError("linear", where, f"functional linear with weight {wnode}; use nn.Linear")
            elif t is torch.mean and _is_global_mean(node):
                b.global_pool(node)
            elif t in (F.dropout,):
                b.alias[node.name] = b.src(node.args[0], node)
            else:
                raise UnsupportedOpError(_op_name(node, gm), where)
        elif node.op == "call_method":
            t = node.target
            if t in _ACT_METHODS:
                b.activation(node, _ACT_METHODS[t])
            elif t in ("add", "add_", "__add__"):
                b.binary_add(node)
            elif t in ("mul", "mul_", "__mul__"):
                b.binary_mul(node)
            elif t == "flatten" or (t in ("view", "reshape") and _is_flatten_view(node)):
                b.flatten(node)
            elif t == "mean" and _is_global_mean(node):
                b.global_pool(node)
            elif t in ("contiguous",):
                b.alias[node.name] = b.src(node.args[0], node)
            else:
                raise UnsupportedOpError(f"Tensor.{t}", where)
        else:  # pragma: no cover - fx has no other node kinds
            raise UnsupportedOpError(node.op, where)
    g = b.g
    if output_name is None:
        raise UnsupportedOpError("output", type(model).__name__, "the model has no output")
    # keep only the layers the output depends on (dead branches cost nothing)
    keep = nx.ancestors(g, output_name) | {output_name}
    g.remove_nodes_from([n for n in list(g.nodes) if n not in keep])
    g.graph["output"] = output_name
    g.graph["order"] = list(g.nodes)  # insertion order is fx order, which is topological
    g.graph["input_shape"] = tuple(int(s) for s in input_shape)
    _check_shapes(g)
    return g


def _check_shapes(g: nx.DiGraph) -> None:
    for n in g.graph["order"]:
        d = g.nodes[n]
        ins = inputs_of(g, n)
        if d["op"] in ("add",) and g.nodes[ins[0]]["shape"] != g.nodes[ins[1]]["shape"]:
            raise UnsupportedOpError("add", d["source"], "operands of different shapes (broadcasting is not supported)")
        if d["op"] == "mul" and g.nodes[ins[0]]["shape"] != d["shape"]:
            raise UnsupportedOpError("mul", d["source"], f"output shape {d['shape']} differs from the scaled tensor's {g.nodes[ins[0]]['shape']}")


def inputs_of(g: nx.DiGraph, n: str) -> List[str]:
    """Producers of node ``n`` in port order."""
    preds = [(g.edges[p, n]["port"], p) for p in g.predecessors(n)]
    return [p for _, p in sorted(preds)]


# ---------------------------------------------------------------------------
# float execution of the IR (checks import, collects calibration ranges)
# ---------------------------------------------------------------------------


def apply_act(x: Any, act: str) -> Any:
    """A fused activation on float values (torch tensors or numpy arrays)."""
    if act == "relu":
        return x.clip(0.0, None)
    if act == "relu6":
        return x.clip(0.0, 6.0)
    if act == "hswish":
        return x * (x + 3.0).clip(0.0, 6.0) / 6.0
    if act == "hsigmoid":
        return (x + 3.0).clip(0.0, 6.0) / 6.0
    return x


def run_float(g: nx.DiGraph, x: torch.Tensor, keep: bool = False) -> Any:
    """Run the IR in float (NCHW torch tensors). Returns the output, or every
    tensor by name when ``keep`` is true (then a layer with a table activation
    also gives its pre-activation values as ``"<name>@pre"``)."""
    vals: Dict[str, torch.Tensor] = {}
    x = torch.as_tensor(x, dtype=torch.float64)
    for n in g.graph["order"]:
        d = g.nodes[n]
        ins = [vals[p] for p in inputs_of(g, n)]
        op = d["op"]
        if op == "input":
            y = x
        elif op in CONV_OPS:
            groups = ins[0].shape[1] if op == "dwconv" else 1
            y = F.conv2d(ins[0], torch.from_numpy(d["weight"]), torch.from_numpy(d["bias"]), d["stride"], d["padding"], 1, groups)
        elif op == "linear":
            flat = ins[0].permute(0, 2, 3, 1).reshape(ins[0].shape[0], -1)
            y = (flat @ torch.from_numpy(d["weight"]).T + torch.from_numpy(d["bias"]))[:, :, None, None]
        elif op == "add":
            y = ins[0] + ins[1]
        elif op == "mul":
            y = ins[0] * ins[1]
        elif op == "concat":
            y = torch.cat(ins, 1)
        elif op == "avgpool":
            y = F.avg_pool2d(ins[0], d["kernel"], d["stride"])
        elif op == "global_avgpool":
            y = ins[0].mean((2, 3), keepdim=True)
        elif op == "relu":
            y = ins[0]
        else:  # pragma: no cover
            raise AssertionError(op)
        if keep and d["act"] in LUT_ACTS:
            vals[f"{n}@pre"] = y
        vals[n] = apply_act(y, d["act"])
    if keep:
        return vals
    return vals[g.graph["output"]].reshape(x.shape[0], -1)


def macs_of(g: nx.DiGraph, n: str, out_hw: Optional[Tuple[int, int]] = None) -> int:
    """Multiply-accumulates of layer ``n`` (for an output region of ``out_hw``
    pixels when given, else the whole output)."""
    d = g.nodes[n]
    c, h, w = d["shape"]
    if out_hw is not None:
        h, w = out_hw
    op = d["op"]
    if op in ("conv", "pwconv"):
        cin = d["weight"].shape[1]
        return c * h * w * cin * d["kernel"] ** 2
    if op == "dwconv":
        return c * h * w * d["kernel"] ** 2
    if op == "linear":
        return int(d["weight"].size)
    return 0


def elements_of(g: nx.DiGraph, n: str, out_hw: Optional[Tuple[int, int]] = None) -> int:
    """Elementwise work of non-MAC layers (adds, pooling reads, concat copies)."""
    d = g.nodes[n]
    c, h, w = d["shape"]
    if out_hw is not None:
        h, w = out_hw
    op = d["op"]
    if op in ("add", "mul", "concat", "relu"):
        return c * h * w
    if d.get("act") in LUT_ACTS:  # one table lookup per output value
        return c * h * w
    if op == "avgpool":
        return c * h * w * d["kernel"] ** 2
    if op == "global_avgpool":
        src = inputs_of(g, n)[0]
        return int(np.prod(g.nodes[src]["shape"]))
    return 0
