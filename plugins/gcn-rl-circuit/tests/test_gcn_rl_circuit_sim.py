"""SPICE evaluation on the real PDKs: designer checks, alter-vs-reload, corners, penalties."""

import math
import re

import numpy as np
import pytest

from hwaml import Candidate, RunContext, Trial
from hwaml_gcn_rl_circuit.bench import SIGNOFF_CORNERS, Corner, CircuitBench, get_bench
from hwaml_gcn_rl_circuit.circuits import CIRCUITS, get_circuit
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator, nominal_config, signoff, simulate_design, sizes_si
from hwaml_gcn_rl_circuit.simulator import SimulationError, SpiceSimulator
from hwaml_gcn_rl_circuit.technology import TECHNOLOGIES, characterize, get_technology


def ctx(tmp_path):
    return RunContext(cfg=None, run_dir=tmp_path, seed=0, rng=np.random.default_rng(0), objectives={"fom": "max"})


def configured(name, tech):
    t = get_technology(tech)
    return get_circuit(name).configure(t), t


@pytest.mark.parametrize("name", sorted(CIRCUITS))
@pytest.mark.parametrize("tech", ["sky130", "gf180mcu"])
def test_nominal_design_simulates(name, tech):
    circuit, t = configured(name, tech)
    out = simulate_design(circuit, t, nominal_config(circuit, t))
    m = out["metrics"]
    assert out["error"] is None, out["error"]
    assert m["sim_failed"] == 0.0
    assert all(math.isfinite(v) for v in m.values())
    assert m["power_mw"] > 0 and m["area_um2"] > 0
    assert m["fom"] > circuit.failure_fom
    assert set(m) == set(circuit.metric_names())  # what the evaluator declares is what it reports
    assert {s.metric for s in circuit.specs} <= set(m)
    # every transistor's saturation margin is reported, the worst one is the metric
    margins = out["info"]["saturation_margin_mv"]
    assert set(margins) == {e.name.lower() for e in circuit.template().elements if e.kind in ("nmos", "pmos")}
    assert m["sat_margin_mv"] == pytest.approx(min(margins.values()), abs=0.1)


@pytest.mark.parametrize("name", sorted(CIRCUITS))
def test_declared_metrics_include_every_fom_term_and_spec(tmp_path, name):
    ev = CircuitEvaluator(name, "sky130")
    declared = ev.metric_names(ctx(tmp_path))
    assert len(declared) == len(set(declared))
    assert {"fom", "specs_met", "sim_failed", "sim_ms", "sat_margin_mv"} <= set(declared)
    assert {m.name for m in ev.circuit.metrics} | {s.metric for s in ev.circuit.specs} <= set(declared)


def test_technologies_are_the_pdk_models():
    for name, t in TECHNOLOGIES.items():
        for kind in ("nmos", "pmos"):
            bins = t.bins(kind)
            assert len(bins) >= 16 and all(b.lmin < b.lmax and b.wmin < b.wmax for b in bins)
            assert re.search(r"level\s*=\s*54", bins[0].text)  # BSIM4
        assert set(t.bins("nmos", "ss")) != set(t.bins("nmos", "ff"))
    c = characterize("sky130")
    g = characterize("gf180mcu")
    # the 3.3 V GF180MCU devices have the higher threshold and intrinsic gain, SKY130's nMOS the higher gm/Id
    assert 0.4 < c["vth_n"] < 0.8 and 0.5 < g["vth_n"] < 0.9
    assert g["gain_n"] > c["gain_n"] and c["gm_id_n"] > g["gm_id_n"]
    with pytest.raises(ValueError, match="unknown technology 'n45'"):
        get_technology("n45")
    with pytest.raises(ValueError, match="unknown process corner 'xx'"):
        Corner.parse("xx/27")


def test_sizes_snap_to_the_grid_and_wide_devices_get_fingers():
    t = get_technology("sky130")
    g = t.geometry(250.0123e-6, 0.15321e-6)
    assert g.m == 3 and g.w <= t.wmax_finger and g.w_total == pytest.approx(250e-6, rel=1e-3)
    assert round(g.w / t.grid) * t.grid == pytest.approx(g.w) and g.l == pytest.approx(0.155e-6)
    assert g.ad == pytest.approx(g.w * t.ldiff) and g.pd == pytest.approx(2 * (g.w + t.ldiff))
    small = t.geometry(0.1e-6, 0.05e-6)  # below the PDK's minimum: clipped to it
    assert small.w == pytest.approx(t.wmin) and small.l == pytest.approx(t.lmin)


