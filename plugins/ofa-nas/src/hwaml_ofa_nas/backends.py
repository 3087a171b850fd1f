"""Cost backends that cost the evaluator's network (``ctx.build_model(candidate)``).

* ``backend=host_cpu_lut`` (:class:`HostCpuLatencyBackend`): ``latency_ms``
  predicted from a latency look-up table of this machine, keyed by the
  network's layers (type, structure, shapes); a layer the table lacks is
  measured (interleaved, single-threaded) and cached the first time it is seen;
* ``backend=macs`` (:class:`MacsBackend`): ``macs_m`` and ``params_m``, counted
  on the module with ``torch.utils.flop_counter.FlopCounterMode``.

Neither knows anything about OFA: any NN evaluator (one that answers
``build_model``) can be costed, and for the same candidate the MACs equal the
evaluator's own count (``BuiltModel.macs``) when both count what
:mod:`hwaml_ofa_nas.layers` calls a MAC.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

from hwaml import BuiltModel, Candidate, CostReport, RunContext, hookimpl
from hwaml.config import as_config
from hwaml.plugins import PluginError

from .latency_lut import ENGINES, LatencyLUT, LUTError, MeasureConfig, calibration_configs, default_lut_path, file_lock

log = logging.getLogger("hwaml.ofa_nas")

__all__ = ["HostCpuLatencyBackend", "MacsBackend", "MeasureConfig"]


def evaluator_model(ctx: RunContext, candidate: Candidate, who: str) -> BuiltModel:
    """The evaluator's network for ``candidate`` (what an NN backend costs)."""
    if ctx.build_model is None:
        raise PluginError(
            f"backend {who} costs the evaluator's network, but this run has no ctx.build_model: "
            f"compose it with an NN evaluator (one that implements build_model, e.g. evaluator=ofa_digits)"
        )
    model = ctx.build_model(candidate)
    if model.input_dtype not in ("float32", "float16", "bfloat16", "float64") or len(model.input_shape) != 3:
        raise PluginError(
            f"backend {who} costs image networks (a float input of shape (C, H, W)); the evaluator's network "
            f"({model.source or 'build_model'}) takes {model.input_dtype} input of shape {tuple(model.input_shape)}"
        )
    return model


