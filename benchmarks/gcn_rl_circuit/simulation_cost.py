"""Simulation cost: the plugin's evaluation vs raw ngspice on the same decks.

    python benchmarks/gcn_rl_circuit/simulation_cost.py --repeats 50

For each circuit at its nominal sizing on n180, times (a) the plugin's
``simulate_design`` (render template, run every test bench in the shared
library with timeout handling, extract measurements, FoM), (b) raw InSpice
``NgSpiceShared`` load_circuit + run on the very same rendered decks, and
(c) ``ngspice -b`` as a subprocess per deck. Median milliseconds per
evaluation; the overhead column is (a) / (b) (goal: under 2x).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from hwaml_gcn_rl_circuit.circuits import CIRCUITS, get_circuit
from hwaml_gcn_rl_circuit.evaluator import nominal_config, simulate_design, sizes_si
from hwaml_gcn_rl_circuit.simulator import default_simulator
from hwaml_gcn_rl_circuit.technology import NODES


def median_ms(fns, repeats):
    """Median ms of each callable, measured interleaved so that load on a shared machine hits all alike."""
    for fn in fns:
        fn()  # warm
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--node", default="n180")
    args = ap.parse_args()
    tech = NODES[args.node]
    ng = default_simulator().ng
    from InSpice.Spice.NgSpice.Shared import NgSpiceCommandError

    def raw(decks):
        for deck in decks:
            ng.destroy("all")
            ng.load_circuit(deck)
            try:
                ng.run()
            except NgSpiceCommandError:
                pass  # BSIM's harmless parameter checks on stderr; the vectors are there
            for name in ng.plot_names:
                ng.plot(None, name)

    exe = shutil.which("ngspice")
    tmp = Path(tempfile.mkdtemp())
    print(f"| circuit | benches | plugin ms/eval | raw shared-library ms/eval | overhead | ngspice -b subprocess ms/eval |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in CIRCUITS:
        c = get_circuit(name)
        cfg = nominal_config(c, tech)
        decks = list(c.decks(sizes_si(c, cfg), tech).values())
        plugin, shared = median_ms([lambda: simulate_design(c, tech, cfg), lambda: raw(decks)], args.repeats)
        proc = float("nan")
        if exe:
            files = []
            for i, d in enumerate(decks):
                p = tmp / f"{name}{i}.cir"
                p.write_text(d)
                files.append(p)
            proc = median_ms([lambda: [subprocess.run([exe, "-b", str(p)], capture_output=True) for p in files]], max(5, args.repeats // 5))[0]
        print(f"| {name} | {len(decks)} | {plugin:.2f} | {shared:.2f} | {plugin / shared:.2f}x | {proc:.2f} |", flush=True)


if __name__ == "__main__":
    main()
