"""TinyNAS vs scaled-down MobileNetV2 and ProxylessNAS-style baselines at equal
peak-SRAM budgets on digits or Fashion-MNIST (MCUNet Table 2 / Fig. 7 in miniature).

For each budget: TinyNAS (stage 1 + supernet + evolution under the budget,
through hwaml's search loop) picks an architecture; each baseline family is
scaled (width x resolution, same resolution grid as TinyNAS's) to the most MACs
that TinyEngine plans within the budget (and the Flash); the width x resolution
it would take with no SRAM limit is printed too, so one sees the budget binds.
Every network is then trained from scratch with the same recipe (epochs,
batch, schedule, no augmentation for any model), once per training seed (same
data split, the one the search used), and scored on the held-out test split,
float and int8. Rows are printed (stdout) and appended to ``--csv`` as soon as
each is done; progress goes to stderr.

Learning rates per family: ``--tune-lrs`` trains every model at each of those
rates on the given seeds and reports validation accuracy (the test split is
printed too but must not be used to choose); ``--lrs-from TUNE.csv`` then
trains each family at the rate with the best mean validation accuracy there
(tune on one seed, report on others).

    python benchmarks/tinynas/bench_budgets.py --budgets 3 5 7 --seeds 0 1 --csv /tmp/tinynas_budgets.csv
    python benchmarks/tinynas/bench_budgets.py --data fashion_mnist --train-images 3000 --budgets 6 --seeds 0 --tune-lrs 0.05 0.1 0.2 --csv /tmp/tune.csv
    python benchmarks/tinynas/bench_budgets.py --data fashion_mnist --train-images 3000 --budgets 4 --seeds 1 --lrs-from /tmp/tune.csv --csv /tmp/b4.csv
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
from common import BENCH_PS_EPOCHS, FASHION_PS_EPOCHS, RECIPE, append_csv, data_spec, log, read_csv, stack_reserve_kb, tinynas_search, train_and_score  # noqa: E402

HEADER = "| budget | model | scaled to | unconstrained | MMACs | peak SRAM (KB) | Flash (KB) | lr | seed | val acc | float acc | float errors | int8 acc | int8 errors |"
SUMMARY = "| budget | model | scaled to | MMACs | peak SRAM (KB) | lr | seeds | mean val acc | mean float acc | min float acc | mean float errors | mean int8 acc | mean int8 errors |"
COLLAPSED = 0.80  # a test accuracy below this means the recipe failed (issue 13), not a result


def _f(r: dict, k: str, fmt: str) -> str:
    v = r.get(k)
    return "-" if v in (None, "") else format(float(v), fmt)


def row_line(r: dict) -> str:
    return (
        f"| {float(r['budget_kb']):g} KB | {r['model']} | {r['scaled_to']} | {r['unconstrained']} | {float(r['mmacs']):.3f} | {float(r['peak_sram_kb']):.2f} | {float(r['flash_kb']):.0f} "
        f"| {_f(r, 'lr', 'g')} | {r['seed']} | {_f(r, 'val_acc', '.4f')} | {float(r['float_acc']):.4f} | {r['float_wrong']}/{r['n_test']} | {float(r['int8_acc']):.4f} | {r['int8_wrong']}/{r['n_test']} |"
    )


def _groups(rows: list) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault((float(r["budget_kb"]), r["model"], r.get("lr") or ""), []).append(r)
    return groups


def summary_lines(rows: list) -> list:
    out = [SUMMARY, "|---" * 13 + "|"]
    for (b, m, lr), rs in _groups(rows).items():
        mean = lambda k: statistics.mean(float(r[k]) for r in rs)  # noqa: E731
        va = statistics.mean(float(r["val_acc"]) for r in rs) if all(r.get("val_acc") not in (None, "") for r in rs) else None
        r0 = rs[0]
        out.append(
            f"| {b:g} KB | {m} | {r0['scaled_to']} | {float(r0['mmacs']):.3f} | {float(r0['peak_sram_kb']):.2f} | {lr or '-'} | {len(rs)} | {'-' if va is None else f'{va:.4f}'} "
            f"| {mean('float_acc'):.4f} | {min(float(r['float_acc']) for r in rs):.4f} | {mean('float_wrong'):.1f}/{r0['n_test']} | {mean('int8_acc'):.4f} | {mean('int8_wrong'):.1f}/{r0['n_test']} |"
        )
    return out


def goal_lines(rows: list) -> list:
    """Per budget: TinyNAS's mean test accuracy minus the best baseline's (goal >= 1 point), and collapsed runs."""
    by_budget: dict = {}
    for (b, m, _lr), rs in _groups(rows).items():
        by_budget.setdefault(b, {})[m] = (statistics.mean(float(r["float_acc"]) for r in rs), statistics.mean(float(r["int8_acc"]) for r in rs), len(rs))
    out = []
    for b, ms in sorted(by_budget.items()):
        if "TinyNAS" not in ms or len(ms) < 2:
            continue
        t = ms["TinyNAS"]
        base = {m: v for m, v in ms.items() if m != "TinyNAS"}
        bm = max(base, key=lambda m: base[m][0])
        gap = 100 * (t[0] - base[bm][0])
        gap8 = 100 * (t[1] - max(v[1] for v in base.values()))
        n_low = sum(float(r["float_acc"]) < COLLAPSED for (bb, _m, _lr), rs in _groups(rows).items() if bb == b for r in rs)
        verdict = "goal NOT met" if gap < 1.0 else ("margin >= 1 point, but not a valid comparison: " + f"{n_low} run(s) below {COLLAPSED:.0%}" if n_low else "goal met")
        out.append(f"{b:g} KB: TinyNAS {100 * t[0]:.2f} % vs best baseline {bm} {100 * base[bm][0]:.2f} % (mean float test acc, {t[2]} seeds): {gap:+.2f} points (int8 {gap8:+.2f}) -> {verdict} (goal: >= 1 point, no run below {COLLAPSED:.0%})")
    low = [r for r in rows if float(r["float_acc"]) < COLLAPSED]
    out.append(f"runs below {COLLAPSED:.0%} test accuracy (collapsed recipe): {len(low)} of {len(rows)}" + "".join(f"\n  {r['budget_kb']} KB {r['model']} lr {r.get('lr')} seed {r['seed']}: {float(r['float_acc']):.4f}" for r in low))
    return out


def tuned_lrs(paths: list) -> dict:
    """Per model, the learning rate with the best mean validation accuracy in tuning CSVs
    (mean over the budgets and seeds tuned; the test columns are not looked at)."""
    rows = read_csv(paths)
    acc: dict = {}
    for r in rows:
        acc.setdefault(r["model"], {}).setdefault(float(r["lr"]), []).append(float(r["val_acc"]))
    if not acc:
        raise SystemExit(f"no tuning rows in {paths}")
    return {m: max(lrs, key=lambda lr: (statistics.mean(lrs[lr]), -lr)) for m, lrs in acc.items()}


def print_tables(rows: list) -> None:
    print(HEADER + "\n" + "|---" * 14 + "|")
    for r in rows:
        print(row_line(r))
    print()
    print("\n".join(summary_lines(rows)))
    print()
    print("\n".join(goal_lines(rows)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[3, 5, 7], help="peak-SRAM budgets in KB")
    ap.add_argument("--flash", type=float, default=1024, help="Flash budget in KB (STM32F746: 1 MB)")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5], help="TinyNAS stage-1 width multipliers")
    ap.add_argument("--baseline-widths", type=float, nargs="+", default=[0.25, 0.35, 0.5, 0.75, 1.0])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[12, 16, 20, 24, 28, 32], help="resolutions (TinyNAS stage 1 and baselines)")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--samples", type=int, default=10, help="stage-1 samples per space")
    ap.add_argument("--data", choices=["digits", "fashion_mnist"], default="digits", help="digits (scikit-learn) or Fashion-MNIST (Debian's dataset-fashion-mnist)")
    ap.add_argument("--train-images", type=int, default=None, help="Fashion-MNIST: training images (of the 55,000 not held out); every model and the supernet train on these")
    ap.add_argument("--final-train-images", type=int, default=None, help="Fashion-MNIST: the from-scratch trainings use the first N of the search's training images (default: all of them)")
    ap.add_argument("--val-images", type=int, default=5000, help="Fashion-MNIST: held-out training images (search ranking, lr tuning)")
    ap.add_argument("--test-images", type=int, default=None, help="Fashion-MNIST: the first N test images (default all 10,000)")
    ap.add_argument("--ps-epochs", type=int, nargs=4, default=None, metavar=("FULL", "KERNEL", "DEPTH", "EXPAND"), help="progressive-shrinking epochs (default: the digits benchmark's 6 2 1+1 1+1; Fashion: the main job's 3 1 1 1)")
    ap.add_argument("--ps-batch-size", type=int, default=None, help="supernet batch size (default: the evaluator's)")
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    ap.add_argument("--lr", type=float, default=RECIPE["lr"], help="learning rate of every model (without --lrs-from / --tune-lrs)")
    ap.add_argument("--tune-lrs", type=float, nargs="+", default=None, help="train every model at each of these rates (choose by val acc)")
    ap.add_argument("--lrs-from", nargs="+", default=None, help="tuning CSVs: each model at its best-validation rate")
    ap.add_argument("--models", nargs="+", default=None, help="only these (TinyNAS, mobilenetv2, proxylessnas)")
    ap.add_argument("--search-only", action="store_true", help="run (and cache) the TinyNAS searches, train nothing")
    ap.add_argument("--stack-reserve-kb", type=float, default=None, help="SRAM kept for the stack (default: TinyEngine's fits check, 1 KB): baselines and TinyNAS fit their activation arena in budget minus this")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    ap.add_argument("--search-seed", type=int, default=0)
    ap.add_argument("--csv", default=None, help="append every row here as soon as it is done")
    ap.add_argument("--cache", default="/tmp/tinynas_bench_cache", help="supernet / search cache folder ('' for none)")
    ap.add_argument("--from-csv", nargs="+", default=None, help="only print the tables of these CSV files")
    args = ap.parse_args()
    if args.from_csv:
        print_tables(read_csv(args.from_csv))
        return
    torch.set_num_threads(1)
    from hwaml_tinynas.baselines import BASELINES, scale_to_fit
    from hwaml_tinynas.supernet import static_subnet

    data = data_spec(args.data, args.train_images, args.val_images, args.test_images)
    final_data = data_spec(args.data, args.final_train_images or args.train_images, args.val_images, args.test_images)
    if args.ps_epochs is not None:
        ps = dict(zip(("full", "kernel", "depth", "expand"), args.ps_epochs))
    else:
        ps = FASHION_PS_EPOCHS if args.data != "digits" else BENCH_PS_EPOCHS
    recipe = dict(RECIPE, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    reserve = stack_reserve_kb() if args.stack_reserve_kb is None else args.stack_reserve_kb
    lr_of = tuned_lrs(args.lrs_from) if args.lrs_from else {}
    log(f"data {args.data} {data} (from-scratch trainings: {final_data}); recipe {recipe}; budgets {args.budgets} KB (arena <= budget - {reserve:g} KB stack), Flash {args.flash:g} KB, seeds {args.seeds}" + (f"; tuned lrs {lr_of}" if lr_of else ""))
    wanted = lambda name: args.models is None or name in args.models  # noqa: E731
    rows = []
    t0 = time.perf_counter()
    if not args.search_only:
        print(HEADER + "\n" + "|---" * 14 + "|", flush=True)
    for budget in args.budgets:
        models = []
        for fam in BASELINES:
            if args.search_only or not wanted(fam):
                continue
            fit = scale_to_fit(fam, budget - reserve, args.flash, widths=tuple(args.baseline_widths), resolutions=tuple(args.resolutions), patch=False)
            free = scale_to_fit(fam, 1e9, args.flash, widths=tuple(args.baseline_widths), resolutions=tuple(args.resolutions), patch=False)
            free_s = f"w{free['width']:g}-r{free['resolution']} ({free['peak_sram_kb']:.1f} KB)"
            if fit is None:
                log(f"budget {budget:g} KB: {fam} does not fit at any width/resolution")
                continue
            log(f"budget {budget:g} KB: {fam} scaled to w{fit['width']:g}-r{fit['resolution']} ({fit['peak_sram_kb']:.2f} KB, {fit['macs'] / 1e6:.3f} MMACs); without the SRAM limit {free_s}")
            models.append((fam, f"w{fit['width']:g}-r{fit['resolution']}", free_s, lambda fam=fam, fit=fit: BASELINES[fam](fit["width"], fit["resolution"]), fit["resolution"]))
        if wanted("TinyNAS"):
            log(f"budget {budget:g} KB: TinyNAS search ({args.trials} trials, {args.samples} samples per space, supernet epochs {ps})")
            found = tinynas_search(budget, args.flash, args.widths, args.resolutions, args.trials, args.samples, args.search_seed, cache_dir=args.cache or None, data=data, ps_epochs=ps, ps_batch_size=args.ps_batch_size, reserve_kb=reserve)
            log(f"budget {budget:g} KB: TinyNAS chose space w{found['width']:g}-r{found['resolution']} ({found['space_fit']} fit), best val acc {found['supernet_acc']} ({time.perf_counter() - t0:.0f} s)")
            if found["config"] is None:
                log(f"budget {budget:g} KB: TinyNAS found no feasible sub-network")
            else:
                models.insert(0, ("TinyNAS", f"w{found['width']:g}-r{found['resolution']} (searched)", "-", lambda found=found: static_subnet(found["arch"], found["config"]), found["resolution"]))
        if args.search_only:
            continue
        for seed in args.seeds:
            for name, shape, free_s, build, res in models:
                for lr in args.tune_lrs or [lr_of.get(name, args.lr)]:
                    torch.manual_seed(seed)
                    s = train_and_score(build(), res, seed, dict(recipe, lr=lr), split_seed=args.search_seed, data=final_data)
                    r = {"budget_kb": budget, "model": name, "scaled_to": shape, "unconstrained": free_s, "lr": lr, "seed": seed, "data": args.data, **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in s.items()}}
                    rows.append(r)
                    append_csv(args.csv, r)
                    print(row_line(r), flush=True)
                    log(f"budget {budget:g} KB seed {seed} {name} lr {lr:g}: val acc {s['val_acc']:.4f}, test acc {s['float_acc']:.4f} ({s['train_s']:.0f} s train; {time.perf_counter() - t0:.0f} s total)")
    if args.search_only:
        log(f"searches done ({time.perf_counter() - t0:.0f} s)")
        return
    print()
    print("\n".join(summary_lines(rows)))
    if not args.tune_lrs:
        print()
        print("\n".join(goal_lines(rows)))
    print(f"\ndata {args.data} {data} (from-scratch trainings: {final_data}); recipe: {recipe}; lrs {lr_of or args.tune_lrs or args.lr}; test split {rows[0]['n_test'] if rows else '?'} images; memory: TinyEngine whole-network plan without patches, arena + {reserve:g} KB stack <= budget; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