class HostCpuLatencyBackend:
    """Latency of the evaluator's network on this CPU from a look-up table.

    :param lut_path: the table file (YAML or JSON); default: a per-host cache
        file per search space (``~/.cache/hwaml/ofa_nas/lut_<space>_<host>_<threads>t.yaml``).
    :param engine: which engine's latency to predict (``torch`` or ``onnxruntime``).
    :param engines: engines measured for a missing layer (default: just ``engine``).
    :param measure: a :class:`~hwaml_ofa_nas.latency_lut.MeasureConfig` or a
        mapping of its fields (threads, warmup, repeats, rounds, calibrate, statistic).
    :param measure_missing: measure layers (and the calibration) the table lacks;
        false: a missing entry is an error.
    :param name: the backend's name (``CostReport.source``).

    The table is loaded, calibrated and extended on first use (:meth:`lut`,
    :meth:`cost`), never at construction or registration. Calibration: when the
    table has none for an engine, ``measure.calibrate`` networks of the run's
    space (drawn with seed 0; an OFA space's smallest and largest among them)
    are built with ``ctx.build_model`` and timed whole, interleaved with their
    layers, and ``scale * sum + offset`` is fitted.
    """

    #: it times layers on this machine: two measurements of one network differ
    #: (hwaml.testing.measurement_of; the contract suite compares within this
    #: relative tolerance). ``measure.statistic=median`` with ``measure.repeats``
    #: is the repeated-measurement option.
    measured = True
    measurement_rtol = 0.25

    def __init__(
        self,
        lut_path: Optional[str] = None,
        engine: str = "torch",
        engines: Optional[List[str]] = None,
        measure: Union[MeasureConfig, Mapping[str, Any], None] = None,
        measure_missing: bool = True,
        progress: bool = True,
        name: str = "host_cpu_lut",
    ):
        engines = list(engines or [engine])
        for e in engines + [engine]:
            if e not in ENGINES:
                raise ValueError(f"engine: {e!r} is not one of {ENGINES}")
        if engine not in engines:
            raise ValueError(f"engine {engine!r} must be among the measured engines {engines}")
        self.lut_path = lut_path
        self.engine = engine
        self.engines = engines
        self.measure = as_config(MeasureConfig, measure, "measure")
        self.measure_missing = measure_missing
        self.progress = progress
        self.name = name
        self._lut: Optional[LatencyLUT] = None
        self._path: Optional[Path] = None
        self._seen: Any = None  # (mtime, size) of the file as last read or written
        self._lock = threading.RLock()

    def table_path(self, ctx: RunContext) -> Path:
        """The table file: ``lut_path``, or the cache file of the run's space on this host."""
        return Path(self.lut_path) if self.lut_path else default_lut_path(ctx.space, self.measure.threads)

    def _stamp(self) -> Any:
        assert self._path is not None
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _reload(self) -> None:
        """Merge what other processes added to the file since this one read or wrote it."""
        assert self._lut is not None and self._path is not None
        stamp = self._stamp()
        if stamp is not None and stamp != self._seen:
            self._lut.merge(LatencyLUT.load(self._path))
            self._seen = stamp

    def _save(self) -> None:
        assert self._lut is not None and self._path is not None
        self._lut.save(self._path)
        self._seen = self._stamp()

    def lut(self, ctx: RunContext) -> LatencyLUT:
        """The table, loaded on first call and calibrated on the run's networks
        when it has no calibration for the measured engines yet."""
        with self._lock:
            if self._lut is None:
                path = self.table_path(ctx)
                if not path.is_file() and not self.measure_missing:
                    raise FileNotFoundError(f"latency table {path} does not exist and measure_missing is false; build it with `hwaml-ofa-nas lut build --out {path}`")
                self._lut = LatencyLUT.load(path) if path.is_file() else LatencyLUT()
                self._path = path
                self._seen = self._stamp()
            need = [e for e in self.engines if e not in self._lut.calibration] if self.measure.calibrate > 0 else []
            if need:
                if not self.measure_missing:
                    raise LUTError(
                        f"latency table {self._path} has no calibration for {need}; set measure_missing=true to fit one, "
                        f"or measure.calibrate=0 to predict plain sums of the entries"
                    )
                self._calibrate(ctx, need)
            return self._lut

    def _calibrate(self, ctx: RunContext, engines: Sequence[str]) -> None:
        if ctx.space is None:
            raise PluginError(f"backend {self.name} calibrates its latency table on networks of the run's space, but ctx.space is not set")
        configs = calibration_configs(ctx.space, self.measure.calibrate, seed=0)
        models = [evaluator_model(ctx, Candidate(c), self.name) for c in configs]
        assert self._lut is not None and self._path is not None
        with file_lock(self._path):
            self._reload()
            engines = [e for e in engines if e not in self._lut.calibration]
            if engines:
                log.info("%s: calibrating the latency table %s on %d networks of the space (%s)", self.name, self._path, len(models), engines)
                source = f"{len(models)} networks of space {ctx.space.name} (seed 0)"
                self._lut.calibrate([(m.module, m.input_shape) for m in models], engines, self.measure, self.progress, 0, source)
                self._save()

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["latency_ms"]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        from .layers import decompose

        model = evaluator_model(ctx, candidate, self.name)
        with self._lock:
            lut = self.lut(ctx)
            layers = decompose(model.module, model.input_shape)
            missing = lut.missing(layers, [self.engine])
            if missing:
                if not self.measure_missing:
                    lut.lookup(missing[0], self.engine)  # raises, naming the layer
                with file_lock(self._path):
                    self._reload()
                    todo = lut.missing(layers, self.engines)
                    if todo:
                        lut.measure(todo, self.engines, self.measure, progress=self.progress)
                        self._save()
            latency = lut.predict(layers, self.engine)
        return CostReport(
            {"latency_ms": latency},
            source=self.name,
            info={"engine": self.engine, "lut": str(self._path), "layers": len(layers), "measured_now": len(missing)},
        )


class MacsBackend:
    """Multiply-accumulates (millions) and parameters (millions) of the evaluator's network.

    MACs are counted on ``ctx.build_model(candidate).module`` at its
    ``input_shape`` with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs of
    convolutions, linear layers, matrix products and attention, halved; layer by
    layer with each layer's count remembered, see
    :func:`hwaml_ofa_nas.layers.module_macs`); parameters are ``module.parameters()``.
    """

    def __init__(self, name: str = "macs"):
        self.name = name

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["macs_m", "params_m"]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        from .layers import module_macs, module_params

        model = evaluator_model(ctx, candidate, self.name)
        macs = module_macs(model.module, model.input_shape)
        info = {"counter": "torch.utils.flop_counter.FlopCounterMode / 2"}
        if model.macs is not None:
            info["evaluator_macs_m"] = float(model.macs) / 1e6
        return CostReport({"macs_m": macs / 1e6, "params_m": module_params(model.module) / 1e6}, source=self.name, info=info)
