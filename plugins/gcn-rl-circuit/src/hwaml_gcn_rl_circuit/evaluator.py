"""The circuit evaluator: search space with the circuit graph, SPICE evaluation, deploy.

``CircuitEvaluator(circuit="two_stage_tia", technology="sky130")`` answers

* ``search_space`` -- one :class:`hwaml.Float` per sizing parameter (log scale,
  bounds scaled to the node), with ``space.meta["graph"]`` the
  :class:`~hwaml_gcn_rl_circuit.graph.CircuitGraph` the GCN-RL searcher needs
  (and ``meta["circuit"]``, ``meta["technology"]``);
* ``evaluate`` -- resizes the loaded circuit (``bench.CircuitBench``), runs its whole
  test-bench procedure with ngspice and returns the FoM plus every measurement. Simulator errors, non-convergence and timeouts give
  ``fom = circuit.failure_fom`` (and ``sim_failed = 1``), never an exception;
* ``metric_names`` -- every metric ``evaluate`` can report (``fom``, ``specs_met``,
  ``sim_failed``, ``sim_ms``, the areas and each measurement of the circuit);
* ``deploy(trial, ctx)`` -- writes the trial's sized, stand-alone ngspice deck and a JSON +
  markdown report of the re-simulated metrics and the PVT sign-off under ``run_dir/deploy``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from hwaml import Candidate, DeployResult, EvalResult, Float, RunContext, SearchSpace, Trial, hookimpl

from .bench import SIGNOFF_CORNERS, Corner, get_bench
from .circuits import UNITS, Circuit, get_circuit
from .graph import CircuitGraph
from .simulator import SimulationError
from .technology import Technology, get_technology

log = logging.getLogger("hwaml.gcn_rl_circuit")


def circuit_space(circuit: Circuit, tech: Technology) -> SearchSpace:
    if circuit.technology != tech.name:
        circuit.configure(tech)
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


def simulate_design(
    circuit: Circuit, tech: Technology, config: Mapping[str, float], timeout_s: float = 10.0, corner: Any = None
) -> Dict[str, Any]:
    """Simulate one sizing at one corner; return ``{"metrics", "violated", "error", "info"}``.

    ``metrics`` always holds ``fom`` (penalised on failure), ``specs_met`` and
    ``sim_failed``; on success also every measurement, ``area_um2`` and
    ``area_scaled_um2`` (area at 180 nm-equivalent scale, so one FoM range fits both PDKs).
    ``info`` holds the per-transistor saturation margins, the instantiated geometry and
    ``spice_ms``, the part of ``sim_ms`` spent inside ngspice.
    """
    if circuit.technology != tech.name:
        circuit.configure(tech)
    si = sizes_si(circuit, config)
    bench = get_bench(circuit, tech, Corner.parse(corner or "tt"), timeout_s)
    t0, busy0 = time.perf_counter(), bench.sim.busy_s
    try:
        values = bench.measure(si)
        fom, violated = circuit.fom(values)
        metrics = {"fom": fom, "specs_met": 0.0 if violated else 1.0, "sim_failed": 0.0, **values}
        error = None
    except SimulationError as exc:
        metrics = {"fom": circuit.failure_fom, "specs_met": 0.0, "sim_failed": 1.0}
        violated, error = ["simulation failed"], str(exc)
    metrics["sim_ms"] = (time.perf_counter() - t0) * 1e3
    info = dict(bench.info)
    # the part of sim_ms spent inside ngspice (parsing, alters, analyses): a raw run's cost
    info["spice_ms"] = (bench.sim.busy_s - busy0) * 1e3
    info["geometry"] = {k: {"w_um": g.w * 1e6, "l_um": g.l * 1e6, "m": g.m} for k, g in bench.geometry.items()}
    return {"metrics": metrics, "violated": violated, "error": error, "info": info, "corner": str(bench.corner)}


def simulate_corners(circuit: Circuit, tech: Technology, config: Mapping[str, float], corners: Sequence[Any], timeout_s: float = 10.0) -> Dict[str, Any]:
    """The sizing at every corner; the result is the worst corner's (lowest FoM), with
    ``specs_met`` only if every corner meets every spec, and ``per_corner`` FoMs."""
    outs = [simulate_design(circuit, tech, config, timeout_s, c) for c in corners]
    worst = min(outs, key=lambda o: o["metrics"]["fom"])
    out = {**worst, "metrics": dict(worst["metrics"])}
    out["metrics"]["specs_met"] = float(all(o["metrics"]["specs_met"] == 1.0 for o in outs))
    out["metrics"]["sim_ms"] = sum(o["metrics"]["sim_ms"] for o in outs)
    out["per_corner"] = {o["corner"]: {"fom": o["metrics"]["fom"], "violated": o["violated"]} for o in outs}
    return out


def signoff(circuit: Circuit, tech: Technology, config: Mapping[str, float], corners: Sequence[Any] = SIGNOFF_CORNERS,
            timeout_s: float = 10.0) -> Dict[str, Any]:
    """PVT sign-off: the design at every corner (default tt/ss/ff x -40/27/125 C x Vdd +-10 %).

    Returns ``{"passed", "worst_corner", "corners": {corner: {metrics, violated, error}}}``.
    """
    table: Dict[str, Any] = {}
    for c in corners:
        o = simulate_design(circuit, tech, config, timeout_s, c)
        table[o["corner"]] = {"metrics": o["metrics"], "violated": o["violated"], "error": o["error"]}
    worst = min(table, key=lambda k: table[k]["metrics"]["fom"])
    return {"passed": all(not v["violated"] for v in table.values()), "worst_corner": worst, "corners": table}


class CircuitEvaluator:
    """Transistor sizing of one circuit on one open PDK, simulated with ngspice.

    :param circuit: ``two_stage_tia``, ``two_stage_amp``, ``three_stage_tia`` or ``ldo``.
    :param technology: ``sky130`` or ``gf180mcu``.
    :param timeout_s: Wall-clock limit of one ngspice analysis; over it the design is penalised.
    :param template: Optional path to a replacement netlist template (checked at start).
    :param corners: Corners every evaluation simulates (``"ss/125/0.9"``: process/temperature C/
        supply scale); the FoM and metrics are the worst corner's. Default ``["tt"]``: nominal.
    :param conditions: Per-technology overrides of the operating conditions
        (``{sky130: {cpd: 2.0e-13}}``); defaults in :data:`~.circuits.CONDITIONS`.
    :param specs: Per-technology overrides of the hard specs (``{sky130: {bandwidth_hz: [">=", 2e8]}}``;
        ``null`` drops a spec); defaults in :data:`~.circuits.SPECS`.
    :param signoff: Run the PVT sign-off (tt/ss/ff x -40/27/125 C x Vdd +-10 %) in ``deploy``.
    """

    #: what a run optimises unless told otherwise (the paper's figure of merit)
    default_objectives = {"fom": "max"}

    def __init__(
        self,
        circuit: str = "two_stage_tia",
        technology: str = "sky130",
        timeout_s: float = 10.0,
        template: Optional[str] = None,
        corners: Optional[Sequence[Any]] = None,
        conditions: Optional[Mapping[str, Mapping[str, float]]] = None,
        specs: Optional[Mapping[str, Mapping[str, Any]]] = None,
        signoff: bool = True,
    ):
        self.circuit = get_circuit(circuit)
        self.tech = get_technology(technology)
        self.timeout_s = float(timeout_s)
        self.corners = [Corner.parse(c) for c in (corners or ["tt"])]
        self.signoff = bool(signoff)
        for group, value in (("conditions", conditions), ("specs", specs)):
            unknown = sorted(set(dict(value or {})) - {"sky130", "gf180mcu"})
            if unknown:
                raise ValueError(f"evaluator.{group}: keys are technologies (sky130, gf180mcu), got {unknown}")
        self.circuit.configure(self.tech, dict(conditions or {}).get(self.tech.name), dict(specs or {}).get(self.tech.name))
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

    def simulate(self, config: Mapping[str, float]) -> Dict[str, Any]:
        if len(self.corners) == 1:
            return simulate_design(self.circuit, self.tech, config, self.timeout_s, self.corners[0])
        return simulate_corners(self.circuit, self.tech, config, self.corners, self.timeout_s)

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        out = self.simulate(candidate.config)
        info: Dict[str, Any] = {"violated": out["violated"], "corner": out["corner"], **out["info"]}
        if "per_corner" in out:
            info["per_corner"] = out["per_corner"]
        if out["error"]:
            info["simulation_error"] = out["error"]
            log.debug("trial %s: %s", candidate.number, out["error"])
        return EvalResult(out["metrics"], info=info)

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> DeployResult:
        """The trial's sizing as a stand-alone ngspice deck, a report and (``signoff``) the PVT
        sign-off, under ``run_dir/deploy``."""
        return deploy_design(self.circuit, self.tech, trial.candidate.config, Path(ctx.run_dir) / "deploy", self.timeout_s,
                             number=trial.number, corner=self.corners[0], run_signoff=self.signoff)


def standalone_deck(circuit: Circuit, tech: Technology, config: Mapping[str, float], corner: Any = "tt", timeout_s: float = 10.0) -> str:
    """The sized netlist with a ``.control`` block that replays the evaluation's procedure
    (``ngspice -b deck.cir`` runs every analysis the plugin ran, in the same order)."""
    out = simulate_design(circuit, tech, config, timeout_s, corner)
    bench = get_bench(circuit, tech, Corner.parse(corner), timeout_s)
    control = ["set noaskquit"] + [c for c in bench.log] + ["quit"] if out["error"] is None else ["op", "quit"]
    return bench.deck(sizes_si(circuit, config), control=control)


def deploy_design(
    circuit: Circuit, tech: Technology, config: Mapping[str, float], out_dir: Path, timeout_s: float = 10.0, number: Optional[int] = None,
    corner: Any = "tt", run_signoff: bool = False,
) -> DeployResult:
    """Write the sized netlist (with its test-bench procedure), a JSON + markdown report of the
    design simulated again (``ok`` is false if that simulation fails) and, with
    ``run_signoff``, the PVT sign-off table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{circuit.name}_{tech.name}" + (f"_trial{number}" if number is not None else "")
    artifacts: Dict[str, str] = {}
    deck = standalone_deck(circuit, tech, config, corner, timeout_s)
    path = out_dir / f"{tag}.cir"
    path.write_text(deck)
    artifacts["netlist"] = str(path)
    result = simulate_design(circuit, tech, config, timeout_s, corner)
    metrics = {k: float(v) for k, v in result["metrics"].items()}
    report: Dict[str, Any] = {
        "circuit": circuit.name,
        "technology": tech.name,
        "corner": result["corner"],
        "conditions": circuit.conditions,
        "trial": number,
        "sizing": {p.name: {"value": float(config[p.name]), "unit": UNITS[p.kind][0]} for p in circuit.params},
        "instances": result["info"].get("geometry", {}),
        "saturation_margin_mv": result["info"].get("saturation_margin_mv", {}),
        "metrics": metrics,
        "specs": [str(s) for s in circuit.specs],
        "violated": result["violated"],
        "simulation_error": result["error"],
    }
    so = None
    if run_signoff and result["error"] is None:
        so = signoff(circuit, tech, config, timeout_s=timeout_s)
        report["signoff"] = {"passed": so["passed"], "worst_corner": so["worst_corner"],
                             "corners": {k: {"fom": v["metrics"]["fom"], "violated": v["violated"]} for k, v in so["corners"].items()}}
    jpath = out_dir / f"{tag}_report.json"
    jpath.write_text(json.dumps(report, indent=2))
    lines = [
        f"# {circuit.title} on {tech.title} ({result['corner']})",
        "",
        f"FoM **{metrics['fom']:.4f}**; specs {'all met' if not result['violated'] else 'violated: ' + ', '.join(result['violated'])}.",
        "",
        "| parameter | value | unit |",
        "| --- | ---: | --- |",
        *[f"| {p.name} | {float(config[p.name]):.4g} | {UNITS[p.kind][0]} |" for p in circuit.params],
        "",
        "| instance | W (um, per finger) | L (um) | m | saturation margin (mV) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {k} | {g['w_um']:.4g} | {g['l_um']:.4g} | {g['m']} | {report['saturation_margin_mv'].get(k, float('nan')):.0f} |"
          for k, g in report["instances"].items()],
        "",
        "| metric | simulated |",
        "| --- | ---: |",
        *[f"| {k} | {v:.4g} |" for k, v in metrics.items()],
        "",
    ]
    if so is not None:
        lines += [f"PVT sign-off ({len(so['corners'])} corners): {'passed' if so['passed'] else 'FAILED'}; worst corner {so['worst_corner']}.", "",
                  "| corner | FoM | violated |", "| --- | ---: | --- |",
                  *[f"| {k} | {v['metrics']['fom']:.3f} | {', '.join(v['violated']) or '-'} |" for k, v in so["corners"].items()], ""]
    if result["error"]:
        lines.append(f"Simulation error: `{result['error']}`")
    mpath = out_dir / f"{tag}_report.md"
    mpath.write_text("\n".join(lines))
    artifacts.update({"report_json": str(jpath), "report_md": str(mpath)})
    ok = result["error"] is None
    return DeployResult(artifacts, ok=ok, metrics=metrics, message=f"wrote {len(artifacts)} files to {out_dir}", source=f"circuit_{circuit.name}")
