"""Cost backends for OFA sub-networks.

* ``backend=host_cpu_lut`` (:class:`HostCpuLatencyBackend`): ``latency_ms``
  predicted by a latency look-up table measured on this machine (built and
  cached on first use);
* ``backend=macs`` (:class:`MacsBackend`): ``macs_m`` and ``params_m`` counted
  analytically from the layer shapes.

Both take the supernet shape (``arch``/``arch_overrides``); their configs follow
the evaluator's by interpolation.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from hwaml import Candidate, CostReport, RunContext, hookimpl

from .latency_lut import ENGINES, LatencyLUT, load_or_build
from .supernet import layer_specs, supernet_config

log = logging.getLogger("hwaml.ofa_nas")

__all__ = ["HostCpuLatencyBackend", "MacsBackend"]


class HostCpuLatencyBackend:
    """Latency of a sub-network on this CPU from a look-up table.

    :param lut_path: the table file (YAML or JSON); default: a per-host cache file.
    :param engine: which measured engine to predict (``torch`` or ``onnxruntime``).
    :param engines: engines measured when the table is built.
    :param threads: CPU threads used for measuring (and assumed at deployment).
    :param repeats: timed calls per layer shape, spread over ``rounds`` interleaved rounds (minimum kept).
    :param calibrate: whole sub-networks timed (interleaved with the layers) to calibrate the per-layer sum.
    """

    def __init__(
        self,
        arch: Any = "tiny_digits",
        arch_overrides: Optional[Dict[str, Any]] = None,
        lut_path: Optional[str] = None,
        engine: str = "torch",
        engines: Optional[List[str]] = None,
        threads: int = 1,
        warmup: int = 10,
        repeats: int = 200,
        rounds: Optional[int] = None,
        calibrate: int = 20,
        statistic: str = "min",
        build_if_missing: bool = True,
        progress: bool = True,
        name: str = "host_cpu_lut",
    ):
        engines = list(engines or ENGINES)
        if engine not in ENGINES:
            raise ValueError(f"engine: {engine!r} is not one of {ENGINES}")
        if engine not in engines:
            raise ValueError(f"engine {engine!r} must be among the measured engines {engines}")
        self.arch = supernet_config(arch, arch_overrides)
        self.lut_path = lut_path
        self.engine = engine
        self.engines = engines
        self.threads = threads
        self.warmup = warmup
        self.repeats = repeats
        self.rounds = rounds
        self.calibrate = calibrate
        self.statistic = statistic
        self.build_if_missing = build_if_missing
        self.progress = progress
        self.name = name
        self._lut: Optional[LatencyLUT] = None
        self._path: Optional[Path] = None
        self._lock = threading.Lock()

    @property
    def lut(self) -> LatencyLUT:
        with self._lock:
            if self._lut is None:
                if not self.build_if_missing and not (self.lut_path and Path(self.lut_path).is_file()):
                    raise FileNotFoundError(f"latency table {self.lut_path} does not exist; build it with `hwaml-ofa-nas lut build --out {self.lut_path}`")
                self._lut, self._path = load_or_build(
                    self.lut_path, self.arch, self.engines, self.threads, self.warmup, self.repeats, self.progress, self.calibrate, self.statistic, self.rounds
                )
                if self.engine not in self._lut.engines:
                    raise ValueError(f"latency table {self._path} was measured with {self._lut.engines}, not {self.engine!r}")
            return self._lut

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        latency = self.lut.predict(self.arch, candidate.config, self.engine)
        return CostReport({"latency_ms": latency}, source=self.name, info={"engine": self.engine, "lut": str(self._path)})


class MacsBackend:
    """Multiply-accumulates (millions) and parameters (millions) of a sub-network."""

    def __init__(self, arch: Any = "tiny_digits", arch_overrides: Optional[Dict[str, Any]] = None, name: str = "macs"):
        self.arch = supernet_config(arch, arch_overrides)
        self.name = name
        self._table: Any = None

    def metrics(self, config: Dict[str, Any]) -> Dict[str, float]:
        if self._table is None:
            from .predictors import ArchEncoder, MacsTable
            from .supernet import OFAMobileNetV3

            self._table = MacsTable(self.arch, ArchEncoder(OFAMobileNetV3.space_for(self.arch).meta["ofa"]))
        try:
            g = self._table.encoder.from_configs([config])
        except (ValueError, IndexError, KeyError, TypeError):  # not a sub-network of this space: count layer by layer
            specs = layer_specs(self.arch, config)
            return {"macs_m": sum(s.macs() for s in specs) / 1e6, "params_m": sum(s.params() for s in specs) / 1e6}
        return {"macs_m": float(self._table.macs(g)[0]) / 1e6, "params_m": float(self._table.params(g)[0]) / 1e6}

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        return CostReport(self.metrics(candidate.config), source=self.name)
