"""Compression stages: gradual magnitude pruning and quantization-aware training.

* :class:`GradualPruner`: Zhu & Gupta (2017) automated gradual pruning. Every
  ``frequency`` steps between ``begin`` and ``end`` each prunable tensor is
  pruned, by magnitude, to

      s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n dt))^3

  (fast at first, slowly near the target ``s_f``); pruned weights stay zero
  (the mask is applied in the forward pass and after every optimizer step).
  Prunable: every weight matrix (linear layers and embedding tables, the tied
  output weights included); biases, LayerNorms, position tables and cache
  parameters stay dense.
* :func:`enable_quantization`: symmetric per-tensor fake quantization to
  ``bits`` of every weight matrix, embedding table, position table and the
  inputs of every matrix product with a weight (straight-through gradients), as
  the submission's 9-bit quantization-aware training did.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from .model import MaskedEmbedding, MaskedLinear, MicroNetLM

__all__ = ["prunable", "GradualPruner", "zhu_gupta_sparsity", "prune_to", "enable_quantization", "sparsity_of"]


def prunable(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """Modules whose ``weight`` is pruned (each shared table once)."""
    seen = set()
    for name, m in model.named_modules():
        if isinstance(m, (MaskedLinear, MaskedEmbedding)) and id(m) not in seen:
            seen.add(id(m))
            yield name, m


def zhu_gupta_sparsity(step: int, final: float, initial: float = 0.0, begin: int = 0, end: int = 1) -> float:
    """The cubic schedule's sparsity at ``step``."""
    if step <= begin:
        return initial if step == begin else 0.0
    if step >= end:
        return final
    frac = (step - begin) / max(1, end - begin)
    return final + (initial - final) * (1.0 - frac) ** 3


@torch.no_grad()
def prune_to(module: nn.Module, sparsity: float) -> None:
    """Set ``module.weight_mask`` so that the ``sparsity`` fraction of smallest-magnitude weights are zero.

    Already-pruned weights stay pruned (their magnitude is 0)."""
    w = module.weight
    if module.weight_mask is not None:
        w = w * module.weight_mask
    k = int(round(sparsity * w.numel()))
    if k <= 0:
        return
    order = w.abs().reshape(-1).argsort()
    mask = torch.ones(w.numel(), dtype=w.dtype, device=w.device)
    mask[order[:k]] = 0
    module.weight_mask = mask.view_as(w)
    module.weight.mul_(module.weight_mask)


def sparsity_of(model: nn.Module) -> float:
    """Fraction of zero weights over the prunable tensors."""
    total = zeros = 0
    for _, m in prunable(model):
        total += m.weight.numel()
        if m.weight_mask is not None:
            zeros += int((m.weight_mask == 0).sum())
    return zeros / max(1, total)


class GradualPruner:
    """Zhu & Gupta's schedule over optimizer steps; call :meth:`step` after each optimizer step."""

    def __init__(self, model: nn.Module, final_sparsity: float, begin: int, end: int, frequency: int = 10, initial_sparsity: float = 0.0):
        if not 0.0 <= final_sparsity < 1.0:
            raise ValueError(f"target sparsity must be in [0, 1), got {final_sparsity}")
        if end <= begin or frequency < 1:
            raise ValueError(f"pruning needs end > begin and frequency >= 1 (begin={begin}, end={end}, frequency={frequency})")
        self.model, self.final, self.initial = model, float(final_sparsity), float(initial_sparsity)
        self.begin, self.end, self.frequency = int(begin), int(end), int(frequency)
        self.current = 0.0

    @torch.no_grad()
    def step(self, step: int) -> float:
        on_schedule = self.begin <= step <= self.end and ((step - self.begin) % self.frequency == 0 or step == self.end)
        if on_schedule:
            target = zhu_gupta_sparsity(step, self.final, self.initial, self.begin, self.end)
            if target > self.current:
                for _, m in prunable(self.model):
                    prune_to(m, target)
                self.current = target
        for _, m in prunable(self.model):
            if m.weight_mask is not None:
                m.weight.mul_(m.weight_mask)
        return self.current


def enable_quantization(model: MicroNetLM, bits: Optional[int]) -> None:
    """Fake-quantize the model to ``bits`` (None: back to float)."""
    if bits is not None and not 2 <= int(bits) <= 16:
        raise ValueError(f"quantization bits must be in [2, 16], got {bits}")
    for m in model.modules():
        if hasattr(m, "bits"):
            m.bits = None if bits is None else int(bits)
    model.quant_bits = None if bits is None else int(bits)
