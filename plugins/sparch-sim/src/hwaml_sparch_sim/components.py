"""hwaml components: the ``sparch`` cost backend, the ``sparch_area`` backend and the
``sparch_design`` evaluator (accelerator design-space exploration).

* :class:`SparchBackend` costs a fixed SpGEMM workload (a list of matrix specs)
  on the accelerator: ``dram_bytes``, ``dram_mb``, ``cycles``, ``runtime_ms``,
  ``energy_uj``, ``area_mm2`` and ``dram_reduction`` (geometric-mean DRAM
  reduction over the OuterSPACE model). Architecture keys found in the
  candidate's configuration (``merger_width``, ``buffer_lines`` ...) override its
  ``arch`` defaults, so it also costs candidates of ``sparch_design``.
* :class:`SparchAreaBackend` reports only the area proxy -- cheap, so an area
  constraint prunes designs before they are simulated.
* :class:`SparchDesignEvaluator` exposes the accelerator parameters and the
  technique switches as a search space and simulates each candidate on its
  workload; ``deploy`` writes a JSON report and a DRAM-traffic plot of the
  chosen trial's design.

The workload's matrices are loaded by :meth:`_WorkloadHolder.operands` on first
use (an explicit method, never at registration) and kept; a pickled component
(an executor worker's copy) ships the specs and loads its own copy once.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hwaml import Candidate, Categorical, CostReport, DeployResult, EvalResult, RunContext, SearchSpace, Trial, hookimpl

from .arch import ArchConfigError, SparchConfig, area_breakdown
from .matrices import Operands, WorkloadSpecError, check_spec, load_workload
from .report import write_design_report
from .outerspace import simulate_outerspace
from .simulator import SimResult, SparchSimulator

log = logging.getLogger(__name__)

__all__ = [
    "SparchBackend",
    "SparchAreaBackend",
    "SparchDesignEvaluator",
    "DEFAULT_DESIGN_SPACE",
    "WORKLOAD_METRICS",
    "AREA_METRICS",
    "simulate_workload",
    "workload_metrics",
]

#: what :func:`workload_metrics` reports (the ``sparch`` backend's and ``sparch_design``'s metrics)
WORKLOAD_METRICS = ("dram_bytes", "dram_mb", "cycles", "runtime_ms", "energy_uj", "area_mm2", "dram_reduction", "speedup")
#: what the ``sparch_area`` backend reports
AREA_METRICS = ("area_mm2", "buffer_kib")

#: the design space of ``sparch_design`` (every key a :class:`SparchConfig` field)
DEFAULT_DESIGN_SPACE: Dict[str, List[Any]] = {
    "merger_width": [4, 8, 16, 32],
    "merger_min_width": [1, 2, 4],
    "merge_ways": [8, 16, 32, 64, 128],
    "multipliers": [8, 16, 32],
    "buffer_lines": [64, 128, 256, 512, 1024, 2048],
    "line_elems": [16, 32, 48, 64],
    "lookahead": [256, 1024, 8192, 65536],
    "bandwidth_gbps": [64.0, 128.0, 256.0],
    "condensed": [True, False],
    "huffman": [True, False],
    "prefetcher": [True, False],
}


def _plain(value: Any) -> Any:
    """OmegaConf containers to plain Python (configs arrive as DictConfig/ListConfig)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    return value


def simulate_workload(
    simulator: SparchSimulator, workload: Sequence[Operands], cfg: SparchConfig
) -> Tuple[List[SimResult], List[SimResult]]:
    """SpArch and OuterSPACE results for every matrix of a workload."""
    sparch, baseline = [], []
    for ops in workload:
        r = simulator.run(ops, cfg)
        sparch.append(r)
        baseline.append(simulate_outerspace(ops, cfg, nnz_c=r.nnz_c))
    return sparch, baseline


def workload_metrics(cfg: SparchConfig, sparch: Sequence[SimResult], baseline: Sequence[SimResult]) -> Dict[str, float]:
    """Totals over the workload plus geometric-mean ratios to the OuterSPACE model."""
    dram = sum(r.dram_bytes for r in sparch)
    cycles = sum(r.cycles for r in sparch)
    red = [b.dram_bytes / s.dram_bytes for s, b in zip(sparch, baseline) if s.dram_bytes > 0]
    speed = [b.runtime_ms / s.runtime_ms for s, b in zip(sparch, baseline) if s.cycles > 0]  # each at its own clock
    return {
        "dram_bytes": float(dram),
        "dram_mb": float(dram) / 1e6,
        "cycles": float(cycles),
        "runtime_ms": float(cycles) / (cfg.clock_ghz * 1e9) * 1e3,
        "energy_uj": float(sum(r.energy_uj for r in sparch)),
        "area_mm2": cfg.area_mm2(),
        "dram_reduction": float(math.exp(sum(math.log(x) for x in red) / len(red))) if red else 1.0,
        "speedup": float(math.exp(sum(math.log(x) for x in speed) / len(speed))) if speed else 1.0,
    }