def test_only_the_bins_in_use_are_loaded_and_every_device_has_junctions():
    circuit, t = configured("two_stage_tia", "sky130")
    tb = CircuitBench(circuit, t)
    deck = tb.deck(sizes_si(circuit, nominal_config(circuit, t)))
    cards = re.findall(r"^\.model (\S+)", deck, re.M)
    assert 1 <= len(cards) <= 4 and all(re.fullmatch(r"[np]ch\.\d+", c) for c in cards)
    mos = [l for l in deck.splitlines() if l[:1] in "Mm"]
    assert len(mos) == 4
    for line in mos:
        for key in ("ad=", "as=", "pd=", "ps=", "m="):
            assert key in line, line


def test_alter_in_place_matches_a_fresh_load():
    """A circuit kept loaded and resized with alter gives what a freshly parsed deck gives."""
    circuit, t = configured("two_stage_amp", "sky130")
    tb = get_bench(circuit, t)
    base = nominal_config(circuit, t)
    same_bins = {**base, "ibias": base["ibias"] * 1.7, "cc": base["cc"] * 2.0, "w6": base["w6"] * 1.05}
    first = simulate_design(circuit, t, base)["metrics"]
    loads = tb.loads
    altered = simulate_design(circuit, t, same_bins)["metrics"]
    assert tb.loads == loads  # no re-parse: only alter
    tb.sim.load("* other\nV1 a 0 dc 1\nR1 a 0 1k\n.end\n", "other")  # force a fresh load next time
    fresh = simulate_design(circuit, t, same_bins)["metrics"]
    assert tb.loads == loads + 1
    for k in ("gain_db", "ugbw_hz", "phase_margin_deg", "power_mw", "sat_margin_mv", "vout_dc"):
        assert altered[k] == pytest.approx(fresh[k], rel=1e-6, abs=1e-9), k
    assert altered["power_mw"] != pytest.approx(first["power_mw"], rel=1e-3)


def test_triode_current_sink_fails_the_design():
    """The defect of the issue: a TIA that meets gain/bandwidth/peaking with its current sink in
    triode and the output near ground is rejected by the saturation and output-level checks."""
    circuit, t = configured("two_stage_tia", "sky130")
    out = simulate_design(circuit, t, nominal_config(circuit, t))
    m = out["metrics"]
    assert m["zt_ohm"] >= 1e3 and m["bandwidth_hz"] >= 1e8 and m["peaking_db"] <= 1.0  # the old specs pass
    assert out["info"]["worst_device"] == "m4" and out["info"]["saturation_margin_mv"]["m4"] < 0
    assert m["triode_devices"] >= 1 and m["vout_dc"] < 0.2
    assert "sat_margin_mv >= 50" in out["violated"] and "vout_dc >= 0.2" in out["violated"]
    assert m["specs_met"] == 0.0


def test_junction_capacitance_lowers_the_bandwidth():
    circuit, t = configured("two_stage_tia", "gf180mcu")
    tb = CircuitBench(circuit, t)
    cfg = nominal_config(circuit, t)
    deck = tb.deck(sizes_si(circuit, cfg))
    bare = re.sub(r" ad=\S+ as=\S+ pd=\S+ ps=\S+", "", deck)
    assert bare != deck
    sim = SpiceSimulator()
    bws = []
    for d in (deck, bare):
        res = sim.simulate(d.replace(".end\n", ".ac dec 50 1e3 1e11\n.end\n"))
        ac = res["ac1"]
        f, z = np.real(ac["frequency"]), np.abs(ac["out"])
        bws.append(f[np.flatnonzero(z < z[0] / math.sqrt(2))[0]])
    assert bws[0] < 0.97 * bws[1]  # drain/source junctions load the nodes


def test_ldo_is_measured_at_three_loads_with_dropout_and_a_load_step():
    circuit, t = configured("ldo", "sky130")
    out = simulate_design(circuit, t, nominal_config(circuit, t))
    m = out["metrics"]
    assert out["error"] is None, out["error"]
    pms = [m["pm_light_deg"], m["pm_mid_deg"], m["pm_full_deg"]]
    assert m["phase_margin_deg"] == min(pms)
    assert max(pms) - min(pms) > 10.0  # the loop moves with the load: one load cannot sign it off
    # the nominal design has enough margin at 1 mA's neighbourhood only: the light load fails it
    assert m["pm_light_deg"] < 45.0 and "phase_margin_deg >= 45" in out["violated"]
    assert 0 < m["dropout_mv"] < 1000 and m["undershoot_mv"] > 0 and m["load_reg_ohm"] > 0


