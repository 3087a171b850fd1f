"""DRAM traffic of SpArch against the OuterSPACE model, with the ablation of its techniques.

For every matrix (C = A @ A) the script simulates, with the paper's default
parameters (1 GHz, 128 GB/s HBM, 64-way merge tree, 16x16 comparator array,
1024 x 48-element row buffer):

* ``OuterSPACE``   -- two-phase outer product (partial products through DRAM);
* ``pipelined``    -- SpArch's multiply-and-merge pipeline alone (plain columns,
                      in-order merge schedule);
* ``+condensed``   -- condensed representation of A (in-order schedule, the row
                      buffer as a plain LRU cache);
* ``+Huffman``     -- Huffman-tree scheduler;
* ``+prefetcher``  -- row prefetcher with lookahead (Belady) replacement: full SpArch.

``+Huffman/nobuf`` shows the condensed design with no row buffer at all (every
use of a B row from DRAM), the case the prefetcher was introduced for.

Run:  python benchmarks/sparch_sim/dram_traffic.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

from hwaml_sparch_sim import SparchConfig, SparchSimulator, load_operands, simulate_outerspace

MATRICES = [
    {"kind": "rmat", "scale": 12, "edge_factor": 4, "seed": 1},
    {"kind": "rmat", "scale": 12, "edge_factor": 16, "seed": 2},
    {"kind": "rmat", "scale": 13, "edge_factor": 8, "seed": 3},
    {"kind": "rmat", "scale": 14, "edge_factor": 4, "seed": 4},
    {"kind": "rmat", "scale": 14, "edge_factor": 8, "seed": 5},
    {"kind": "rmat", "scale": 15, "edge_factor": 8, "seed": 6},
    {"kind": "rmat", "scale": 14, "edge_factor": 8, "seed": 7, "a": 0.25, "b": 0.25, "c": 0.25, "name": "uniform_s14_e8"},
    {"kind": "poisson2d", "n": 128},
    {"kind": "poisson2d", "n": 256},
    {"kind": "poisson3d", "n": 24},
    {"kind": "poisson3d", "n": 40},
    {"kind": "rmat", "scale": 16, "edge_factor": 4, "seed": 8},
]
QUICK = MATRICES[:3] + [{"kind": "poisson2d", "n": 64}, {"kind": "poisson3d", "n": 16}]

STEPS = [
    ("pipelined", dict(condensed=False, huffman=False, prefetcher=False)),
    ("+condensed", dict(condensed=True, huffman=False, prefetcher=False)),
    ("+Huffman", dict(condensed=True, huffman=True, prefetcher=False)),
    ("+prefetcher", dict(condensed=True, huffman=True, prefetcher=True)),
]
NOBUF = ("+Huffman/nobuf", dict(condensed=True, huffman=True, prefetcher=False, buffer_without_prefetcher="none"))


def geomean(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="five small matrices (a smoke run)")
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    specs = QUICK if args.quick else MATRICES
    sim = SparchSimulator()
    rows = []
    t_all = time.perf_counter()
    for spec in specs:
        ops = load_operands(spec)
        t0 = time.perf_counter()
        results = {}
        for label, flags in STEPS + [NOBUF]:
            results[label] = sim.run(ops, SparchConfig(**flags))
        full = results["+prefetcher"]
        base = simulate_outerspace(ops, SparchConfig(), nnz_c=full.nnz_c)
        sim._cache.clear()  # keep memory flat across matrices
        rows.append(
            {
                "name": ops.name,
                "rows": ops.A.shape[0],
                "nnz": int(ops.A.nnz),
                "multiplies": base.multiplies,
                "nnz_c": full.nnz_c,
                "outerspace_mb": base.dram_bytes / 1e6,
                **{f"{k}_mb": v.dram_bytes / 1e6 for k, v in results.items()},
                "sparch_dram": {k: v / 1e6 for k, v in full.dram.items()},
                "outerspace_dram": {k: v / 1e6 for k, v in base.dram.items()},
                "speedup": base.runtime_ms / full.runtime_ms,  # each design at its own clock
                "energy_ratio": base.energy_uj / full.energy_uj,
                "buffer_hit_rate": full.stats.get("buffer_hit_rate", float("nan")),
                "seconds": time.perf_counter() - t0,
            }
        )
        r = rows[-1]
        print(f"  simulated {r['name']:<20} in {r['seconds']:.1f}s", flush=True)

    labels = ["outerspace"] + [s[0] for s in STEPS] + [NOBUF[0]]
    head = f"{'matrix':<20} {'nnz(A)':>8} {'mults':>10} " + " ".join(f"{l:>14}" for l in labels) + f" {'reduction':>9}"
    print("\nDRAM traffic in MB (C = A @ A), SpArch defaults; reduction = OuterSPACE / full SpArch")
    print(head)
    print("-" * len(head))
    for r in rows:
        vals = [r["outerspace_mb"]] + [r[f"{s[0]}_mb"] for s in STEPS] + [r[f"{NOBUF[0]}_mb"]]
        red = r["outerspace_mb"] / r["+prefetcher_mb"]
        print(f"{r['name']:<20} {r['nnz']:>8} {r['multiplies']:>10} " + " ".join(f"{v:>14.2f}" for v in vals) + f" {red:>8.2f}x")
    print("-" * len(head))
    gm = {l: geomean([r["outerspace_mb"] / r[f"{l}_mb"] for r in rows]) for l in [s[0] for s in STEPS] + [NOBUF[0]]}
    print("geomean reduction over OuterSPACE: " + ", ".join(f"{l} {v:.2f}x" for l, v in gm.items()))
    names = [s[0] for s in STEPS]
    steps = [f"{b}/{a} {geomean([r[f'{a}_mb'] / r[f'{b}_mb'] for r in rows]):.2f}x" for a, b in zip(names, names[1:])]
    print("geomean factor of each ablation step: " + ", ".join(steps))
    print(f"geomean speedup over OuterSPACE {geomean([r['speedup'] for r in rows]):.2f}x, energy saving {geomean([r['energy_ratio'] for r in rows]):.2f}x")

    print("\nFull SpArch traffic by category (MB)")
    cats = list(rows[0]["sparch_dram"])
    print(f"{'matrix':<20} " + " ".join(f"{c:>13}" for c in cats) + f" {'B hit rate':>10}")
    for r in rows:
        print(f"{r['name']:<20} " + " ".join(f"{r['sparch_dram'][c]:>13.2f}" for c in cats) + f" {r['buffer_hit_rate']:>10.3f}")
    print(f"\n{len(rows)} matrices in {time.perf_counter() - t_all:.0f}s on {platform.machine()} / Python {platform.python_version()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
