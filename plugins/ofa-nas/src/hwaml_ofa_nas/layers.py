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
  :class:`torch.utils.flop_counter.FlopCounterMode`: each layer counted once
  per process (remembered by its key) plus what the network's own ``forward``
  runs between its layers, counted in the same pass, which equals counting
  the whole forward pass at once (``whole=True``) at half the cost.

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
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


_SIMPLE = (bool, int, float, str, tuple, type(None))


def layer_key(module: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int]) -> str:
    """``Type:in->out:digest``; the digest covers the module's class, its printed
    structure (every sub-module with its sizes, kernels, strides, activations),
    every sub-module's plain attributes (flags such as a residual switch that
    ``forward`` reads) and the shapes and dtypes of its parameters and buffers."""
    tensors = ";".join(f"{n}:{tuple(t.shape)}:{t.dtype}" for n, t in list(module.named_parameters()) + list(module.named_buffers()))
    attrs = ";".join(
        f"{n}.{k}={v!r}" for n, m in module.named_modules() for k, v in sorted(vars(m).items()) if not k.startswith("_") and k != "training" and isinstance(v, _SIMPLE)
    )
    sig = f"{type(module).__module__}.{type(module).__qualname__}\n{module!r}\n{tensors}\n{attrs}"
    digest = hashlib.sha1(sig.encode()).hexdigest()[:12]
    return f"{type(module).__name__}:{_dims(input_shape)}->{_dims(output_shape)}:{digest}"


class _Glue:
    """FLOPs of the operations a network's own ``forward`` runs between its direct
    children (counted with ``FlopCounterMode`` only while no child is running)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.flops = 0
        self._counter: Any = None

    def start(self) -> None:
        if self.enabled and self._counter is None:
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    def stop(self) -> None:
        if self._counter is not None:
            counter, self._counter = self._counter, None
            counter.__exit__(None, None, None)
            self.flops += int(counter.get_total_flops())


def _trace(module: nn.Module, input_shape: Sequence[int], count_glue: bool = False) -> Tuple[_Call, int]:
    """The call tree of one forward pass (and, with ``count_glue``, the FLOPs run
    by the root's own ``forward`` outside its children)."""
    names = {m: n for n, m in module.named_modules()}
    root = _Call(module, "", tuple(input_shape))
    stack = [root]
    handles = []
    glue = _Glue(count_glue)

    def pre(m: nn.Module, args: Tuple[Any, ...], kwargs: dict) -> None:
        if len(stack) == 1:
            glue.stop()
        shape = _shape(args[0]) if len(args) == 1 and not kwargs else None
        call = _Call(m, names.get(m, type(m).__name__), shape)
        stack[-1].children.append(call)
        stack.append(call)

    def post(m: nn.Module, args: Tuple[Any, ...], kwargs: dict, out: Any) -> None:
        stack.pop().output_shape = _shape(out)
        if len(stack) == 1:
            glue.start()

    for m in module.modules():
        if m is not module:
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
    was_training = module.training
    if was_training:
        module.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(*input_shape)
            glue.start()
            root.output_shape = _shape(module(x))
    finally:
        glue.stop()
        for h in handles:
            h.remove()
        if was_training:
            module.train()
    return root, glue.flops


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
    root, _ = _trace(module, shape)
    return _layers(root)


def _layers(root: _Call) -> List[Layer]:
    out = []
    for u in _units(root, True):
        kind = type(u.module).__name__
        out.append(Layer(u.name or kind, layer_key(u.module, u.input_shape, u.output_shape), kind, u.input_shape, u.output_shape, u.module))
    return out


def _counted_macs(module: nn.Module, shape: Sequence[int]) -> int:
    """``FlopCounterMode`` FLOPs / 2 of one forward pass at ``shape`` (batch included)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    if was_training:
        module.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            module(torch.zeros(*shape))
    finally:
        if was_training:
            module.train()
    return int(counter.get_total_flops()) // 2


#: MACs of layers by key (a key names a layer's structure and shapes, which decide its MACs)
_LAYER_MACS: Dict[str, int] = {}


def module_macs(module: nn.Module, input_shape: Sequence[int], whole: bool = False) -> int:
    """Multiply-accumulates of one batch-1 forward pass of ``module`` (eval mode)
    at ``input_shape`` (``(C, H, W)``): ``FlopCounterMode``'s FLOPs halved (see
    the module doc for what counts).

    By default the count is assembled from the network's layers
    (:func:`decompose`), each counted once per process and remembered by its
    key, plus what the network's own ``forward`` runs between them (counted in
    the same pass); ``whole=True`` counts the whole forward pass at once. Both
    give the same number (tested); the layered count costs one forward pass with
    hooks instead of one under the counter."""
    shape = (1,) + tuple(int(s) for s in input_shape)
    if whole:
        return _counted_macs(module, shape)
    root, glue_flops = _trace(module, shape, count_glue=True)
    layers = _layers(root)
    if len(layers) == 1 and layers[0].module is module:  # not decomposable: count it whole
        return _counted_macs(module, shape)
    if len(_LAYER_MACS) > 100_000:
        _LAYER_MACS.clear()
    total = glue_flops // 2
    for layer in layers:
        if layer.key not in _LAYER_MACS:
            _LAYER_MACS[layer.key] = _counted_macs(layer.module, layer.input_shape)
        total += _LAYER_MACS[layer.key]
    return total


def module_params(module: nn.Module) -> int:
    """Parameters of ``module`` (batch-norm scale and shift included; buffers not)."""
    return int(sum(p.numel() for p in module.parameters()))