def test_pvt_corners_move_the_metrics_and_signoff_lists_27():
    circuit, t = configured("two_stage_tia", "gf180mcu")
    cfg = nominal_config(circuit, t)
    ss = simulate_design(circuit, t, cfg, corner="ss/125/0.9")["metrics"]
    ff = simulate_design(circuit, t, cfg, corner="ff/-40/1.1")["metrics"]
    assert ff["power_mw"] > 1.5 * ss["power_mw"] and ff["bandwidth_hz"] > ss["bandwidth_hz"]
    assert len(SIGNOFF_CORNERS) == 27
    so = signoff(circuit, t, cfg, corners=SIGNOFF_CORNERS[::4])
    assert len(so["corners"]) == 7 and so["worst_corner"] in so["corners"]
    # the evaluator's worst case over corners
    ev = CircuitEvaluator("two_stage_tia", "gf180mcu", corners=["tt", "ss/125/0.9"])
    res = ev.evaluate(Candidate(cfg, number=0), None)
    assert res.metrics["fom"] == pytest.approx(min(simulate_design(circuit, t, cfg)["metrics"]["fom"], simulate_design(circuit, t, cfg, corner="ss/125/0.9")["metrics"]["fom"]))
    assert set(res.info["per_corner"]) == {"tt/27C/1Vdd", "ss/125C/0.9Vdd"}


def test_conditions_and_specs_are_configurable_per_technology():
    ev = CircuitEvaluator("two_stage_tia", "sky130", conditions={"sky130": {"cpd": 300e-15}}, specs={"sky130": {"bandwidth_hz": [">=", 2e8], "swing_v": None}})
    assert ev.circuit.conditions["cpd"] == 300e-15
    assert any(str(s) == "bandwidth_hz >= 2e+08" for s in ev.circuit.specs)
    assert not any(s.metric == "swing_v" for s in ev.circuit.specs)
    with pytest.raises(ValueError, match="unknown condition 'cpdd'"):
        CircuitEvaluator("two_stage_tia", "sky130", conditions={"sky130": {"cpdd": 1.0}})
    with pytest.raises(ValueError, match="keys are technologies"):
        CircuitEvaluator("two_stage_tia", "sky130", specs={"bandwidth_hz": [">=", 1]})


def test_compact_deck_loads_the_same_circuit_and_plots_are_read_lazily():
    """The simulator loads each model card on one line and reads vectors on demand; results
    are the PDK deck's, vectors read after a release are refused, an analysis times out."""
    circuit, t = configured("two_stage_tia", "gf180mcu")
    tb = get_bench(circuit, t)
    si = sizes_si(circuit, nominal_config(circuit, t))
    full, compact = tb.deck(si), tb.deck(si, compact=True)
    assert len(compact.splitlines()) * 5 < len(full.splitlines())
    sim, ops = tb.sim, []
    for deck in (full, compact):
        sim.load(deck, ("test", len(deck)))
        op = sim.analysis("op")
        ops.append({k: float(op[k][0]) for k in ("out", "@m1[vds]", "@m4[vdsat]", "@m3[gm]")})
    assert ops[0] == ops[1]
    assert "@m2[id]" in set(op) and "nonexistent" not in op
    kept = op["out"]
    sim.release()
    assert op["out"] is kept  # read before the release: kept
    with pytest.raises(SimulationError, match="released"):
        op["@m2[vds]"]
    sim.load("t\nV1 a 0 sin(0 1 1g)\nR1 a b 1k\nC1 b 0 1p\n.end\n", "slow")
    sim.timeout_s = 0.3
    try:
        with pytest.raises(SimulationError, match="timed out"):
            sim.analysis("tran 1p 10u")
    finally:
        sim.timeout_s = 10.0
    assert sim.analysis("op")["b"][0] == pytest.approx(0.0, abs=1e-9)


