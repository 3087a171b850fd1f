"""Simulator throughput: wall time and simulated multiply-adds per second.

For matrices of about a million non-zeros (and a few smaller ones) the script
times one full SpArch simulation (schedule, numeric merges, row-buffer
simulation, accounting) with the paper's default parameters and compares it
with the peer every user has: scipy.sparse computing the same product directly
(``A @ A``). The simulated product is checked against scipy's.

Run:  python benchmarks/sparch_sim/throughput.py [--large]
      (--large adds R-MAT scale 17, 1M non-zeros and 3.3e8 products; minutes, ~8 GB)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hwaml_sparch_sim import SparchConfig, load_operands, simulate_sparch

MATRICES = [
    {"kind": "rmat", "scale": 14, "edge_factor": 8, "seed": 5},
    {"kind": "rmat", "scale": 16, "edge_factor": 8, "seed": 8},
    {"kind": "poisson2d", "n": 460},
    {"kind": "poisson3d", "n": 55},
]
LARGE = [{"kind": "rmat", "scale": 17, "edge_factor": 8, "seed": 9}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true")
    args = parser.parse_args()
    specs = MATRICES + (LARGE if args.large else [])
    rows = []
    for spec in specs:
        ops = load_operands(spec)
        t0 = time.perf_counter()
        ref = ops.A @ ops.B
        t_scipy = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = simulate_sparch(ops, SparchConfig())
        t_sim = time.perf_counter() - t0
        diff = abs(res.product - ref)
        err = float(diff.max()) if diff.nnz else 0.0
        rows.append((ops.name, ops.A.nnz, res.multiplies, ref.nnz, t_scipy, t_sim, res.stats["schedule_seconds"], res.multiplies / t_sim, err))
        print(f"  {ops.name}: {t_sim:.1f}s", flush=True)
        del ref, res, diff
    print("\nSimulator throughput (full SpArch: condensed + Huffman + Belady prefetcher)")
    head = f"{'matrix':<20} {'nnz(A)':>9} {'multiply-adds':>14} {'nnz(C)':>11} {'scipy A@B s':>12} {'sim s':>8} {'schedule s':>10} {'sim MAC/s':>11} {'sim/scipy':>9} {'max |C-ref|':>11}"
    print(head)
    print("-" * len(head))
    for name, nnz, mults, nnz_c, ts, tsim, tsched, rate, err in rows:
        print(f"{name:<20} {nnz:>9} {mults:>14} {nnz_c:>11} {ts:>12.2f} {tsim:>8.2f} {tsched:>10.2f} {rate:>11.3g} {tsim / ts:>8.1f}x {err:>11.2g}")
    rates = np.array([r[7] for r in rows])
    print(f"\nmedian simulated multiply-adds per second: {np.median(rates):.3g}")


if __name__ == "__main__":
    main()
