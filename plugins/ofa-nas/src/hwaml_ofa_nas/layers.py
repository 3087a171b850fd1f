"""Any network as a list of measurable layers, and its MACs and parameters.

Cost backends cost the evaluator's network (``BuiltModel.module``) and nothing
else, so they need to see inside a module they did not build:

* :func:`decompose` runs one batch-1 forward pass with hooks on every
  sub-module and returns the *layers* of the network in call order, each with
  its input and output shapes and a key naming its type, its structure and its
  shapes (what a latency table is indexed by). A layer is a sub-module the
  network's own ``forward`` calls (``stem``, ``blocks.3``, ``head`` of an OFA
  sub-network); a plain ``nn.Sequential`` of blocks (``features`` of a
  torchvision MobileNet) is opened up into its blocks, while a ``Sequential`` of
  primitive layers (conv, BN, activation) stays one layer.
* :func:`module_macs` counts multiply-accumulates with
  :class:`torch.utils.flop_counter.FlopCounterMode`.

What a MAC is here: one multiply-accumulate of a convolution, a linear layer,
a matrix product or attention, which is what ``FlopCounterMode`` counts (two
FLOPs each); element-wise work (activations, batch norm, the gating multiply
of squeeze-excite, pooling, residual additions) counts zero. Squeeze-excite's
own 1x1 convolutions are convolutions and count. On OFA sub-networks this is
exactly :func:`hwaml_ofa_nas.predictors.count_macs` (tested).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["Layer", "decompose", "layer_key", "module_macs", "module_params"]


@dataclass(frozen=True)
class Layer:
    """One measurable piece of a network: ``module`` called on ``input_shape``
    (batch included) giving ``output_shape``; ``key`` identifies its type,
    structure and shapes; ``name`` is its qualified name in the network."""

    name: str
    key: str
    kind: str
    input_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]
    module: nn.Module = field(compare=False, repr=False)


@dataclass
class _Call:
    module: nn.Module
    name: str
    input_shape: Optional[Tuple[int, ...]]  # None: not one plain tensor argument (cannot be timed alone)
    output_shape: Optional[Tuple[int, ...]] = None
    children: List["_Call"] = field(default_factory=list)

    @property
    def isolatable(self) -> bool:
        return self.input_shape is not None and self.output_shape is not None


def _shape(x: Any) -> Optional[Tuple[int, ...]]:
    return tuple(int(s) for s in x.shape) if isinstance(x, torch.Tensor) else None


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def layer_key(module: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int]) -> str:
    """``Type:in->out:digest``; the digest covers the module's class, its printed
    structure (every sub-module with its sizes, kernels, strides, activations)
    and the shapes and dtypes of its parameters and buffers."""
    tensors = ";".join(f"{n}:{tuple(t.shape)}:{t.dtype}" for n, t in list(module.named_parameters()) + list(module.named_buffers()))
    sig = f"{type(module).__module__}.{type(module).__qualname__}\n{module!r}\n{tensors}"
    digest = hashlib.sha1(sig.encode()).hexdigest()[:12]
    return f"{type(module).__name__}:{_dims(input_shape)}->{_dims(output_shape)}:{digest}"


def _trace(module: nn.Module, input_shape: Sequence[int]) -> _Call:
    names = {m: n for n, m in module.named_modules()}
    root = _Call(module, "", tuple(input_shape))
    stack = [root]
    handles = []

    def pre(m: nn.Module, args: Tuple[Any, ...], kwargs: dict) -> None:
        shape = _shape(args[0]) if len(args) == 1 and not kwargs else None
        call = _Call(m, names.get(m, type(m).__name__), shape)
        stack[-1].children.append(call)
        stack.append(call)

    def post(m: nn.Module, args: Tuple[Any, ...], kwargs: dict, out: Any) -> None:
        stack.pop().output_shape = _shape(out)

    for m in module.modules():
        if m is not module:
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
    was_training = module.training
    if was_training:
        module.eval()
    try:
        with torch.no_grad():
            root.output_shape = _shape(module(torch.zeros(*input_shape)))
    finally:
        for h in handles:
            h.remove()
        if was_training:
            module.train()
    return root


def _is_block_sequence(call: _Call) -> bool:
    """A plain ``nn.Sequential`` whose called children are blocks (modules with
    sub-modules of their own), not primitive layers."""
    return type(call.module) is nn.Sequential and bool(call.children) and all(any(True for _ in c.module.children()) for c in call.children)


def _units(call: _Call, root: bool) -> List[_Call]:
    if call.children and (root or _is_block_sequence(call)) and all(c.isolatable for c in call.children):
        return [u for c in call.children for u in _units(c, False)]
    return [call]


def decompose(module: nn.Module, input_shape: Sequence[int], batch: int = 1) -> List[Layer]:
    """The layers of ``module`` (in eval mode) for one batch of ``input_shape``
    (``(C, H, W)``, without the batch dimension), in call order; a sub-module
    called twice is two layers."""
    shape = (int(batch),) + tuple(int(s) for s in input_shape)
    root = _trace(module, shape)
    out = []
    for u in _units(root, True):
        kind = type(u.module).__name__
        out.append(Layer(u.name or kind, layer_key(u.module, u.input_shape, u.output_shape), kind, u.input_shape, u.output_shape, u.module))
    return out


def module_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one batch-1 forward pass of ``module`` (eval mode)
    at ``input_shape`` (``(C, H, W)``): ``FlopCounterMode``'s FLOPs halved (see
    the module doc for what counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    if was_training:
        module.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            module(torch.zeros((1,) + tuple(int(s) for s in input_shape)))
    finally:
        if was_training:
            module.train()
    return int(counter.get_total_flops()) // 2


def module_params(module: nn.Module) -> int:
    """Parameters of ``module`` (batch-norm scale and shift included; buffers not)."""
    return int(sum(p.numel() for p in module.parameters()))