def test_simulator_errors_and_timeout_raise_simulation_error():
    sim = SpiceSimulator(timeout_s=0.3)
    with pytest.raises(SimulationError, match="timestep too small|singular"):
        sim.simulate("t\nV1 a 0 dc 1\nV2 a 0 dc 2\nR1 a 0 1k\n.op\n.end\n")
    with pytest.raises(SimulationError, match="rejected"):
        sim.simulate("t\nV1 a 0 dc 1\nM1 a a 0 0 nox W=1u L=1u\n.op\n.end\n")
    with pytest.raises(SimulationError, match="timed out"):
        sim.simulate("t\nV1 a 0 sin(0 1 1g)\nR1 a b 1k\nC1 b 0 1p\n.tran 1p 10u\n.end\n")
    assert "op1" in sim.simulate("t\nV1 a 0 dc 1\nR1 a 0 1k\n.op\n.end\n")
    sim.timeout_s = 10.0


def test_non_convergent_netlist_gives_penalised_fom(tmp_path):
    circuit = get_circuit("two_stage_tia")
    text = circuit.template().text.replace("Vnb nb 0 dc ${vbn}", "Vnb nb 0 dc ${vbn}\nVshort vdd 0 dc 0.1")
    path = tmp_path / "broken.cir"
    path.write_text(text)
    ev = CircuitEvaluator("two_stage_tia", "sky130", template=str(path))
    cfg = nominal_config(ev.circuit, ev.tech)
    res = ev.evaluate(Candidate(cfg, number=0), ctx(tmp_path))
    assert res.metrics["sim_failed"] == 1.0
    assert res.metrics["fom"] == ev.circuit.failure_fom
    assert "simulation_error" in res.info


def test_absurd_sizing_never_raises(tmp_path):
    ev = CircuitEvaluator("three_stage_tia", "sky130")
    space = ev.search_space(ctx(tmp_path))
    for corner in (0, 1):
        cfg = {d.name: (d.low if corner == 0 else d.high) for d in space.dims}
        res = ev.evaluate(Candidate(cfg, number=corner), ctx(tmp_path))
        assert math.isfinite(res.metrics["fom"]) and res.metrics["fom"] >= ev.circuit.failure_fom


def test_fom_penalises_violated_specs():
    circuit, _ = configured("two_stage_amp", "sky130")
    good = {"gain_db": 70.0, "ugbw_hz": 1e8, "phase_margin_deg": 70.0, "power_mw": 0.1, "area_scaled_um2": 100.0,
            "sat_margin_mv": 100.0, "offset_mv": 1.0, "swing_v": 1.2}
    fom_ok, violated = circuit.fom(good)
    assert violated == []
    fom_bad, violated = circuit.fom({**good, "phase_margin_deg": 30.0})
    assert violated == ["phase_margin_deg >= 60"]
    assert fom_bad < fom_ok - 1.0  # the PM term shrinks and the full penalty applies
    _, violated = circuit.fom({**good, "sat_margin_mv": -20.0})
    assert violated == ["sat_margin_mv >= 50"]


def test_deploy_writes_a_standalone_deck_and_report(tmp_path):
    ev = CircuitEvaluator("ldo", "gf180mcu", signoff=False)
    cfg = nominal_config(ev.circuit, ev.tech)
    res = ev.deploy(Trial(3, Candidate(cfg, number=3), "complete", metrics={"fom": 0.0}), ctx(tmp_path))
    assert res.ok and res.source == "circuit_ldo"
    assert res.artifacts["netlist"] == str(tmp_path / "deploy" / "ldo_gf180mcu_trial3.cir")
    deck = (tmp_path / "deploy" / "ldo_gf180mcu_trial3.cir").read_text()
    assert "${" not in deck and ".model pch." in deck and ".control" in deck and "tran 50n 6u" in deck
    report = (tmp_path / "deploy" / "ldo_gf180mcu_trial3_report.md").read_text()
    assert "FoM" in report and "line_reg" in report and "saturation margin" in report
    assert res.metrics["fom"] > ev.circuit.failure_fom


@pytest.mark.parametrize("name,tech", [("two_stage_tia", "sky130"), ("two_stage_amp", "gf180mcu")])
def test_hand_sized_gm_id_design_meets_the_specs(name, tech):
    from hwaml_gcn_rl_circuit.human import human_design, lookup

    cfg, why = human_design(name, tech)
    circuit, t = configured(name, tech)
    out = simulate_design(circuit, t, cfg)
    assert out["violated"] == [], out["violated"]
    assert any("gm/Id" in line for line in why)
    table = lookup(tech, "nmos", 2 * t.lmin)
    assert np.all(np.diff(table["id_w"]) > -1e-12) and table["gm_id"].max() > 15  # weak inversion reached
