"""SPICE evaluation: finite metrics at nominal sizing on several nodes, penalties instead of crashes."""

import math

import numpy as np
import pytest

from hwaml import Candidate, RunContext, Trial
from hwaml_gcn_rl_circuit.circuits import CIRCUITS, get_circuit
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator, nominal_config, simulate_design
from hwaml_gcn_rl_circuit.simulator import SimulationError, SpiceSimulator
from hwaml_gcn_rl_circuit.technology import NODES, get_technology


def ctx(tmp_path):
    return RunContext(cfg=None, run_dir=tmp_path, seed=0, rng=np.random.default_rng(0), objectives={"fom": "max"})


@pytest.mark.parametrize("name", sorted(CIRCUITS))
@pytest.mark.parametrize("node", ["n180", "n45"])
def test_nominal_design_simulates(name, node):
    circuit, tech = get_circuit(name), get_technology(node)
    out = simulate_design(circuit, tech, nominal_config(circuit, tech))
    m = out["metrics"]
    assert out["error"] is None, out["error"]
    assert m["sim_failed"] == 0.0
    assert all(math.isfinite(v) for v in m.values())
    assert m["power_mw"] > 0 and m["area_um2"] > 0
    assert m["fom"] > circuit.failure_fom
    for metric in circuit.metrics:
        assert metric.name in m
    assert set(m) == set(circuit.metric_names())  # what the evaluator declares is what it reports
    assert {s.metric for s in circuit.specs} <= set(m)


@pytest.mark.parametrize("name", sorted(CIRCUITS))
def test_declared_metrics_include_every_fom_term_and_spec(tmp_path, name):
    ev = CircuitEvaluator(name, "n90")
    declared = ev.metric_names(ctx(tmp_path))
    assert len(declared) == len(set(declared))
    assert {"fom", "specs_met", "sim_failed", "sim_ms"} <= set(declared)
    assert {m.name for m in ev.circuit.metrics} | {s.metric for s in ev.circuit.specs} <= set(declared)


def test_nodes_differ_in_simulated_behaviour():
    circuit = get_circuit("two_stage_amp")
    gains = {n: simulate_design(circuit, NODES[n], nominal_config(circuit, NODES[n]))["metrics"]["gain_db"] for n in ("n180", "n45")}
    # a shorter channel and lower supply cost intrinsic gain
    assert gains["n180"] > gains["n45"] + 3.0


def test_five_nodes_have_scaled_supply_and_length():
    names = sorted(NODES, key=lambda n: -NODES[n].lmin)
    assert names == ["n180", "n130", "n90", "n65", "n45"]
    vdd = [NODES[n].vdd for n in names]
    assert vdd == sorted(vdd, reverse=True)
    assert ".model nch nmos level=8" in NODES["n45"].model_cards()
    with pytest.raises(ValueError, match="unknown technology 'n7'"):
        get_technology("n7")


def test_simulator_errors_and_timeout_raise_simulation_error():
    sim = SpiceSimulator(timeout_s=0.3)
    with pytest.raises(SimulationError, match="timestep too small|singular"):
        sim.simulate("t\nV1 a 0 dc 1\nV2 a 0 dc 2\nR1 a 0 1k\n.op\n.end\n")
    with pytest.raises(SimulationError, match="rejected"):
        sim.simulate("t\nV1 a 0 dc 1\nM1 a a 0 0 nox W=1u L=1u\n.op\n.end\n")
    with pytest.raises(SimulationError, match="timed out"):
        sim.simulate("t\nV1 a 0 sin(0 1 1g)\nR1 a b 1k\nC1 b 0 1p\n.tran 1p 10u\n.end\n")
    assert "op1" in sim.simulate("t\nV1 a 0 dc 1\nR1 a 0 1k\n.op\n.end\n")


def test_non_convergent_netlist_gives_penalised_fom(tmp_path):
    circuit = get_circuit("two_stage_tia")
    text = circuit.template().text.replace("Vnb nb 0 dc ${vbn}", "Vnb nb 0 dc ${vbn}\nVshort vdd 0 dc 0.1")
    path = tmp_path / "broken.cir"
    path.write_text(text)
    ev = CircuitEvaluator("two_stage_tia", "n180", template=str(path))
    cfg = nominal_config(ev.circuit, ev.tech)
    res = ev.evaluate(Candidate(cfg, number=0), ctx(tmp_path))
    assert res.metrics["sim_failed"] == 1.0
    assert res.metrics["fom"] == ev.circuit.failure_fom
    assert "simulation_error" in res.info


def test_absurd_sizing_never_raises(tmp_path):
    ev = CircuitEvaluator("three_stage_tia", "n45")
    space = ev.search_space(ctx(tmp_path))
    for corner in (0, 1):
        cfg = {d.name: (d.low if corner == 0 else d.high) for d in space.dims}
        res = ev.evaluate(Candidate(cfg, number=corner), ctx(tmp_path))
        assert math.isfinite(res.metrics["fom"]) and res.metrics["fom"] >= ev.circuit.failure_fom


def test_fom_penalises_violated_specs():
    circuit = get_circuit("two_stage_amp")
    good = {"gain_db": 70.0, "ugbw_hz": 1e8, "phase_margin_deg": 70.0, "power_mw": 0.1, "area_scaled_um2": 100.0}
    fom_ok, violated = circuit.fom(good)
    assert violated == []
    fom_bad, violated = circuit.fom({**good, "phase_margin_deg": 30.0})
    assert violated == ["phase_margin_deg >= 60"]
    assert fom_bad < fom_ok - 1.0  # the PM term shrinks and the full penalty applies


def test_deploy_writes_netlist_and_report(tmp_path):
    ev = CircuitEvaluator("ldo", "n130")
    cfg = nominal_config(ev.circuit, ev.tech)
    res = ev.deploy(Trial(3, Candidate(cfg, number=3), "complete", metrics={"fom": 0.0}), ctx(tmp_path))
    assert res.ok and res.source == "circuit_ldo"
    assert res.artifacts["netlist_line"] == str(tmp_path / "deploy" / "ldo_n130_trial3_line.cir")
    netlists = sorted((tmp_path / "deploy").glob("ldo_n130_trial3_*.cir"))
    assert [p.name for p in netlists] == ["ldo_n130_trial3_line.cir", "ldo_n130_trial3_load.cir", "ldo_n130_trial3_loop.cir"]
    deck = netlists[0].read_text()
    assert "${" not in deck and ".model pch pmos" in deck
    report = (tmp_path / "deploy" / "ldo_n130_trial3_report.md").read_text()
    assert "FoM" in report and "line_reg" in report
    assert res.metrics["fom"] > ev.circuit.failure_fom
