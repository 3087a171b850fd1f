"""Simulation cost on the PDK decks: the plugin's evaluation vs one raw ngspice run of the same deck.

    python benchmarks/gcn_rl_circuit/simulation_cost.py --designs 20

For each circuit and technology, a sequence of random sizings (as a search sees them) is timed
three ways, interleaved so that load on a shared machine hits all alike:

(a) the plugin: ``simulate_design`` -- for a new random sizing (transistors in new bins: the deck
    with the bins in use is loaded), and for the same sizing with every passive and bias 5 %
    larger right after it (same bins: ``alter`` only); each runs the circuit's whole test-bench
    procedure, reads the vectors, measures, computes the FoM;
(b) raw ngspice in the same shared library: load that design's stand-alone netlist and run the
    very same analyses and alters (the evaluation's command log) with no Python around them;
(c) ``ngspice -b`` on the deployed stand-alone deck (netlist + ``.control`` replaying the
    procedure), process start included.

Median milliseconds per evaluation; overhead = (a) / (b) (goal: under 1.5x).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from hwaml_gcn_rl_circuit.bench import get_bench
from hwaml_gcn_rl_circuit.circuits import CIRCUITS, get_circuit
from hwaml_gcn_rl_circuit.evaluator import circuit_space, simulate_design, sizes_si, standalone_deck
from hwaml_gcn_rl_circuit.simulator import default_simulator
from hwaml_gcn_rl_circuit.technology import get_technology


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--designs", type=int, default=20)
    ap.add_argument("--tech", nargs="+", default=["sky130", "gf180mcu"])
    ap.add_argument("--circuits", nargs="+", default=list(CIRCUITS))
    args = ap.parse_args()
    sim = default_simulator()
    ng = sim.ng
    raw_cmd = ng._ngspice_shared.ngSpice_Command
    exe = shutil.which("ngspice")
    tmp = Path(tempfile.mkdtemp())
    print("| circuit | tech | designs | plugin ms/eval (new bins: load) | plugin ms/eval (same bins: alter) | raw shared-library ms/eval (load + run) | overhead (load) | overhead (alter) | ngspice -b ms/eval |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tn in args.tech:
        tech = get_technology(tn)
        for name in args.circuits:
            c = get_circuit(name).configure(tech)
            space = circuit_space(c, tech)
            rng = np.random.default_rng(7)
            designs = [space.sample(rng) for _ in range(args.designs)]
            bench = get_bench(c, tech)
            simulate_design(c, tech, designs[0])  # warm: models parsed, library loaded
            t_plugin, t_alter, t_raw, t_cli = [], [], [], []
            passives = [p.name for p in c.params if p.kind in ("r", "c", "i")]
            for k, cfg in enumerate(designs):
                t0 = time.perf_counter()
                out = simulate_design(c, tech, cfg)
                t_plugin.append((time.perf_counter() - t0) * 1e3)
                if out["error"]:
                    continue
                # the same transistors' bins, new passive/bias values: the alter-only path
                near = {**cfg, **{p: cfg[p] * 1.05 for p in passives}}
                loads = bench.loads
                t0 = time.perf_counter()
                simulate_design(c, tech, near)
                if bench.loads == loads:
                    t_alter.append((time.perf_counter() - t0) * 1e3)
                log = list(bench.log)
                pre = [cmd for cmd in (f"option temp={bench.corner.temp:g}",)]
                netlist = bench.deck(sizes_si(c, cfg))
                # (b): one raw run of the same deck in the same library
                raw_cmd(b"remcirc")
                sim._loaded_key = None
                t0 = time.perf_counter()
                ng.load_circuit(netlist)
                for cmd in pre + log:
                    raw_cmd(cmd.encode())
                raw_cmd(b"destroy all")
                t_raw.append((time.perf_counter() - t0) * 1e3)
                raw_cmd(b"remcirc")
                if exe and k < max(3, args.designs // 4):
                    p = tmp / f"{name}_{tn}_{k}.cir"
                    p.write_text(standalone_deck(c, tech, cfg))
                    t0 = time.perf_counter()
                    subprocess.run([exe, "-b", str(p)], capture_output=True, timeout=300)
                    t_cli.append((time.perf_counter() - t0) * 1e3)
            pm, rm = statistics.median(t_plugin), statistics.median(t_raw)
            am = statistics.median(t_alter) if t_alter else float("nan")
            cli = statistics.median(t_cli) if t_cli else float("nan")
            print(f"| {name} | {tn} | {len(t_raw)} | {pm:.1f} | {am:.1f} | {rm:.1f} | {pm / rm:.2f}x | {am / rm:.2f}x | {cli:.1f} |", flush=True)


if __name__ == "__main__":
    main()
