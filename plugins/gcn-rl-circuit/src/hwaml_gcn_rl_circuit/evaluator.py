"""The circuit evaluator: search space with the circuit graph, SPICE evaluation, deploy.

``CircuitEvaluator(circuit="two_stage_tia", technology="n180")`` answers

* ``search_space`` -- one :class:`hwaml.Float` per sizing parameter (log scale,
  bounds scaled to the node), with ``space.meta["graph"]`` the
  :class:`~hwaml_gcn_rl_circuit.graph.CircuitGraph` the GCN-RL searcher needs
  (and ``meta["circuit"]``, ``meta["technology"]``);
* ``evaluate`` -- simulates every test bench with ngspice and returns the FoM
  plus every measurement. Simulator errors, non-convergence and timeouts give
  ``fom = circuit.failure_fom`` (and ``sim_failed = 1``), never an exception;
* ``metric_names`` -- every metric ``evaluate`` can report (``fom``, ``specs_met``,
  ``sim_failed``, ``sim_ms``, the areas and each measurement of the circuit);
* ``deploy(trial, ctx)`` -- writes the trial's sized netlist(s) and a JSON + markdown
  report of the re-simulated metrics under ``run_dir/deploy``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hwaml import Candidate, DeployResult, EvalResult, Float, RunContext, SearchSpace, Trial, hookimpl

from .circuits import UNITS, Circuit, get_circuit
from .graph import CircuitGraph
from .simulator import SimulationError, default_simulator
from .technology import Technology, get_technology

log = logging.getLogger("hwaml.gcn_rl_circuit")


def circuit_space(circuit: Circuit, tech: Technology) -> SearchSpace:
    dims = []
    for p in circuit.params:
        lo, hi, _ = p.bounds(tech)
        dims.append(Float(p.name, lo, hi, log=p.log))
    graph = CircuitGraph.from_circuit(circuit, tech)
    return SearchSpace(dims, meta={"graph": graph, "circuit": circuit.name, "technology": tech.name}, name=circuit.name)


def nominal_config(circuit: Circuit, tech: Technology) -> Dict[str, float]:
    """The hand-picked starting sizing of the circuit on ``tech`` (space units)."""
    return {p.name: float(p.bounds(tech)[2]) for p in circuit.params}


def sizes_si(circuit: Circuit, config: Mapping[str, float]) -> Dict[str, float]:
    missing = [p.name for p in circuit.params if p.name not in config]
    if missing:
        raise KeyError(f"sizing for {circuit.name} lacks {missing}")
    return {p.name: p.to_si(config[p.name]) for p in circuit.params}


def simulate_design(circuit: Circuit, tech: Technology, config: Mapping[str, float], timeout_s: float = 10.0) -> Dict[str, Any]:
    """Simulate one sizing; return ``{"metrics": {...}, "violated": [...], "error": str|None}``.

    ``metrics`` always holds ``fom`` (penalised on failure), ``specs_met`` and
    ``sim_failed``; on success also every measurement, ``area_um2`` and
    ``area_scaled_um2`` (area at 180 nm-equivalent scale, so one FoM range fits all nodes).
    """
    si = sizes_si(circuit, config)
    sim = default_simulator(timeout_s)
    t0 = time.perf_counter()
    try:
        results = {bench: sim.simulate(deck) for bench, deck in circuit.decks(si, tech).items()}
        values = circuit.measure(results, tech, si)
        values["area_um2"] = circuit.area_um2(si)
        values["area_scaled_um2"] = values["area_um2"] * (180e-9 / tech.lmin) ** 2
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise SimulationError(f"measurements {bad} are not finite")
        fom, violated = circuit.fom(values)
        metrics = {"fom": fom, "specs_met": 0.0 if violated else 1.0, "sim_failed": 0.0, **values}
        error = None
    except SimulationError as exc:
        metrics = {"fom": circuit.failure_fom, "specs_met": 0.0, "sim_failed": 1.0}
        violated, error = ["simulation failed"], str(exc)
    metrics["sim_ms"] = (time.perf_counter() - t0) * 1e3
    return {"metrics": metrics, "violated": violated, "error": error}


class CircuitEvaluator:
    """Transistor sizing of one circuit on one technology node, simulated with ngspice.

    :param circuit: ``two_stage_tia``, ``two_stage_amp``, ``three_stage_tia`` or ``ldo``.
    :param technology: ``n180``, ``n130``, ``n90``, ``n65`` or ``n45``.
    :param timeout_s: Wall-clock limit of one ngspice run; over it the design is penalised.
    :param template: Optional path to a replacement netlist template (checked at start).
    """

    #: what a run optimises unless told otherwise (the paper's figure of merit)
    default_objectives = {"fom": "max"}

    def __init__(self, circuit: str = "two_stage_tia", technology: str = "n180", timeout_s: float = 10.0, template: Optional[str] = None):
        self.circuit = get_circuit(circuit)
        self.tech = get_technology(technology)
        self.timeout_s = float(timeout_s)
        if template:
            path = Path(template)
            if not path.is_file():
                raise FileNotFoundError(f"template {template!r} does not exist")
            self.circuit.use_template_text(path.read_text(), str(path))
        else:
            self.circuit.template()  # parse now: a broken template fails at start

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return self.circuit.metric_names()

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        return circuit_space(self.circuit, self.tech)

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        out = simulate_design(self.circuit, self.tech, candidate.config, self.timeout_s)
        info: Dict[str, Any] = {"violated": out["violated"]}
        if out["error"]:
            info["simulation_error"] = out["error"]
            log.debug("trial %s: %s", candidate.number, out["error"])
        return EvalResult(out["metrics"], info=info)

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> DeployResult:
        """The trial's sizing as netlists (one per test bench) and a report, under ``run_dir/deploy``."""
        return deploy_design(self.circuit, self.tech, trial.candidate.config, Path(ctx.run_dir) / "deploy", self.timeout_s, number=trial.number)


