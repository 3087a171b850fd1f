"""TinyNAS vs scaled-down MobileNetV2 and ProxylessNAS-style baselines at equal
peak-SRAM budgets on digits (MCUNet Table 2 / Fig. 7 in miniature).

For each budget: TinyNAS (stage 1 + supernet + evolution under the budget,
through hwaml's search loop) picks an architecture; each baseline family is
scaled (width x resolution, same resolution grid as TinyNAS's) to the most MACs
that TinyEngine plans within the budget (and the Flash); the width x resolution
it would take with no SRAM limit is printed too, so one sees the budget binds.
Every network is then trained from scratch with the same recipe, once per
training seed (same data split, the one the search used), and scored on the
held-out digits test split, float and int8. Rows are printed (stdout) and
appended to ``--csv`` as soon as each is done; progress goes to stderr.

    python benchmarks/tinynas/bench_budgets.py --budgets 3 5 7 --seeds 0 1 --csv /tmp/tinynas_budgets.csv
    python benchmarks/tinynas/bench_budgets.py --from-csv /tmp/tinynas_budgets_*.csv   # tables again
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RECIPE, append_csv, log, read_csv, tinynas_search, train_and_score  # noqa: E402

HEADER = "| budget | model | scaled to | unconstrained | MMACs | peak SRAM (KB) | Flash (KB) | seed | float acc | float errors | int8 acc | int8 errors |"
SUMMARY = "| budget | model | scaled to | MMACs | peak SRAM (KB) | seeds | mean float acc | mean float errors | mean int8 acc | mean int8 errors |"


def row_line(r: dict) -> str:
    return (
        f"| {float(r['budget_kb']):g} KB | {r['model']} | {r['scaled_to']} | {r['unconstrained']} | {float(r['mmacs']):.3f} | {float(r['peak_sram_kb']):.2f} | {float(r['flash_kb']):.0f} "
        f"| {r['seed']} | {float(r['float_acc']):.4f} | {r['float_wrong']}/{r['n_test']} | {float(r['int8_acc']):.4f} | {r['int8_wrong']}/{r['n_test']} |"
    )


def summary_lines(rows: list) -> list:
    groups: dict = {}
    for r in rows:
        groups.setdefault((float(r["budget_kb"]), r["model"]), []).append(r)
    out = [SUMMARY, "|---|---|---|---|---|---|---|---|---|---|"]
    for (b, m), rs in groups.items():
        fa = statistics.mean(float(r["float_acc"]) for r in rs)
        ia = statistics.mean(float(r["int8_acc"]) for r in rs)
        fw = statistics.mean(int(r["float_wrong"]) for r in rs)
        iw = statistics.mean(int(r["int8_wrong"]) for r in rs)
        r0 = rs[0]
        out.append(f"| {b:g} KB | {m} | {r0['scaled_to']} | {float(r0['mmacs']):.3f} | {float(r0['peak_sram_kb']):.2f} | {len(rs)} | {fa:.4f} | {fw:.1f}/{r0['n_test']} | {ia:.4f} | {iw:.1f}/{r0['n_test']} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[3, 5, 7], help="peak-SRAM budgets in KB")
    ap.add_argument("--flash", type=float, default=1024, help="Flash budget in KB (STM32F746: 1 MB)")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5], help="TinyNAS stage-1 width multipliers")
    ap.add_argument("--baseline-widths", type=float, nargs="+", default=[0.25, 0.35, 0.5, 0.75, 1.0])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[12, 16, 20, 24, 28, 32], help="resolutions (TinyNAS stage 1 and baselines)")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--samples", type=int, default=10, help="stage-1 samples per space")
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    ap.add_argument("--search-seed", type=int, default=0)
    ap.add_argument("--csv", default=None, help="append every row here as soon as it is done")
    ap.add_argument("--cache", default="/tmp/tinynas_bench_cache", help="supernet / search cache folder ('' for none)")
    ap.add_argument("--from-csv", nargs="+", default=None, help="only print the tables of these CSV files")
    args = ap.parse_args()
    if args.from_csv:
        rows = read_csv(args.from_csv)
        print(HEADER + "\n" + "|---" * 12 + "|")
        for r in rows:
            print(row_line(r))
        print()
        print("\n".join(summary_lines(rows)))
        return
    torch.set_num_threads(1)
    from hwaml_tinynas.baselines import BASELINES, scale_to_fit
    from hwaml_tinynas.supernet import static_subnet

    recipe = dict(RECIPE, epochs=args.epochs)
    log(f"recipe {recipe}; budgets {args.budgets} KB, Flash {args.flash:g} KB, seeds {args.seeds}")
    rows = []
    t0 = time.perf_counter()
    print(HEADER + "\n" + "|---" * 12 + "|", flush=True)
    for budget in args.budgets:
        models = []
        for fam in BASELINES:
            fit = scale_to_fit(fam, budget, args.flash, widths=tuple(args.baseline_widths), resolutions=tuple(args.resolutions), patch=False)
            free = scale_to_fit(fam, 1e9, args.flash, widths=tuple(args.baseline_widths), resolutions=tuple(args.resolutions), patch=False)
            free_s = f"w{free['width']:g}-r{free['resolution']} ({free['peak_sram_kb']:.1f} KB)"
            if fit is None:
                log(f"budget {budget:g} KB: {fam} does not fit at any width/resolution")
                continue
            log(f"budget {budget:g} KB: {fam} scaled to w{fit['width']:g}-r{fit['resolution']} ({fit['peak_sram_kb']:.2f} KB, {fit['macs'] / 1e6:.3f} MMACs); without the SRAM limit {free_s}")
            models.append((fam, f"w{fit['width']:g}-r{fit['resolution']}", free_s, lambda fam=fam, fit=fit: BASELINES[fam](fit["width"], fit["resolution"]), fit["resolution"]))
        log(f"budget {budget:g} KB: TinyNAS search ({args.trials} trials, {args.samples} samples per space)")
        found = tinynas_search(budget, args.flash, args.widths, args.resolutions, args.trials, args.samples, args.search_seed, cache_dir=args.cache or None)
        log(f"budget {budget:g} KB: TinyNAS chose space w{found['width']:g}-r{found['resolution']} ({found['space_fit']} fit), best val acc {found['supernet_acc']} ({time.perf_counter() - t0:.0f} s)")
        models.insert(0, ("TinyNAS", f"w{found['width']:g}-r{found['resolution']} (searched)", "-", lambda found=found: static_subnet(found["arch"], found["config"]), found["resolution"]))
        for seed in args.seeds:
            for name, shape, free_s, build, res in models:
                torch.manual_seed(seed)
                s = train_and_score(build(), res, seed, recipe, split_seed=args.search_seed)
                r = {"budget_kb": budget, "model": name, "scaled_to": shape, "unconstrained": free_s, "seed": seed, **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in s.items()}}
                rows.append(r)
                append_csv(args.csv, r)
                print(row_line(r), flush=True)
                log(f"budget {budget:g} KB seed {seed} {name}: float acc {s['float_acc']:.4f} ({s['train_s']:.0f} s train; {time.perf_counter() - t0:.0f} s total)")
    print()
    print("\n".join(summary_lines(rows)))
    print(f"\nrecipe: {recipe}; test split {rows[0]['n_test'] if rows else '?'} images; memory: TinyEngine whole-network plan without patches; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
