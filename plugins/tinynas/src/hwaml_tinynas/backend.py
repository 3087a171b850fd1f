"""``backend=[tinynas_<device>]``: TinyEngine's cost and deploy for the
sub-networks of the space TinyNAS chose.

:class:`TinyNASBackend` is :class:`hwaml_tinyengine.backend.TinyEngineBackend`
(same device profiles, memory planner, latency model, C code generation and
host check) whose model factory builds a static ReLU6 sub-network of the run's
supernet. The supernet shape depends on stage 1, which runs inside the
evaluator, so the backend reads it from ``<run_dir>/<state_dir>/arch.json``
(written by ``evaluator=tinynas_digits`` before any candidate is costed) the
first time a hook gives it the run directory.

Besides TinyEngine's ``peak_sram_kb``, ``flash_kb``, ``latency_ms`` and
``fits`` it reports ``macs_m`` (multiply-accumulates, millions) and
``energy_mj`` (latency x the profile's active power, an estimate), so any of
them can be a constraint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from hwaml import Candidate, CostReport, DeployResult, RunContext, hookimpl
from hwaml_tinyengine.backend import TinyEngineBackend

__all__ = ["TinyNASBackend", "ARCH_FILE", "read_run_arch"]

ARCH_FILE = "arch.json"


def read_run_arch(run_dir: Any, state_dir: str = "tinynas") -> Dict[str, Any]:
    """The supernet shape a TinyNAS run chose (``arch.json``)."""
    path = Path(run_dir) / state_dir / ARCH_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the tinynas backends cost sub-networks of the space that "
            f"evaluator=tinynas_digits chooses (run it in the same run), or use the tinyengine backends"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc


class TinyNASBackend(TinyEngineBackend):
    """TinyEngine on one MCU profile, for TinyNAS sub-networks.

    :param profile: a TinyEngine profile (stm32f412, stm32f746, stm32h743, mcu64k);
        ``sram_kb``/``flash_kb``/``clock_mhz`` override its numbers.
    :param power_mw: active power of the MCU running the model (for ``energy_mj``).
    :param state_dir: the evaluator's folder in the run directory.
    """

    def __init__(
        self,
        profile: str = "mcu64k",
        sram_kb: Optional[float] = None,
        flash_kb: Optional[float] = None,
        clock_mhz: Optional[float] = None,
        power_mw: float = 30.0,
        patch: bool = True,
        max_overhead: float = 0.3,
        deploy_vectors: int = 8,
        state_dir: str = "tinynas",
        name: Optional[str] = None,
        input_shape: Optional[List[int]] = None,
    ):
        if power_mw <= 0:
            raise ValueError(f"power_mw must be > 0, got {power_mw}")
        super().__init__(
            profile=profile,
            sram_kb=sram_kb,
            flash_kb=flash_kb,
            clock_mhz=clock_mhz,
            model_factory=self._build_model,
            input_shape=input_shape,
            patch=patch,
            max_overhead=max_overhead,
            checkpoint_dir=f"{state_dir}/checkpoints",
            deploy_vectors=deploy_vectors,
            name=name or f"tinynas_{profile}",
        )
        self.power_mw = float(power_mw)
        self.state_dir = state_dir
        self._arch: Optional[Dict[str, Any]] = None
        self._arch_dir: Optional[Path] = None

    # -- the run's supernet shape ------------------------------------------------
    def bind(self, run_dir: Any) -> None:
        """Read the supernet shape of the run in ``run_dir`` (once per directory)."""
        run_dir = Path(run_dir)
        if self._arch_dir != run_dir:
            self._arch = read_run_arch(run_dir, self.state_dir)
            self._arch_dir = run_dir
            self._plans.clear()

    def set_arch(self, arch: Dict[str, Any]) -> None:
        """Use a supernet shape directly (benchmarks, notebooks)."""
        self._arch = dict(arch)
        self._arch_dir = None
        self._plans.clear()

    def _build_model(self, config: Dict[str, Any]) -> Any:
        from .supernet import static_subnet

        if self._arch is None:
            raise RuntimeError("TinyNASBackend has no supernet shape yet (call bind(run_dir) or set_arch(arch))")
        return static_subnet(self._arch, config)

    # -- hooks ---------------------------------------------------------------------
    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        from hwaml_ofa_nas.predictors import count_macs

        from hwaml_ofa_nas.supernet import supernet_config

        if ctx.run_dir is not None and (self._arch is None or self._arch_dir is not None):
            self.bind(ctx.run_dir)
        report = super().cost(candidate=candidate, ctx=ctx)
        metrics = dict(report.metrics)
        metrics["macs_m"] = count_macs(supernet_config(self._arch), candidate.config) / 1e6
        metrics["energy_mj"] = metrics["latency_ms"] * self.power_mw / 1000.0
        return CostReport(metrics, source=report.source, feasible=report.feasible, info=report.info)

    @hookimpl
    def deploy(self, candidate: Candidate, ctx: RunContext) -> DeployResult:
        if ctx.run_dir is not None and (self._arch is None or self._arch_dir is not None):
            self.bind(ctx.run_dir)
        return super().deploy(candidate=candidate, ctx=ctx)
