"""SpArch vs OuterSPACE on stand-ins of the paper's 20 SuiteSparse/SNAP matrices.

For every matrix (C = A @ A) the script prints, next to the matrix statistics the
stand-in was matched on (rows, nnz, degree spread, bandwidth percentiles,
products per output non-zero):

* DRAM traffic of OuterSPACE (its own organisation and formats) and of the
  ablation steps: ``pipelined`` (plain columns, in-order merge), ``+condensed``,
  ``+Huffman`` (scheduler working from estimated sizes), ``+prefetcher`` (full
  SpArch); the per-component factors next to the paper's (5.4x, 1.8x, 1.5x) and
  the overall reduction next to its 2.8x;
* the speedup from the timing model (each design at its own clock) next to the
  paper's 4x, with the bound that limited SpArch's passes (cycle share);
* OuterSPACE's modelled throughput (GFLOPS) next to its reported 2.9 GFLOPS.

Run:  python benchmarks/sparch_sim/paper20.py [--scale 0.25] [--seed 0] [--only NAME ...] [--scaled-buffer] [--json out.json]
      python benchmarks/sparch_sim/paper20.py --merge a.json b.json ...   (one table from runs of parts)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

from hwaml_sparch_sim import SparchConfig, SparchSimulator, simulate_outerspace
from hwaml_sparch_sim.matrices import Operands
from hwaml_sparch_sim.standins import PAPER_MATRICES, matrix_stats, standin

STEPS = [
    ("pipelined", dict(condensed=False, huffman=False, prefetcher=False)),
    ("+condensed", dict(condensed=True, huffman=False, prefetcher=False)),
    ("+Huffman", dict(condensed=True, huffman=True, prefetcher=False)),
    ("+prefetcher", dict(condensed=True, huffman=True, prefetcher=True)),
]
PAPER = {"+condensed": 5.4, "+Huffman": 1.8, "+prefetcher": 1.5, "overall": 2.8, "speedup": 4.0, "outerspace_gflops": 2.9}


def geomean(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


HDR = (
    f"{'matrix':15s} {'rows':>8s} {'nnz':>9s} {'deg':>5s} {'cv':>5s} {'bw50':>7s} {'bw90':>6s} {'p/out':>5s} | {'OS MB':>8s} {'pipe':>8s} {'+cond':>8s} {'+Huff':>8s} {'+pref':>8s} {'red':>6s} | "
    f"{'speedup':>7s} {'SpArch bound (cycle share)':32s} {'OS GF':>6s} {'sim s':>6s}"
)


def _line(row) -> str:
    st, mb = row["stats"], row["mb"]
    bound = " ".join(f"{k[:3]}{v:.0%}" for k, v in row["bound_share"].items() if v >= 0.005)
    return (
        f"{row['name']:15s} {st['rows']:8d} {st['nnz']:9d} {st['mean_deg']:5.1f} {st['deg_cv']:5.2f} {st['bw50']:7.4f} {st['bw90']:6.3f} {st['prod_per_out']:5.2f} | "
        f"{row['outerspace_mb']:8.1f} {mb['pipelined']:8.1f} {mb['+condensed']:8.1f} {mb['+Huffman']:8.1f} {mb['+prefetcher']:8.1f} {row['reduction']:5.2f}x | "
        f"{row['speedup']:6.2f}x {bound:32s} {row['outerspace_gflops']:6.2f} {row.get('seconds', float('nan')):6.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.25, help="fraction of each matrix's published rows (same mean degree)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--merge", nargs="+", default=None, help="print one table from the JSON files of earlier runs (e.g. parts of a full-scale run)")
    ap.add_argument("--min-width", type=int, default=4, help="also time the full design with leaf mergers at least this wide")
    ap.add_argument(
        "--scaled-buffer",
        action="store_true",
        help="diagnostic: shrink the row buffer and the lookahead FIFO with the stand-ins (buffer_lines and lookahead x scale), "
        "so that a scaled-down stand-in sees the buffer-to-matrix ratio of the full-size matrix",
    )
    ap.add_argument("--arch", nargs="*", default=[], metavar="KEY=VALUE", help="SparchConfig overrides for every step, e.g. lookahead=0 buffer_lines=4096")
    args = ap.parse_args()
    arch = {}
    for item in args.arch:
        key, _, value = item.partition("=")
        arch[key] = json.loads(value) if value not in ("true", "false") else value == "true"
    if args.scaled_buffer:
        base_cfg = SparchConfig()
        arch.update(buffer_lines=max(1, round(base_cfg.buffer_lines * args.scale)), lookahead=max(1, round(base_cfg.lookahead * args.scale)))
    names = args.only or list(PAPER_MATRICES)
    t_all = time.perf_counter()
    rows = []
    hdr = HDR
    if args.merge:
        parts = [json.load(open(f)) for f in args.merge]
        by_name = {r["name"]: r for part in parts for r in part["rows"]}
        rows = [by_name[n] for n in PAPER_MATRICES if n in by_name]
        args.scale, args.seed = parts[0]["scale"], parts[0]["seed"]
        arch = parts[0].get("arch", {})
        if any((p["scale"], p["seed"], p.get("arch", {})) != (args.scale, args.seed, arch) for p in parts):
            raise SystemExit("--merge: the parts differ in scale, seed or buffer")
        names = []
        print(f"merged from {', '.join(args.merge)} ({len(rows)} matrices, run times summed: {sum(r.get('seconds', 0.0) for r in rows):.0f}s)")
    c0 = SparchConfig(**arch)
    print(
        f"stand-ins at scale {args.scale}, seed {args.seed}; SpArch (1 GHz, 128 GB/s, 64-way tree, 16-wide root, 16 multipliers, "
        f"{c0.buffer_lines} x {c0.line_elems} buffer, lookahead {c0.lookahead}{' (0: unlimited)' if c0.lookahead == 0 else ''}{', scaled with the stand-ins' if args.scaled_buffer else ''})"
        + (f"; overrides {arch}" if arch else "")
    )
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        print(_line(row))
    for name in names:
        t_m = time.perf_counter()
        A = standin(name, scale=args.scale, seed=args.seed)
        ops = Operands(name, A, A)
        sim = SparchSimulator()
        res = {label: sim.run(ops, SparchConfig(**kw, **arch)) for label, kw in STEPS}
        full = res["+prefetcher"]
        wide = sim.run(ops, SparchConfig(merger_min_width=args.min_width, **arch))  # same schedule, wider leaf mergers
        base = simulate_outerspace(ops, SparchConfig(**arch), nnz_c=full.nnz_c)
        st = matrix_stats(A, full.nnz_c)
        share = full.stats["bound_cycle_share"]
        bound = " ".join(f"{k[:3]}{v:.0%}" for k, v in share.items() if v >= 0.005)
        row = {
            "name": name,
            "stats": st,
            "outerspace_mb": base.dram_bytes / 1e6,
            "mb": {k: r.dram_bytes / 1e6 for k, r in res.items()},
            "reduction": base.dram_bytes / full.dram_bytes,
            "speedup": base.runtime_ms / full.runtime_ms,
            "speedup_wide": base.runtime_ms / wide.runtime_ms,
            "wide_bound": wide.stats["bound"],
            "bound_share": share,
            "bound_passes": full.stats["bound_passes"],
            "outerspace_gflops": base.stats["gflops"],
            "sparch_gflops": 2 * full.multiplies / (full.runtime_ms * 1e-3) / 1e9,
            "energy_saving": base.energy_uj / full.energy_uj,
            "categories_mb": {k: v / 1e6 for k, v in full.dram.items()},
            "outerspace_categories_mb": {k: v / 1e6 for k, v in base.dram.items()},
            "seconds": time.perf_counter() - t_m,
        }
        rows.append(row)
        if args.json:  # after every matrix, so that a run cut short keeps what it finished
            with open(args.json, "w") as fh:
                json.dump({"scale": args.scale, "seed": args.seed, "arch": arch, "rows": rows}, fh, indent=1, default=float)
        print(_line(row), flush=True)
    print("-" * len(hdr))
    f_cond = geomean([r["mb"]["pipelined"] / r["mb"]["+condensed"] for r in rows])
    f_huff = geomean([r["mb"]["+condensed"] / r["mb"]["+Huffman"] for r in rows])
    f_pref = geomean([r["mb"]["+Huffman"] / r["mb"]["+prefetcher"] for r in rows])
    red = geomean([r["reduction"] for r in rows])
    spd = geomean([r["speedup"] for r in rows])
    spd_wide = geomean([r["speedup_wide"] for r in rows])
    gf = sum(r["outerspace_gflops"] for r in rows) / len(rows)
    sgf = sum(r["sparch_gflops"] for r in rows) / len(rows)
    es = geomean([r["energy_saving"] for r in rows])
    print(f"{'geomean factor':24s} {'this model':>11s} {'paper':>7s}")
    print(f"{'condensed (vs pipelined)':24s} {f_cond:10.2f}x {PAPER['+condensed']:6.1f}x")
    print(f"{'Huffman (vs +condensed)':24s} {f_huff:10.2f}x {PAPER['+Huffman']:6.1f}x")
    print(f"{'prefetcher (vs +Huffman)':24s} {f_pref:10.2f}x {PAPER['+prefetcher']:6.1f}x")
    print(f"{'overall vs OuterSPACE':24s} {red:10.2f}x {PAPER['overall']:6.1f}x")
    print(f"{'speedup vs OuterSPACE':24s} {spd:10.2f}x {PAPER['speedup']:6.1f}x")
    print(f"{'speedup, leaf width >= ' + str(args.min_width):24s} {spd_wide:10.2f}x  (area {SparchConfig(merger_min_width=args.min_width).area_mm2():.1f} mm^2 vs {SparchConfig().area_mm2():.1f}; bounds: " + ", ".join(f"{b} {sum(r['wide_bound'] == b for r in rows)}" for b in ("merge", "multiply", "memory", "latency")) + ")")
    print(f"{'OuterSPACE GFLOPS (mean)':24s} {gf:11.2f} {PAPER['outerspace_gflops']:7.1f}")
    print(f"{'SpArch GFLOPS (mean)':24s} {sgf:11.2f}")
    print(f"{'energy saving (geomean)':24s} {es:10.2f}x")
    ratio = [r["reduction"] / r["speedup"] for r in rows]
    print(f"DRAM reduction / speedup: min {min(ratio):.2f}, max {max(ratio):.2f} (1.00 everywhere would mean both designs are pure bandwidth bounds)")
    if not args.merge:
        print(f"{len(rows)} matrices in {time.perf_counter() - t_all:.0f}s on {platform.machine()} / Python {platform.python_version()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"scale": args.scale, "seed": args.seed, "arch": arch, "rows": rows}, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
