"""Search-space optimisation vs searching the unoptimised largest space, and a
random space of the grid, under the same memory budget (MCUNet Sec. 3.1 /
Fig. 3): accuracy of the final model.

The searches use the same supernet training, evolution budget (trials) and
final from-scratch recipe (one training per seed, the held-out test split);
only the space differs: the one stage 1 chooses, the largest width and
resolution of the grid, and (``--random``) one drawn uniformly (seeded by
``--random-seed`` and the budget) among the grid's other spaces that qualify
under stage 1's own rule (at least ``min_fit_fraction`` of its samples fit).
Rows are printed and appended to ``--csv`` as soon as each is done.

    python benchmarks/tinynas/bench_space_opt.py --budget 16 --seeds 0 1 --csv /tmp/tinynas_space_opt.csv
    python benchmarks/tinynas/bench_space_opt.py --data fashion_mnist --train-images 3000 --budget 20 --random --seeds 1 2 3 --csv /tmp/so.csv
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_PS_EPOCHS, FASHION_PS_EPOCHS, RECIPE, append_csv, data_spec, log, stack_reserve_kb, tinynas_search, train_and_score  # noqa: E402

HEADER = "| search space | space | space fit (stage-1 samples) | feasible trials | supernet val acc | MMACs | peak SRAM (KB) | seed | float acc | float errors | int8 acc | int8 errors |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=12, help="peak-SRAM budget in KB")
    ap.add_argument("--probe-budgets", type=float, nargs="*", default=[12, 16, 20], help="budgets at which only stage 1 is run, to show which space it picks")
    ap.add_argument("--largest-samples", type=int, default=100, help="models sampled from the largest space when none of stage 1's fit")
    ap.add_argument("--flash", type=float, default=1024)
    ap.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[12, 16, 20, 24, 28, 32])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--random", action="store_true", help="add the random-space arm")
    ap.add_argument("--random-seed", type=int, default=0, help="draws the random space (with the budget)")
    ap.add_argument("--data", choices=["digits", "fashion_mnist"], default="digits")
    ap.add_argument("--train-images", type=int, default=None, help="Fashion-MNIST: training images")
    ap.add_argument("--val-images", type=int, default=5000)
    ap.add_argument("--test-images", type=int, default=None)
    ap.add_argument("--ps-batch-size", type=int, default=None, help="supernet batch size (default: the evaluator's)")
    ap.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    ap.add_argument("--lr", type=float, default=RECIPE["lr"])
    ap.add_argument("--stack-reserve-kb", type=float, default=None, help="SRAM kept for the stack (default: TinyEngine's fits check, 1 KB); every space fits its arena in budget minus this")
    ap.add_argument("--search-only", action="store_true", help="run (and cache) the searches, train nothing")
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds of the final models")
    ap.add_argument("--search-seed", type=int, default=0)
    ap.add_argument("--csv", default=None)
    ap.add_argument("--cache", default="/tmp/tinynas_bench_cache")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from hwaml_tinynas.supernet import static_subnet

    recipe = dict(RECIPE, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    data = data_spec(args.data, args.train_images, args.val_images, args.test_images)
    ps = FASHION_PS_EPOCHS if args.data != "digits" else BENCH_PS_EPOCHS
    reserve = stack_reserve_kb() if args.stack_reserve_kb is None else args.stack_reserve_kb
    search_kw = dict(cache_dir=args.cache or None, data=data, ps_epochs=ps, ps_batch_size=args.ps_batch_size, reserve_kb=reserve)
    t0 = time.perf_counter()
    largest = (max(args.widths), max(args.resolutions))
    arms = [("optimised (stage 1)", None), ("largest space", largest)]
    if args.random:
        import random

        from hwaml_tinynas.space_optimization import optimize_search_space

        so = optimize_search_space("mcunet_digits", args.widths, args.resolutions, args.budget - reserve, args.flash, args.samples, seed=args.search_seed, patch=False, min_fit_fraction=0.1, progress=False)
        pool = sorted((x.width, x.resolution) for x in so.spaces if x.n_fit and x.fit_fraction >= 0.1 and (x.width, x.resolution) not in ((so.width, so.resolution), largest))
        if not pool:
            raise SystemExit(f"{args.budget:g} KB: no qualifying space other than the chosen w{so.width:g}-r{so.resolution} and the largest")
        pick = random.Random(f"{args.random_seed}-{args.budget:g}").choice(pool)
        log(f"random space w{pick[0]:g}-r{pick[1]} drawn from {len(pool)} qualifying spaces {pool}")
        arms.append(("random space", pick))
    if args.probe_budgets:
        from hwaml_tinynas.space_optimization import optimize_search_space

        print("| peak-SRAM budget | stage-1 choice | its fit | its mean MMACs | largest space | largest fit | largest mean MMACs |\n|---|---|---|---|---|---|---|", flush=True)
        for b in args.probe_budgets:
            try:
                so = optimize_search_space("mcunet_digits", args.widths, args.resolutions, b - reserve, args.flash, args.samples, seed=args.search_seed, patch=False, min_fit_fraction=0.1, progress=False)
            except ValueError as exc:
                print(f"| {b:g} KB | none ({exc}) | | | | | |", flush=True)
                continue
            big = next(x for x in so.spaces if (x.width, x.resolution) == largest)
            ch = so.chosen
            print(f"| {b:g} KB | w{so.width:g}-r{so.resolution} | {ch.n_fit}/{ch.n_sampled} | {ch.mean_fit_macs / 1e6:.3f} | w{largest[0]:g}-r{largest[1]} | {big.n_fit}/{big.n_sampled} | {big.mean_fit_macs / 1e6:.3f} |", flush=True)
        print(flush=True)
    found = {}
    for label, force in arms:
        log(f"{label}: TinyNAS search under {args.budget:g} KB")
        try:
            found[label] = tinynas_search(args.budget, args.flash, args.widths, args.resolutions, args.trials, args.samples, args.search_seed, force_space=force, **search_kw)
        except ValueError as exc:
            if force is None:
                raise
            # none of stage 1's samples of this space fits: sample more before calling it empty
            from hwaml_tinynas.space_optimization import _evaluate_space

            st = _evaluate_space(dict(base="mcunet_digits", width=force[0], resolution=force[1], n=args.largest_samples, seed=args.search_seed + 1, sram_kb=args.budget - reserve, flash_kb=args.flash, patch=False, max_overhead=0.3, threads=1))
            log(f"{label}: stage 1 found no fitting model ({exc}); {st.n_fit}/{st.n_sampled} of more samples fit (min peak {min(st.peak_sram_kb):.2f} KB)")
            if st.n_fit:
                found[label] = tinynas_search(args.budget, args.flash, args.widths, args.resolutions, args.trials, args.largest_samples, args.search_seed, force_space=force, **search_kw)
            else:
                found[label] = {"config": None, "width": force[0], "resolution": force[1], "supernet_acc": None, "feasible_trials": 0, "trials": 0, "space_fit": f"0/{args.samples + st.n_sampled}"}
        f = found[label]
        log(f"{label}: space w{f['width']:g}-r{f['resolution']} ({f['space_fit']} fit), {f['feasible_trials']}/{f['trials']} feasible, best val acc {f['supernet_acc']} ({time.perf_counter() - t0:.0f} s)")
    if args.search_only:
        log(f"searches done ({time.perf_counter() - t0:.0f} s)")
        return
    print(f"peak-SRAM budget {args.budget:g} KB, Flash {args.flash:g} KB, data {args.data} {data}", flush=True)
    print(HEADER + "\n" + "|---" * 12 + "|", flush=True)
    acc: dict = {}
    for seed in args.seeds:
        for label, f in found.items():
            space = f"w{f['width']:g}-r{f['resolution']}"
            sup = "-" if f["supernet_acc"] is None else f"{f['supernet_acc']:.4f}"
            if f["config"] is None:
                print(f"| {label} | {space} | {f['space_fit']} | {f['feasible_trials']}/{f['trials']} | {sup} | - | - | {seed} | no feasible model | - | - | - |", flush=True)
                continue
            torch.manual_seed(seed)
            s = train_and_score(static_subnet(f["arch"], f["config"]), f["resolution"], seed, recipe, split_seed=args.search_seed, data=data)
            acc.setdefault(label, []).append((s["float_acc"], s["int8_acc"]))
            append_csv(args.csv, {"budget_kb": args.budget, "search_space": label, "space": space, "space_fit": f["space_fit"], "feasible_trials": f["feasible_trials"], "trials": f["trials"], "supernet_val_acc": f["supernet_acc"], "seed": seed, "data": args.data, **s})
            print(
                f"| {label} | {space} | {f['space_fit']} | {f['feasible_trials']}/{f['trials']} | {sup} | {s['mmacs']:.3f} | {s['peak_sram_kb']:.2f} | {seed} "
                f"| {s['float_acc']:.4f} | {s['float_wrong']}/{s['n_test']} | {s['int8_acc']:.4f} | {s['int8_wrong']}/{s['n_test']} |",
                flush=True,
            )
            log(f"{label} seed {seed}: float acc {s['float_acc']:.4f} ({time.perf_counter() - t0:.0f} s total)")
    print()
    for label, v in acc.items():
        print(f"{label}: mean float acc {statistics.mean(a for a, _ in v):.4f}, mean int8 acc {statistics.mean(b for _, b in v):.4f} over {len(v)} seeds")
    print(f"\nrecipe: {recipe}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
