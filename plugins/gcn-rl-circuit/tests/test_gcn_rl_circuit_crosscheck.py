"""Cross-check against the ngspice command line: the best design of a short search, re-simulated
in batch mode (``ngspice -b``) with this test's own .control/meas decks, agrees on every metric."""

import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from hwaml.builtin.searchers import RandomSearch
from hwaml.loop import SearchLoop
from hwaml_gcn_rl_circuit.bench import CircuitBench
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator, simulate_design, sizes_si

NGSPICE = shutil.which("ngspice")


def batch(deck: str, tmp_path, name: str) -> dict:
    """Run ``ngspice -b`` on the deck; every ``name = value`` line it prints, by name."""
    path = tmp_path / f"{name}.cir"
    path.write_text(deck)
    proc = subprocess.run([NGSPICE, "-b", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s*([@\w\[\]().#/]+)\s*=\s*([-+0-9.eE]+)", line)
        if m:
            out[m.group(1).lower()] = float(m.group(2))
    return out


def netlist(ev, cfg):
    bench = CircuitBench(ev.circuit, ev.tech)
    return bench, bench.deck(sizes_si(ev.circuit, cfg)).replace("\n.end\n", "\n")


def best_of_short_run(ev, tmp_path, trials=5):
    res = SearchLoop({"searcher": RandomSearch(), "evaluator": ev}, tmp_path / "run", {"fom": "max"}, budget_trials=trials, seed=3).run()
    ok = [t for t in res.trials if t.ok and t.metrics["sim_failed"] == 0.0]
    return max(ok, key=lambda t: t.metrics["fom"]).candidate.config


def op_prints(devices):
    return [f"print {' '.join(f'@{d}[vds] @{d}[vdsat]' for d in devices)}"]


def margins(vals, devices):
    return min(abs(vals[f"@{d}[vds]"]) - abs(vals[f"@{d}[vdsat]"]) for d in devices) * 1e3


@pytest.mark.parametrize("tech", ["sky130", "gf180mcu"])
def test_tia_metrics_match_the_ngspice_command_line(tmp_path, tech):
    ev = CircuitEvaluator("two_stage_tia", tech)
    cfg = best_of_short_run(ev, tmp_path)
    mine = simulate_design(ev.circuit, ev.tech, cfg)["metrics"]
    bench, net = netlist(ev, cfg)
    vdd = ev.circuit.conditions["vdd"]
    deck = net + "\n".join([
        ".control",
        "op",
        "print v(out) i(vdd) @m2[vdsat] @m3[vgs] @m4[vdsat]",
        *op_prints(bench.mos_devices),
        "ac dec 50 1e3 1e11",
        "meas ac zt find vm(out) at=1e3",
        "meas ac zmax max vm(out)",
        "let lvl = zt / sqrt(2)",
        "meas ac bw when vm(out)=$&lvl fall=1",
        "noise v(out) iin dec 20 1e3 1e11",
        "setplot noise2",
        "print onoise_total",
        "quit",
        ".endc",
        ".end",
    ]) + "\n"
    ref = batch(deck, tmp_path, "tia")
    want = {
        "zt_ohm": ref["zt"],
        "bandwidth_hz": ref["bw"],
        "peaking_db": 20 * math.log10(max(ref["zmax"], ref["zt"]) / ref["zt"]),
        "power_mw": abs(ref["i(vdd)"]) * vdd * 1e3,
        "vout_dc": ref["v(out)"],
        "noise_na": ref["onoise_total"] / ref["zt"] * 1e9,
        "swing_v": vdd - abs(ref["@m2[vdsat]"]) - abs(ref["@m3[vgs]"]) - abs(ref["@m4[vdsat]"]),
        "sat_margin_mv": margins(ref, bench.mos_devices),
    }
    for k, v in want.items():
        assert mine[k] == pytest.approx(v, rel=0.01, abs=1e-3 if k == "peaking_db" else 0.0), k


def test_amplifier_metrics_match_the_ngspice_command_line(tmp_path):
    ev = CircuitEvaluator("two_stage_amp", "sky130")
    cfg = best_of_short_run(ev, tmp_path)
    mine = simulate_design(ev.circuit, ev.tech, cfg)["metrics"]
    bench, net = netlist(ev, cfg)
    cond = ev.circuit.conditions
    deck = net + "\n".join([
        ".control",
        "op",
        "print v(out) i(vdd) @m6[vdsat] @m7[vdsat]",
        *op_prints(bench.mos_devices),
        "ac dec 50 1 1e11",
        "meas ac a0 find vdb(out) at=1",
        "meas ac ugbw when vm(out)=1 fall=1",
        "let ph = 180 / pi * cph(v(out))",
        "meas ac phu find ph when vm(out)=1 fall=1",
        "quit",
        ".endc",
        ".end",
    ]) + "\n"
    ref = batch(deck, tmp_path, "amp")
    want = {
        "gain_db": ref["a0"],
        "ugbw_hz": ref["ugbw"],
        "phase_margin_deg": 180.0 + ref["phu"] - 360.0 * round(ref.get("ph0", 0.0) / 360.0),
        "power_mw": abs(ref["i(vdd)"]) * cond["vdd"] * 1e3,
        "vout_dc": ref["v(out)"],
        "offset_mv": abs(ref["v(out)"] - cond["vcm"]) * 1e3,
        "swing_v": cond["vdd"] - abs(ref["@m6[vdsat]"]) - abs(ref["@m7[vdsat]"]),
        "sat_margin_mv": margins(ref, bench.mos_devices),
    }
    for k, v in want.items():
        tol = 0.5 if k == "offset_mv" else 0.0  # a difference of two nearly equal voltages
        assert mine[k] == pytest.approx(v, rel=0.01, abs=tol), (k, mine[k], v)