class _WorkloadHolder:
    """Checks the workload specs at construction; loads the matrices on first use
    (:meth:`operands`, also inside executor workers) and keeps them."""

    def __init__(self, workload: Any, arch: Optional[Mapping[str, Any]]):
        self.workload_specs = _plain(workload)
        self.arch = _plain(arch) or {}
        # fail at construction on a bad architecture key, not in the first trial
        self.base = SparchConfig.from_mapping(self.arch)
        if not isinstance(self.workload_specs, list) or not self.workload_specs:
            raise WorkloadSpecError("workload", "must be a non-empty list of matrix specs")
        for i, spec in enumerate(self.workload_specs):
            check_spec(spec, f"workload[{i}]")
        self._operands: Optional[List[Operands]] = None
        self.simulator = SparchSimulator(max_cached=64)

    def operands(self) -> List[Operands]:
        """The workload's operand pairs, generated or read on the first call and cached."""
        if self._operands is None:
            self._operands = load_workload(self.workload_specs)
        return self._operands

    def config_for(self, candidate_config: Mapping[str, Any], strict: bool) -> SparchConfig:
        return SparchConfig.from_mapping(candidate_config, base=self.base, strict=strict)

    def __getstate__(self) -> Dict[str, Any]:  # ship specs, not matrices, to workers
        state = dict(self.__dict__)
        state["_operands"] = None
        state["simulator"] = SparchSimulator(max_cached=64)
        return state


class SparchBackend(_WorkloadHolder):
    """Cost backend: simulated DRAM traffic, time, energy and area of a SpGEMM workload."""

    def __init__(self, workload: List[Any], arch: Optional[Dict[str, Any]] = None, name: str = "sparch"):
        super().__init__(workload, arch)
        self.name = name

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return list(WORKLOAD_METRICS)

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        cfg = self.config_for(candidate.config, strict=False)
        sparch, baseline = simulate_workload(self.simulator, self.operands(), cfg)
        metrics = workload_metrics(cfg, sparch, baseline)
        info = {"matrices": [r.summary() for r in sparch]}
        return CostReport(metrics, source=self.name, info=info)


class SparchAreaBackend:
    """Cost backend: the area proxy alone (no simulation), for early constraint checks."""

    def __init__(self, arch: Optional[Dict[str, Any]] = None, name: str = "sparch_area"):
        self.base = SparchConfig.from_mapping(_plain(arch) or {})
        self.name = name

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return list(AREA_METRICS)

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        cfg = SparchConfig.from_mapping(candidate.config, base=self.base, strict=False)
        parts = area_breakdown(cfg)
        return CostReport({"area_mm2": float(sum(parts.values())), "buffer_kib": cfg.buffer_bytes / 1024.0}, source=self.name, info={"area_breakdown": parts})


class SparchDesignEvaluator(_WorkloadHolder):
    """Evaluator over SpArch's design space; metrics are the simulated workload costs."""

    #: used when a run sets no objectives
    default_objectives = {"runtime_ms": "min"}

    def __init__(
        self,
        workload: List[Any],
        arch: Optional[Dict[str, Any]] = None,
        space: Optional[Dict[str, List[Any]]] = None,
    ):
        super().__init__(workload, arch)
        space = _plain(space)
        self.space_choices: Dict[str, List[Any]] = dict(DEFAULT_DESIGN_SPACE if space is None else space)
        if not self.space_choices:
            raise ArchConfigError("space", "is empty; give at least one parameter with its choices")
        for key, choices in self.space_choices.items():
            if not isinstance(choices, (list, tuple)) or not choices:
                raise ArchConfigError(f"space.{key}", f"must be a non-empty list of choices, got {choices!r}")
            if key in ("energy", "area"):
                raise ArchConfigError(f"space.{key}", "energy and area tables are not searchable")
            for value in choices:  # every choice must make a valid design
                SparchConfig.from_mapping({key: value}, base=self.base)

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return list(WORKLOAD_METRICS)

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        return SearchSpace([Categorical(k, list(v)) for k, v in self.space_choices.items()], meta={"kind": "sparch_design"})

    def simulate(self, config: Mapping[str, Any]) -> Tuple[SparchConfig, List[SimResult], List[SimResult], Dict[str, float]]:
        cfg = self.config_for(config, strict=True)
        sparch, baseline = simulate_workload(self.simulator, self.operands(), cfg)
        return cfg, sparch, baseline, workload_metrics(cfg, sparch, baseline)

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        cfg, sparch, baseline, metrics = self.simulate(candidate.config)
        info = {
            "matrices": {
                r.name: {"dram_bytes": r.dram_bytes, "outerspace_dram_bytes": b.dram_bytes, "cycles": r.cycles}
                for r, b in zip(sparch, baseline)
            }
        }
        return EvalResult(metrics, info=info)

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> DeployResult:
        """Re-simulate the trial's design and write its JSON report and DRAM-traffic plot."""
        candidate = trial.candidate
        cfg, sparch, baseline, metrics = self.simulate(candidate.config)
        stem = f"sparch_design_trial_{trial.number}"
        from .standins import matrix_stats

        stats = [matrix_stats(ops.A, r.nnz_c) for ops, r in zip(self.operands(), sparch)]
        paths = write_design_report(ctx.run_dir / "deploy", stem, cfg, sparch, baseline, metrics, candidate.config, stats)
        bounds = ", ".join(f"{r.name} {r.stats.get('bound', '-')}" for r in sparch)
        msg = (
            f"{stem}: {metrics['dram_mb']:.2f} MB DRAM ({metrics['dram_reduction']:.2f}x less than OuterSPACE), "
            f"{metrics['runtime_ms']:.3f} ms ({metrics['speedup']:.2f}x), {metrics['area_mm2']:.1f} mm^2; bound: {bounds}"
        )
        return DeployResult(paths, ok=True, metrics=metrics, message=msg, source="sparch_design")
