"""TinyNAS vs scaled-down MobileNetV2 and ProxylessNAS-style baselines at equal
peak-SRAM budgets on digits (MCUNet Table 2 / Fig. 7 in miniature).

For each budget: TinyNAS (stage 1 + supernet + evolution under the budget,
through hwaml's search loop) picks an architecture; each baseline family is
scaled (width x resolution) to the most MACs that TinyEngine plans within the
budget; every network is then trained from scratch with the same recipe and
scored on the digits test split, float and int8.

    python benchmarks/tinynas/bench_budgets.py                # budgets 6 12 24 KB
    python benchmarks/tinynas/bench_budgets.py --budgets 8 --trials 8 --epochs 10   # quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RECIPE, tinynas_search, train_and_score  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[6, 12, 24], help="peak-SRAM budgets in KB")
    ap.add_argument("--flash", type=float, default=1024, help="Flash budget in KB")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[16, 24, 32])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from hwaml_tinynas.baselines import BASELINES, scale_to_fit
    from hwaml_tinynas.supernet import static_subnet

    rows = []
    t0 = time.perf_counter()
    for budget in args.budgets:
        found = tinynas_search(budget, args.flash, args.widths, args.resolutions, args.trials, args.samples, args.seed)
        torch.manual_seed(args.seed)
        model = static_subnet(found["arch"], found["config"])
        s = train_and_score(model, found["resolution"], args.seed, {"epochs": args.epochs})
        rows.append((budget, "TinyNAS", f"w{found['width']:g}-r{found['resolution']}", s))
        for fam in BASELINES:
            fit = scale_to_fit(fam, budget, args.flash, widths=(0.25, 0.35, 0.5, 0.75), resolutions=tuple(args.resolutions), patch=False)
            if fit is None:
                rows.append((budget, fam, "does not fit", None))
                continue
            torch.manual_seed(args.seed)
            s = train_and_score(BASELINES[fam](fit["width"], fit["resolution"]), fit["resolution"], args.seed, {"epochs": args.epochs})
            rows.append((budget, fam, f"w{fit['width']:g}-r{fit['resolution']}", s))
        print(f"budget {budget:g} KB done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"| peak-SRAM budget | model | scaled to | peak SRAM (KB) | Flash (KB) | float acc | int8 acc |")
    print("|---|---|---|---|---|---|---|")
    for budget, name, shape, s in rows:
        if s is None:
            print(f"| {budget:g} KB | {name} | {shape} | - | - | - | - |")
        else:
            print(f"| {budget:g} KB | {name} | {shape} | {s['peak_sram_kb']:.1f} | {s['flash_kb']:.0f} | {s['float_acc']:.4f} | {s['int8_acc']:.4f} |")
    print(f"\nrecipe: {dict(RECIPE, epochs=args.epochs)}; memory: TinyEngine whole-network plan without patches; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
