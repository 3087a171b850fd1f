"""Simulation cost on the PDK decks: the plugin's evaluation vs one raw ngspice run of the same deck.

    python benchmarks/gcn_rl_circuit/simulation_cost.py --designs 8 --repeats 5

For each circuit and technology, random sizings (as a search sees them) are timed, each way
from the same simulator state, so that both sides do the same numerical work (the operating
point of these circuits converges along a path that depends on the state the previous
analysis left: from a fresh load it is deterministic):

(a) plugin, new bins: ``simulate_design`` right after a fresh load of nothing (the bench loads
    the deck with the bins in use); the circuit's whole test-bench procedure, reading the
    vectors, measuring, the FoM;
(b) raw, new bins: the same deck *as written* (every model line, the char array prepared
    beforehand) handed to ``ngSpice_Circ``, then the very same commands as the evaluation's log
    (``alter`` of the bench elements, the analyses) in the foreground, no Python in between;
(c) plugin, same bins: after (a), the same design with every passive and bias 5 % larger
    (``alter`` only) -- and (d) raw, same bins: after (b), the very same ``alter`` commands and
    analyses;
(e) ``ngspice -b`` on the deployed stand-alone deck (process start included; once per design).

The plugin also times, inside the same evaluation, every call into ngspice (``ngSpice_Circ``,
each ``alter``/``destroy``, each analysis from its command to the end of ngspice's background
thread): "of it in ngspice" and "overhead (same run)" = plugin / that time, the Python share
of one evaluation measured in that very evaluation (the most load-proof of the ratios).

Each of (a)-(d) is repeated ``--repeats`` times, interleaved, and the fastest repeat is kept;
the table gives medians over designs. Overhead = plugin / raw of the same design and path
(goal: under 1.5x). Why the fastest: on a machine shared with other jobs (a 2-vCPU VM here) the
same analysis with the same Newton iterations (checked with ``rusage totiter``) takes anywhere
from 4 to 100 ms, in wall *and* in CPU time (steal and cache contention count as the process's
time); the fastest of several repeats is what a quiet machine measures. ``--cpu`` times with
``time.process_time`` instead of wall time.
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
    ap.add_argument("--designs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tech", nargs="+", default=["sky130", "gf180mcu"])
    ap.add_argument("--circuits", nargs="+", default=list(CIRCUITS))
    ap.add_argument("--no-cli", action="store_true", help="skip the ngspice -b column")
    ap.add_argument("--bg", action="store_true", help="raw analyses in ngspice's background thread (as the plugin runs them)")
    ap.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    args = ap.parse_args()
    clock = time.process_time if args.cpu else time.perf_counter
    from InSpice.Spice.NgSpice.Shared import FFI, ffi

    sim = default_simulator()
    lib = sim.ng._ngspice_shared
    exe = None if args.no_cli else shutil.which("ngspice")
    tmp = Path(tempfile.mkdtemp())

    def fresh() -> None:
        sim.release()
        lib.ngSpice_Command(b"remcirc")
        sim._loaded_key = None

    def c_array(deck: str):
        keep = [ffi.new("char[]", line.encode()) for line in deck.splitlines() if line] + [ffi.new("char[]", b""), FFI.NULL]
        return keep, ffi.new("char *[]", keep)

    ng = sim.ng

    def raw_run(arr, cmds) -> float:  # noqa: ANN001
        t0 = clock()
        if arr is not None:
            lib.ngSpice_Circ(arr)
        for cmd in cmds:
            if args.bg and not cmd.startswith((b"alter", b"option")):
                ng._is_running = None
                lib.ngSpice_Command(b"bg_" + cmd)
                while ng._is_running is not True:
                    time.sleep(1e-4)
            else:
                lib.ngSpice_Command(cmd)
        lib.ngSpice_Command(b"destroy all")
        return (clock() - t0) * 1e3

    print("| circuit | tech | designs | plugin ms (load) | of it in ngspice | overhead (load, same run) | raw ms (load + run) | overhead (load, vs raw) "
          "| plugin ms (alter) | of it in ngspice | overhead (alter, same run) | raw ms (alter + run) | overhead (alter, vs raw) | ngspice -b ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tn in args.tech:
        tech = get_technology(tn)
        for name in args.circuits:
            c = get_circuit(name).configure(tech)
            space = circuit_space(c, tech)
            rng = np.random.default_rng(7)
            designs = [space.sample(rng) for _ in range(args.designs)]
            bench = get_bench(c, tech)
            simulate_design(c, tech, designs[0])  # warm: models parsed, library loaded
            passives = [p.name for p in c.params if p.kind in ("r", "c", "i")]
            sent: list = []
            command = sim.command

            def recording(cmd: str) -> None:
                sent.append(cmd)
                command(cmd)

            rows = {"pl": [], "rl": [], "pa": [], "ra": [], "il": [], "ia": [], "cli": []}
            for k, cfg in enumerate(designs):
                near = {**cfg, **{p: cfg[p] * 1.05 for p in passives}}
                keep, arr = c_array(bench.deck(sizes_si(c, cfg)))
                best = {key: float("inf") for key in ("pl", "rl", "pa", "ra")}
                inside = {"pl": float("nan"), "pa": float("nan")}
                failed = False
                for _ in range(args.repeats):
                    fresh()
                    t0 = clock()
                    out = simulate_design(c, tech, cfg)
                    t = (clock() - t0) * 1e3
                    if t < best["pl"]:
                        best["pl"], inside["pl"] = t, out["info"]["spice_ms"]
                    if out["error"]:
                        failed = True
                        break
                    cmds = [f"option temp={bench.corner.temp:g}".encode()] + [x.encode() for x in bench.log]
                    sent.clear()
                    sim.command = recording
                    t0 = clock()
                    out_near = simulate_design(c, tech, near)
                    t = (clock() - t0) * 1e3
                    if t < best["pa"]:
                        best["pa"], inside["pa"] = t, out_near["info"]["spice_ms"]
                    sim.command = command
                    alter_cmds = [x.encode() for x in sent if x not in bench.log] + [x.encode() for x in bench.log]
                    # the raw side: the same deck from the same fresh state, then the same alters
                    fresh()
                    best["rl"] = min(best["rl"], raw_run(arr, cmds))
                    best["ra"] = min(best["ra"], raw_run(None, alter_cmds))
                fresh()
                if failed:
                    continue
                for key, v in best.items():
                    rows[key].append(v)
                rows["il"].append(inside["pl"])
                rows["ia"].append(inside["pa"])
                if exe and k < max(3, args.designs // 2):
                    p = tmp / f"{name}_{tn}_{k}.cir"
                    p.write_text(standalone_deck(c, tech, cfg))
                    t0 = time.perf_counter()
                    subprocess.run([exe, "-b", str(p)], capture_output=True, timeout=300)
                    rows["cli"].append((time.perf_counter() - t0) * 1e3)
            med = {k: (statistics.median(v) if v else float("nan")) for k, v in rows.items()}
            ratio = {k: statistics.median(np.array(rows[a]) / np.array(rows[b])) for k, a, b in
                     (("ol", "pl", "rl"), ("oa", "pa", "ra"), ("il", "pl", "il"), ("ia", "pa", "ia"))}
            print(f"| {name} | {tn} | {len(rows['pl'])} | {med['pl']:.1f} | {med['il']:.1f} | {ratio['il']:.2f}x | {med['rl']:.1f} | {ratio['ol']:.2f}x "
                  f"| {med['pa']:.1f} | {med['ia']:.1f} | {ratio['ia']:.2f}x | {med['ra']:.1f} | {ratio['oa']:.2f}x | {med['cli']:.1f} |", flush=True)

if __name__ == "__main__":
    main()
