"""Cost backends that cost the evaluator's network (``ctx.build_model(candidate)``).

* ``backend=gan_macs`` (:class:`GanMacsBackend`): ``macs_m`` (exact, counted on
  the module with forward hooks: convolutions and transposed convolutions, the
  paper's convention) and ``params_m``;
* ``backend=gan_latency`` (:class:`GanLatencyBackend`): ``latency_ms``, the
  network exported to ONNX and timed with onnxruntime on this CPU (median of
  repeated single-image runs).

Neither knows about GAN Compression's generators: any NN evaluator that answers
``build_model`` can be costed.
"""

from __future__ import annotations

import threading
from typing import Dict, List

from hwaml import BuiltModel, Candidate, CostReport, RunContext, hookimpl
from hwaml.plugins import PluginError

from .macs import count_module_macs, count_params

__all__ = ["GanMacsBackend", "GanLatencyBackend"]


def evaluator_model(ctx: RunContext, candidate: Candidate, who: str) -> BuiltModel:
    if ctx.build_model is None:
        raise PluginError(
            f"backend {who} costs the evaluator's network, but this run has no ctx.build_model: "
            f"compose it with an NN evaluator (one that implements build_model, e.g. evaluator=gan_paired)"
        )
    return ctx.build_model(candidate)


class GanMacsBackend:
    """Exact MACs and parameters of the evaluator's network for one input image.

    :param check_evaluator: when the evaluator states its own count
        (``BuiltModel.macs``), a different count here is an error (the two
        would disagree on what the constraint means).
    """

    def __init__(self, check_evaluator: bool = True, name: str = "gan_macs"):
        self.check_evaluator = check_evaluator
        self.name = name

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["macs_m", "params_m"]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        model = evaluator_model(ctx, candidate, self.name)
        macs = count_module_macs(model.module, tuple(model.input_shape))
        if self.check_evaluator and model.macs is not None and int(model.macs) != macs:
            raise ValueError(f"{self.name}: counted {macs} MACs on the module but the evaluator {model.source} states {int(model.macs)}")
        return CostReport({"macs_m": macs / 1e6, "params_m": count_params(model.module) / 1e6}, source=self.name)


class GanLatencyBackend:
    """Measured onnxruntime CPU latency of the evaluator's network (one image).

    :param threads: onnxruntime intra-op threads (default 1: the same on a shared machine);
        ``None``: the run's ``ctx.threads`` (or 1).
    :param warmup: untimed runs first.
    :param repeats: timed runs; the median is reported.

    Each configuration is timed once per backend object and the value reused.
    """

    measured = True  # a timing (the contract suites allow measurement noise)

    def __init__(self, threads: int | None = 1, warmup: int = 5, repeats: int = 30, name: str = "gan_latency"):
        if repeats < 1 or warmup < 0:
            raise ValueError(f"{name}: repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
        self.threads, self.warmup, self.repeats, self.name = threads, warmup, repeats, name
        self._seen: Dict[str, float] = {}
        self._lock = threading.Lock()

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["latency_ms"]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        from .export import onnx_latency_ms

        model = evaluator_model(ctx, candidate, self.name)
        key = repr(sorted(dict(candidate.config).items()))
        with self._lock:
            if key not in self._seen:
                threads = self.threads or ctx.threads or 1
                self._seen[key] = onnx_latency_ms(model.module, (1, *model.input_shape), threads, self.warmup, self.repeats)
            value = self._seen[key]
        return CostReport({"latency_ms": value}, source=self.name, info={"engine": "onnxruntime", "threads": self.threads})
