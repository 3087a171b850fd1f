"""Measured training memory of one real training step.

``saved_bytes``: every tensor autograd keeps for backward, counted exactly with
``torch.autograd.graph.saved_tensors_hooks`` (each storage once; parameters and
buffers excluded, they are counted as parameter bytes). ``param_bytes``: the
storage of the parameters and buffers as held (uint8 codes for frozen weights in
memory-saving mode), ``grad_bytes`` and ``optimizer_bytes`` (Adam's two moments)
after the step. ``rss_peak_delta_bytes``: the process's peak resident set growth
during the step (Linux: ``/proc/self/clear_refs`` resets the high-water mark;
``None`` where that is not possible).
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .memsave import to_memory_saving
from .quantize import Codebook

__all__ = ["StepMemory", "measure_training_step"]


@dataclass
class StepMemory:
    batch_size: int
    memory_saving: bool
    saved_bytes: int
    saved_tensors: int
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    rss_peak_delta_bytes: Optional[int]

    @property
    def total_bytes(self) -> int:
        return self.saved_bytes + self.param_bytes + self.grad_bytes + self.optimizer_bytes

    def summary(self) -> Dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def _status_kb(field: str) -> Optional[int]:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _storage_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def measure_training_step(
    net: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 8,
    memory_saving: bool = True,
    books: Optional[Dict[str, Codebook]] = None,
    seed: int = 0,
    lr: float = 1e-3,
    recompute: bool = False,
) -> StepMemory:
    """One Adam step of ``net`` (a copy; trainable set from ``requires_grad``) on a
    random batch, with its memory counted (see the module docstring). ``recompute``:
    memory-saving mode with block recomputation (the blocks' inputs are what is saved)."""
    if recompute and not memory_saving:
        raise ValueError("recompute is a variant of the memory-saving mode; set memory_saving=True")
    model = to_memory_saving(net, books, recompute=recompute, input_shape=input_shape) if memory_saving else copy.deepcopy(net)
    model.train()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *input_shape, generator=g)
    with torch.no_grad():
        n_out = model.eval()(x[:1]).shape[1]
    model.train()
    y = torch.randint(0, n_out, (batch_size,), generator=g)
    held = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    saved: Dict[int, int] = {}
    count = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal count
        s = t.untyped_storage()
        if s.data_ptr() not in held:
            saved[s.data_ptr()] = s.nbytes()
            count += 1
        return t

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"{type(net).__name__} has no trainable parameters: nothing to measure a training step of")
    opt = torch.optim.Adam(trainable, lr=lr, weight_decay=0.0)
    rss_before = _status_kb("VmRSS")
    can_reset = _reset_peak_rss()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    hwm = _status_kb("VmHWM")
    rss_delta = (hwm - rss_before) * 1024 if can_reset and hwm is not None and rss_before is not None else None
    param_bytes = _storage_bytes(list(model.parameters()) + list(model.buffers()))
    grad_bytes = _storage_bytes([p.grad for p in trainable if p.grad is not None])
    opt_bytes = _storage_bytes([v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor) and v.dim() > 0])
    return StepMemory(batch_size, memory_saving, sum(saved.values()), count, param_bytes, grad_bytes, opt_bytes, rss_delta)