def deploy_design(
    circuit: Circuit, tech: Technology, config: Mapping[str, float], out_dir: Path, timeout_s: float = 10.0, number: Optional[int] = None
) -> DeployResult:
    """Write the sized netlist of every test bench and a JSON + markdown report of
    the design simulated again (``ok`` is false if that simulation fails)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{circuit.name}_{tech.name}" + (f"_trial{number}" if number is not None else "")
    si = sizes_si(circuit, config)
    artifacts: Dict[str, str] = {}
    for bench, deck in circuit.decks(si, tech).items():
        path = out_dir / (f"{tag}.cir" if len(circuit.benches) == 1 else f"{tag}_{bench}.cir")
        path.write_text(deck)
        artifacts[f"netlist_{bench}"] = str(path)
    result = simulate_design(circuit, tech, config, timeout_s)
    metrics = {k: float(v) for k, v in result["metrics"].items()}
    report = {
        "circuit": circuit.name,
        "technology": tech.name,
        "vdd": tech.vdd,
        "lmin_nm": tech.lmin * 1e9,
        "trial": number,
        "sizing": {p.name: {"value": float(config[p.name]), "unit": UNITS[p.kind][0]} for p in circuit.params},
        "metrics": metrics,
        "specs": [str(s) for s in circuit.specs],
        "violated": result["violated"],
        "simulation_error": result["error"],
    }
    jpath = out_dir / f"{tag}_report.json"
    jpath.write_text(json.dumps(report, indent=2))
    lines = [
        f"# {circuit.title} on {tech.name} (Vdd {tech.vdd:g} V, Lmin {tech.lmin * 1e9:g} nm)",
        "",
        f"FoM **{metrics['fom']:.4f}**; specs {'all met' if not result['violated'] else 'violated: ' + ', '.join(result['violated'])}.",
        "",
        "| parameter | value | unit |",
        "| --- | ---: | --- |",
        *[f"| {p.name} | {float(config[p.name]):.4g} | {UNITS[p.kind][0]} |" for p in circuit.params],
        "",
        "| metric | simulated |",
        "| --- | ---: |",
        *[f"| {k} | {v:.4g} |" for k, v in metrics.items()],
        "",
    ]
    if result["error"]:
        lines.append(f"Simulation error: `{result['error']}`")
    mpath = out_dir / f"{tag}_report.md"
    mpath.write_text("\n".join(lines))
    artifacts.update({"report_json": str(jpath), "report_md": str(mpath)})
    ok = result["error"] is None
    return DeployResult(artifacts, ok=ok, metrics=metrics, message=f"wrote {len(artifacts)} files to {out_dir}", source=f"circuit_{circuit.name}")
