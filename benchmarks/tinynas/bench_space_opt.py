"""Search-space optimisation vs searching the unoptimised largest space under
the same memory budget (MCUNet Sec. 3.1 / Fig. 3): accuracy of the final model.

Both searches use the same supernet training, evolution budget and final
from-scratch recipe; only stage 1 differs (chosen space vs the largest width
and resolution of the grid).

    python benchmarks/tinynas/bench_space_opt.py --budget 6
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
    ap.add_argument("--budget", type=float, default=6, help="peak-SRAM budget in KB")
    ap.add_argument("--flash", type=float, default=1024)
    ap.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[16, 24, 32])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from hwaml_tinynas.supernet import static_subnet

    t0 = time.perf_counter()
    rows = []
    largest = (max(args.widths), max(args.resolutions))
    for label, force in (("optimised (stage 1)", None), (f"largest space w{largest[0]:g}-r{largest[1]}", largest)):
        found = tinynas_search(args.budget, args.flash, args.widths, args.resolutions, args.trials, args.samples, args.seed, force_space=force)
        if found["config"] is None:
            rows.append((label, f"w{found['width']:g}-r{found['resolution']}", found, None))
            continue
        torch.manual_seed(args.seed)
        s = train_and_score(static_subnet(found["arch"], found["config"]), found["resolution"], args.seed, {"epochs": args.epochs})
        rows.append((label, f"w{found['width']:g}-r{found['resolution']}", found, s))
        print(f"{label} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"peak-SRAM budget {args.budget:g} KB, Flash {args.flash:g} KB")
    print("| search space | space | feasible trials | supernet val acc | peak SRAM (KB) | float acc | int8 acc |")
    print("|---|---|---|---|---|---|---|")
    for label, space, found, s in rows:
        sup = "-" if found["supernet_acc"] is None else f"{found['supernet_acc']:.4f}"
        if s is None:
            print(f"| {label} | {space} | {found['feasible_trials']}/{found['trials']} | {sup} | - | - | - |")
        else:
            print(f"| {label} | {space} | {found['feasible_trials']}/{found['trials']} | {sup} | {s['peak_sram_kb']:.1f} | {s['float_acc']:.4f} | {s['int8_acc']:.4f} |")
    print(f"\nrecipe: {dict(RECIPE, epochs=args.epochs)}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
