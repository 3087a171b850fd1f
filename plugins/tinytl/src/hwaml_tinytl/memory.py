"""The analytic training-memory model of the TinyTL paper, for any network.

Parameters: trainable ones at 32 bits, frozen ones at ``frozen_bits`` (8).
Activations saved for backward, per layer (only where a gradient flows, i.e.
the layer's output requires a gradient):

- convolution / linear: its input, only if its weight trains;
- norm: its input, only if its scale trains (``norm_rule="paper"``);
  ``norm_rule="exact"`` also counts a norm whose input needs a gradient (a
  per-sample normalisation cannot pass a gradient back without its normalised
  input) and its per-group statistics: what the memory-saving mode saves;
- ReLU / ReLU6 / dropout: 1 bit per element; sigmoid, h-swish, SiLU, GELU: their
  full input; pooling, additions, upsampling, reshapes: nothing.

Peak activation memory (``peak_rule``):

- ``paper`` (default): the published profiler's accounting. The peak is taken over
  the forward pass: the tensors saved so far, plus the layer's working memory, plus
  the inputs of residual blocks still open. A layer's working memory is, as
  published, a convolution's input plus its output divided by its groups (a
  depthwise convolution runs channel by channel), a linear layer's input plus output,
  a norm's or an activation's input (they run in place) and nothing for pooling,
  dropout, upsampling and additions. Where this plugin differs from the published
  profiler, it counts more: the input of a lite residual module stays open while
  its main branch runs also when the block has no identity shortcut (the lite
  branch reads it afterwards).
- ``schedule``: a stricter walk of the whole forward/backward schedule: during forward
  the saved tensors so far, the layer's full input and output (nothing in place) and
  the open residual inputs; during backward the saved tensors not yet released, the
  gradients in and out of the layer and the open residual gradients.

Training memory = parameter bytes + peak activation bytes. Batch size is a parameter
(one traced forward at batch 1; activations scale with the batch).

Layers are found by forward hooks on leaf modules, so the profile covers what
runs as modules; element-wise functional products (squeeze-excite's ``x * s``)
are not modelled and are listed in ``unmodelled`` when their modules are seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .lite_residual import LiteResidualModule
from .methods import NORM_TYPES

__all__ = ["LayerRecord", "MemoryProfile", "profile_training_memory", "NORM_RULES", "PEAK_RULES"]

NORM_RULES = ("paper", "exact")
PEAK_RULES = ("paper", "schedule")
FULL_INPUT_ACTS = (nn.Sigmoid, nn.Hardswish, nn.SiLU, nn.GELU, nn.Tanh, nn.Hardsigmoid)
ONE_BIT_ACTS = (nn.ReLU, nn.ReLU6)
NOTHING = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Flatten, nn.Upsample)
FP = 4  # bytes of an fp32 activation


@dataclass
class LayerRecord:
    name: str
    kind: str
    in_numel: int  #: per sample
    out_numel: int
    in_requires_grad: bool
    out_requires_grad: bool
    saved_fp: int = 0  #: fp32 elements saved per sample
    saved_bits: int = 0  #: 1-bit elements saved per sample
    saved_stats: int = 0  #: fp32 statistics saved per sample (norm mean / rstd)
    work: int = 0  #: fp32 working elements per sample under the published profiler's rule

    def saved_bytes(self, batch: int) -> int:
        return FP * (self.saved_fp + self.saved_stats) * batch + math.ceil(self.saved_bits * batch / 8)


@dataclass
class MemoryProfile:
    batch_size: int
    frozen_bits: int
    norm_rule: str
    peak_rule: str
    trainable_params: int
    frozen_params: int
    weight_bytes: int
    saved_bytes: int  #: everything saved for backward at the end of forward
    peak_activation_bytes: int
    layers: List[LayerRecord] = field(default_factory=list)
    unmodelled: List[str] = field(default_factory=list)

    @property
    def train_memory_bytes(self) -> int:
        return self.weight_bytes + self.peak_activation_bytes

    def summary(self) -> Dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "norm_rule": self.norm_rule,
            "peak_rule": self.peak_rule,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "weight_bytes": self.weight_bytes,
            "saved_bytes": self.saved_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "train_memory_bytes": self.train_memory_bytes,
            "unmodelled": list(self.unmodelled),
        }


def _numel(t: Any) -> int:
    return int(t[0].numel()) if isinstance(t, torch.Tensor) and t.dim() > 0 else 0


def _rule(m: nn.Module, rec: LayerRecord, norm_rule: str, training: bool) -> Optional[str]:
    """Fill ``rec.saved_*`` for module ``m``; returns a reason when the type is not modelled."""
    if not rec.out_requires_grad:
        return None
    if isinstance(m, (nn.Conv2d, nn.Linear)) or hasattr(m, "weight_codes"):
        w = getattr(m, "weight", None)
        if w is not None and w.requires_grad:
            rec.saved_fp = rec.in_numel
        return None
    if isinstance(m, NORM_TYPES):
        scale = getattr(m, "weight", None)
        scale_trains = scale is not None and scale.requires_grad
        if scale_trains or (norm_rule == "exact" and rec.in_requires_grad):
            rec.saved_fp = rec.in_numel
            if norm_rule == "exact":
                groups = m.num_groups if isinstance(m, nn.GroupNorm) else 1
                rec.saved_stats = 2 * groups if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) else 0
        return None
    if isinstance(m, ONE_BIT_ACTS) or type(m).__name__ == "MemReLU":
        rec.saved_bits = rec.in_numel
        return None
    if isinstance(m, nn.Dropout) or type(m).__name__ == "MemDropout":
        if training and getattr(m, "p", 0.0) > 0:
            rec.saved_bits = rec.in_numel
        return None
    if isinstance(m, FULL_INPUT_ACTS):
        rec.saved_fp = rec.in_numel
        return None
    if isinstance(m, NOTHING) or type(m).__name__ == "MemAvgPool":
        return None
    return f"{rec.name} ({type(m).__name__})"


def _work(m: nn.Module, rec: LayerRecord) -> int:
    """Working memory (elements per sample) of a layer as the published profiler counts it."""
    if isinstance(m, (nn.Conv2d, nn.Linear)) or hasattr(m, "weight_codes"):
        groups = int(getattr(m, "groups", 1) or 1)
        return rec.in_numel + rec.out_numel // groups
    if isinstance(m, NORM_TYPES) or type(m).__name__ == "MemGroupNorm":
        return rec.in_numel
    if isinstance(m, ONE_BIT_ACTS + FULL_INPUT_ACTS) or type(m).__name__ == "MemReLU":
        return rec.in_numel
    return 0


def _residual_owner(m: nn.Module) -> bool:
    """Modules whose input stays alive until their end (a skip or a second branch reads it)."""
    if isinstance(m, LiteResidualModule):
        return True
    return bool(getattr(m, "residual", False) is True or getattr(m, "use_res_connect", False) is True)


def _param_bytes(net: nn.Module, frozen_bits: int) -> Tuple[int, int, int]:
    trainable = frozen = 0
    for p in net.parameters():
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    codes = sum(int(b.numel()) for n, b in net.named_buffers() if n.endswith("weight_codes"))
    frozen += codes
    return trainable, frozen, FP * trainable + math.ceil(frozen * frozen_bits / 8)


def profile_training_memory(
    net: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 8,
    frozen_bits: int = 8,
    norm_rule: str = "paper",
    recompute: bool = False,
    peak_rule: str = "paper",
) -> MemoryProfile:
    """The analytic training memory of one step of ``net`` with its current
    ``requires_grad`` flags (see the module docstring for the rules).

    ``recompute``: the memory-saving mode's block recomputation. Each mobile block
    keeps only its input (fp32) through the step, and its own saved tensors exist
    only while its backward runs (they count in the peak, not in ``saved_bytes``;
    recomputation is costed on the ``schedule`` walk, which has a backward pass)."""
    if norm_rule not in NORM_RULES:
        raise ValueError(f"norm_rule {norm_rule!r} is not one of {NORM_RULES}")
    if peak_rule not in PEAK_RULES:
        raise ValueError(f"peak_rule {peak_rule!r} is not one of {PEAK_RULES}")
    if recompute and peak_rule != "schedule":
        raise ValueError("recompute: true is costed on the forward/backward walk; use peak_rule='schedule'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    records: List[LayerRecord] = []
    unmodelled: List[str] = []
    spans: Dict[int, List[int]] = {}  # input storage -> [first layer index, last layer index, input numel]
    open_spans: Dict[int, Tuple[int, int, int]] = {}
    names = {m: n for n, m in net.named_modules()}
    handles = []
    training = net.training

    def leaf_post(m, args, out):
        x = args[0] if args else None
        rec = LayerRecord(
            names[m],
            type(m).__name__,
            _numel(x),
            _numel(out),
            bool(isinstance(x, torch.Tensor) and x.requires_grad),
            bool(isinstance(out, torch.Tensor) and out.requires_grad),
        )
        why = _rule(m, rec, norm_rule, training)
        rec.work = _work(m, rec)
        if why:
            unmodelled.append(why)
        records.append(rec)
        owners.append(block_of.get(id(m), -1))

    def span_pre(m, args):
        x = args[0] if args else None
        ptr = x.untyped_storage().data_ptr() if isinstance(x, torch.Tensor) else id(m)
        open_spans[id(m)] = (len(records), _numel(x), ptr)

    def span_post(m, args, out):
        start, numel, ptr = open_spans.pop(id(m))
        if len(records) > start:
            # nested owners reading the same input (a block and its wrapped main branch) hold it once
            span = spans.setdefault(ptr, [start, len(records) - 1, numel])
            span[0], span[1] = min(span[0], start), max(span[1], len(records) - 1)

    block_of: Dict[int, int] = {}  # id(module) -> recomputed block index
    block_inputs: Dict[int, Tuple[int, bool]] = {}
    if recompute:
        from .memsave import recompute_paths

        for i, path in enumerate(recompute_paths(net, input_shape)):
            block = net.get_submodule(path)
            for m in block.modules():
                block_of[id(m)] = i

            def block_pre(m, args, i=i):
                x = args[0]
                block_inputs[i] = (_numel(x), bool(x.requires_grad))

            def block_post(m, args, out, i=i):
                numel, x_grad = block_inputs[i]
                params = any(p.requires_grad for p in m.parameters())
                block_inputs[i] = (numel if (x_grad or params) else 0, x_grad)

            handles.append(block.register_forward_pre_hook(block_pre))
            handles.append(block.register_forward_hook(block_post))
    owners: List[int] = []
    inside_pool = {id(c) for m in net.modules() if type(m).__name__ == "MemAvgPool" for c in m.children()}
    for m in net.modules():
        is_leaf = (not list(m.children()) and id(m) not in inside_pool) or type(m).__name__ == "MemAvgPool"
        if is_leaf and m is not net:
            handles.append(m.register_forward_hook(leaf_post))
        elif _residual_owner(m):
            handles.append(m.register_forward_pre_hook(span_pre))
            handles.append(m.register_forward_hook(span_post))
    # batch norm cannot normalise one sample of a 1x1 map in training mode; the trace
    # needs shapes only, so batch-norm layers run on their running statistics here
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    try:
        for m in bns:
            m.eval()
        with torch.enable_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        for m in bns:
            m.train()
        for h in handles:
            h.remove()

    b = int(batch_size)
    saved = [r.saved_bytes(b) for r in records]
    if recompute:
        # inside a recomputed block nothing stays; the block's input does (counted at its first layer)
        transient = {}
        for i, o in enumerate(owners):
            if o >= 0:
                transient[o] = transient.get(o, 0) + saved[i]
                saved[i] = 0
        first = {}
        for i, o in enumerate(owners):
            if o >= 0 and o not in first:
                first[o] = i
                saved[i] = FP * block_inputs.get(o, (0, False))[0] * b
    total_saved = sum(saved)
    n = len(records)
    open_in = [0] * n
    for start, end, numel in spans.values():
        for i in range(start + 1, end + 1):
            open_in[i] += FP * numel * b
    peak = 0
    cum = 0
    if peak_rule == "paper":
        for i, r in enumerate(records):  # forward only, in-place norms / activations, grouped convs per group
            peak = max(peak, cum + FP * b * r.work + open_in[i])
            cum += saved[i]
        trainable, frozen, weight_bytes = _param_bytes(net, frozen_bits)
        return MemoryProfile(b, frozen_bits, norm_rule, peak_rule, trainable, frozen, weight_bytes, total_saved, peak, records, unmodelled)
    for i, r in enumerate(records):  # forward
        peak = max(peak, cum + FP * b * (r.in_numel + r.out_numel) + open_in[i])
        cum += saved[i]
    for i in range(n - 1, -1, -1):  # backward: layer i's saved tensors are released after its step
        r = records[i]
        grads = FP * b * ((r.out_numel if r.out_requires_grad else 0) + (r.in_numel if r.in_requires_grad else 0))
        again = transient.get(owners[i], 0) if recompute and owners[i] >= 0 else 0  # the block run again
        peak = max(peak, cum + again + grads + (open_in[i] if r.out_requires_grad else 0))
        cum -= saved[i]
    trainable, frozen, weight_bytes = _param_bytes(net, frozen_bits)
    return MemoryProfile(b, frozen_bits, norm_rule, peak_rule, trainable, frozen, weight_bytes, total_saved, peak, records, unmodelled)
