"""``backend=tinytl_memory``: the training memory of a candidate at a batch size.

It costs the evaluator's network (``ctx.build_model(candidate).module``) with the
trainable set the evaluator gave it (``requires_grad``; an evaluator that does
not choose one trains everything, i.e. FT-Full):

- ``mode: analytic`` (default): the paper's model (:mod:`hwaml_tinytl.memory`);
- ``mode: measured``: one real training step in the memory-saving mode, its
  saved-for-backward bytes counted with ``saved_tensors_hooks``, plus parameter,
  gradient and Adam-state bytes (:mod:`hwaml_tinytl.measure`); frozen weights are
  quantised to 8 bits first, as in training.

Metrics: ``train_memory_kb`` (weights + peak activations, analytic; parameters +
saved tensors + gradients + optimizer state, measured), ``train_activation_kb``
(saved for backward), ``train_weights_kb``.
"""

from __future__ import annotations

import copy
from typing import List

from hwaml import Candidate, CostReport, RunContext, hookimpl

from .measure import measure_training_step
from .memory import NORM_RULES, PEAK_RULES, profile_training_memory
from .quantize import quantize_frozen_weights

__all__ = ["TinyTLMemoryBackend"]

MODES = ("analytic", "measured")


class TinyTLMemoryBackend:
    """Training memory of the evaluator's network.

    :param batch_size: training batch size the memory is for.
    :param mode: ``analytic`` or ``measured``.
    :param norm_rule: analytic rule for norms (``paper`` or ``exact``; see :mod:`hwaml_tinytl.memory`).
    :param frozen_bits: storage bits of frozen parameters (8: k-means codes).
    :param recompute: cost the memory-saving mode with block recomputation (each mobile
        block keeps only its input; analytic and measured alike; analytic needs
        ``peak_rule: schedule``, the walk with a backward pass).
    :param peak_rule: analytic peak (``paper``: the published profiler's forward-pass
        accounting; ``schedule``: the stricter forward/backward walk; see :mod:`hwaml_tinytl.memory`).
    """

    def __init__(
        self, batch_size: int = 8, mode: str = "analytic", norm_rule: str = "paper", frozen_bits: int = 8, recompute: bool = False,
        peak_rule: str = "paper", name: str = "tinytl_memory",
    ):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        if norm_rule not in NORM_RULES:
            raise ValueError(f"norm_rule {norm_rule!r} is not one of {NORM_RULES}")
        if peak_rule not in PEAK_RULES:
            raise ValueError(f"peak_rule {peak_rule!r} is not one of {PEAK_RULES}")
        if mode == "analytic" and recompute and peak_rule != "schedule":
            raise ValueError("tinytl_memory: recompute: true is costed on the forward/backward walk; set peak_rule: schedule")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if mode == "measured" and frozen_bits != 8:
            raise ValueError("mode measured stores frozen weights as 8-bit k-means codes; frozen_bits must be 8")
        self.batch_size, self.mode, self.norm_rule, self.frozen_bits, self.name = int(batch_size), mode, norm_rule, int(frozen_bits), name
        self.recompute = bool(recompute)
        self.peak_rule = peak_rule

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["train_memory_kb", "train_activation_kb", "train_weights_kb"]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        if ctx.build_model is None:
            raise RuntimeError(f"{self.name}: the run's evaluator builds no network (ctx.build_model is None); tinytl_memory costs an NN evaluator's model")
        built = ctx.build_model(candidate)
        shape = tuple(built.input_shape)
        net = copy.deepcopy(built.module).train()
        if self.mode == "analytic":
            prof = profile_training_memory(net, shape, self.batch_size, self.frozen_bits, self.norm_rule, recompute=self.recompute, peak_rule=self.peak_rule)
            metrics = {
                "train_memory_kb": prof.train_memory_bytes / 1024,
                "train_activation_kb": prof.saved_bytes / 1024,
                "train_weights_kb": prof.weight_bytes / 1024,
            }
            info = {k: v for k, v in prof.summary().items() if k != "unmodelled"}
            info["unmodelled"] = prof.unmodelled[:20]
        else:
            books = quantize_frozen_weights(net)
            step = measure_training_step(net, shape, self.batch_size, memory_saving=True, books=books, seed=0, recompute=self.recompute)
            metrics = {
                "train_memory_kb": step.total_bytes / 1024,
                "train_activation_kb": step.saved_bytes / 1024,
                "train_weights_kb": step.param_bytes / 1024,
            }
            info = step.summary()
        return CostReport(metrics, source=self.name, info={"mode": self.mode, "batch_size": self.batch_size, "recompute": self.recompute, **info})
