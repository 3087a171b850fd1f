"""Cost backends that cost the evaluator's network (``ctx.build_model(candidate)``).

* ``backend=gan_macs`` (:class:`GanMacsBackend`): ``macs_m`` (exact, counted on
  the module with forward hooks: convolutions and transposed convolutions, the
  paper's convention) and ``params_m``;
* ``backend=gan_latency`` (:class:`GanLatencyBackend`): ``latency_ms``, the
  network exported to ONNX and timed with onnxruntime on this CPU (the smallest
  CPU time, or wall time, of repeated single-image runs).

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
    :param repeats: timed runs; the smallest is reported.
    :param clock: ``cpu`` (the calling thread's CPU time: robust to other jobs on a shared
        machine) or ``wall``.
    :param graph_optimization: onnxruntime's level, ``disable`` / ``basic`` / ``extended`` /
        ``all`` (its default; adds the NCHWc layout transformer, which helps wide layers).

    Each configuration is timed once per backend object and the value reused.
    """

    measured = True  # a timing (the contract suites allow measurement noise)

    def __init__(self, threads: int | None = 1, warmup: int = 5, repeats: int = 30, clock: str = "cpu", graph_optimization: str = "all", name: str = "gan_latency"):
        from .export import CLOCKS, GRAPH_LEVELS

        if repeats < 1 or warmup < 0:
            raise ValueError(f"{name}: repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
        if clock not in CLOCKS:
            raise ValueError(f"{name}: clock={clock!r} is not one of {CLOCKS}")
        if graph_optimization not in GRAPH_LEVELS:
            raise ValueError(f"{name}: graph_optimization={graph_optimization!r} is not one of {GRAPH_LEVELS}")
        self.threads, self.warmup, self.repeats, self.name = threads, warmup, repeats, name
        self.clock, self.graph_optimization = clock, graph_optimization
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
                self._seen[key] = onnx_latency_ms(model.module, (1, *model.input_shape), threads, self.warmup, self.repeats, self.clock, self.graph_optimization)
            value = self._seen[key]
        info = {"engine": "onnxruntime", "threads": self.threads, "clock": self.clock, "graph_optimization": self.graph_optimization}
        return CostReport({"latency_ms": value}, source=self.name, info=info)
