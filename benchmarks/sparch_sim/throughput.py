"""Simulator speed and peak memory against scipy's own ``A @ B`` of the same matrix.

Every measurement runs in a fresh child process so that its peak resident memory
(``ru_maxrss``) is its own: one child generates the matrix and runs the full SpArch
simulation (condensed + Huffman + Belady prefetcher, symbolic counting, timing
model), another generates the same matrix and runs scipy.sparse's ``A @ B``. The
matrix generation is timed separately and left out of both times; both peaks
include it (and the interpreter, numpy, scipy and, for the simulator, numba).

Run:  python benchmarks/sparch_sim/throughput.py [--large] [--check]
      --large adds stand-ins with 10M+ non-zeros (cit-Patents, roadNet-CA);
      --check also runs the numeric product inside the simulator and compares it with scipy's
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

MATRICES = [
    {"kind": "rmat", "scale": 14, "edge_factor": 8, "seed": 5},
    {"kind": "poisson3d", "n": 55},
    {"kind": "rmat", "scale": 17, "edge_factor": 8, "seed": 9},  # 1M non-zeros, 3.3e8 products
]
LARGE = [
    {"kind": "standin", "matrix": "roadNet-CA"},  # 5.5M non-zeros
    {"kind": "rmat", "scale": 20, "edge_factor": 10, "seed": 3, "a": 0.45, "b": 0.22, "c": 0.22, "name": "rmat_s20_e10_flat"},  # 10M non-zeros
    {"kind": "standin", "matrix": "cit-Patents"},  # 16.5M non-zeros
]


def child(mode: str, spec: dict, check: bool) -> None:
    from hwaml_sparch_sim import SparchConfig, load_operands
    from hwaml_sparch_sim.simulator import SparchSimulator

    jit = 0.0
    if mode == "sim":  # load the compiled kernels from numba's cache once, like an import
        t0 = time.perf_counter()
        SparchSimulator().run(load_operands({"kind": "rmat", "scale": 6, "edge_factor": 4}), SparchConfig())
        jit = time.perf_counter() - t0
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # interpreter, libraries, kernels
    t0 = time.perf_counter()
    ops = load_operands(spec)
    gen = time.perf_counter() - t0
    out = {"name": ops.name, "nnz": int(ops.A.nnz), "gen_s": gen, "jit_s": jit, "base_mb": base}
    t0 = time.perf_counter()
    if mode == "scipy":
        c0 = time.process_time()
        C = ops.A @ ops.B
        out.update(seconds=time.perf_counter() - t0, cpu_s=time.process_time() - c0, nnz_c=int(C.nnz))
    else:
        c0 = time.process_time()
        res = SparchSimulator(numeric=check).run(ops, SparchConfig())
        out.update(seconds=time.perf_counter() - t0, cpu_s=time.process_time() - c0, nnz_c=int(res.nnz_c), products=int(res.multiplies), bound=res.stats["bound"])
        if check:
            ref = ops.A @ ops.B
            out["exact"] = bool((res.product != ref).nnz == 0)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_child(mode: str, spec: dict, check: bool) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, json.dumps(spec)] + (["--check"] if check else []), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--child", nargs=2, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="run only these matrices (names as printed, e.g. rmat_s20_e10_flat cit-Patents~)")
    args = ap.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]), args.check)
        return
    specs = MATRICES + (LARGE if args.large else [])
    if args.only:
        from hwaml_sparch_sim.matrices import spec_name

        specs = [s for s in specs if spec_name(s) in args.only]
    head = (
        f"{'matrix':<22} {'nnz(A)':>9} {'products':>11} {'nnz(C)':>11} {'gen s':>6} {'jit s':>5} {'base MB':>7} | {'scipy s':>8} {'cpu s':>6} {'scipy MB':>9} | "
        f"{'sim s':>7} {'cpu s':>6} {'sim MB':>7} {'bound':>6} | {'sim/scipy':>9}"
    )
    print(head)
    print("-" * len(head))
    for spec in specs:
        sim = run_child("sim", spec, args.check)
        if sim["nnz_c"] * 12 * 2.5 > 6e9:  # scipy's C and its temporaries: leave it out on a shared 24 GB machine
            print(f"  {sim['name']}: scipy's A @ B skipped (C alone would be {sim['nnz_c'] * 12 / 1e9:.1f} GB)")
            sc = {"seconds": float("nan"), "cpu_s": float("nan"), "peak_mb": float("nan")}
        else:
            try:
                sc = run_child("scipy", spec, False)
            except RuntimeError as exc:  # e.g. scipy's C does not fit in memory
                print(f"  scipy failed on {sim['name']}: {str(exc)[-200:]}")
                sc = {"seconds": float("nan"), "cpu_s": float("nan"), "peak_mb": float("nan")}
        extra = f"  exact={sim['exact']}" if "exact" in sim else ""
        print(
            f"{sim['name']:<22} {sim['nnz']:>9} {sim['products']:>11.3g} {sim['nnz_c']:>11.3g} {sim['gen_s']:>6.1f} {sim['jit_s']:>5.1f} {sim['base_mb']:>7.0f} | "
            f"{sc['seconds']:>8.2f} {sc['cpu_s']:>6.2f} {sc['peak_mb']:>9.0f} | "
            f"{sim['seconds']:>7.2f} {sim['cpu_s']:>6.2f} {sim['peak_mb']:>7.0f} {sim['bound']:>6} | {sim['seconds'] / sc['seconds']:>8.2f}x{extra}",
            flush=True,
        )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}; "
        "times exclude matrix generation, peaks include it; base MB: the simulator child's peak before generating the matrix"
    )


if __name__ == "__main__":
    main()
