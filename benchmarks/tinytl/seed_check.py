"""TinyTL-L+B vs FT-Full over several data seeds, with learning rates fixed beforehand.

The lrs are the ones transfer_table.py chose on data seed 0's validation split
(``--lrs target:method=lr,...``). Each data seed draws other training, validation and test
images, so the mean gap over seeds is a less noisy estimate than one seed's
(20 images/class and 100 test images/class move a method by several points).

    python benchmarks/tinytl/seed_check.py --seeds 1,2,3 \\
        --lrs fashion_5_9:ft_full=1.5e-3,fashion_5_9:tinytl_lb=1.2e-2,digits:ft_full=4e-3,digits:tinytl_lb=1.2e-2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import add_pretrain_args, evaluator, run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lrs", required=True, help="target:method=lr,...")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--n-train", type=int, default=20)
    ap.add_argument("--n-val", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=100)
    add_pretrain_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    lrs = {}
    for item in args.lrs.split(","):
        key, lr = item.split("=")
        target, method = key.split(":")
        lrs[(target, method)] = float(lr)
    targets = list(dict.fromkeys(t for t, _ in lrs))
    methods = list(dict.fromkeys(m for _, m in lrs))
    seeds = [int(s) for s in args.seeds.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="tinytl_seeds_"))
    acc = {}
    for target in targets:
        for seed in seeds:
            for method in methods:
                lr = lrs[(target, method)]
                ev = evaluator(target, method, args, seed, lr)
                acc[(target, seed, method)] = run(ev, {**ev.default_config(), "lr": lr}, tmp)["test_accuracy"]
                print(f"  {target:<12} seed {seed} {method:<10} lr={lr:g} test={acc[(target, seed, method)]:.3f} ({time.time() - t0:.0f} s)", flush=True)
    print(f"\n# test top-1 over data seeds {seeds} ({args.n_train} img/class, {args.epochs} epochs; lrs fixed: {args.lrs})")
    print("| target | seed | " + " | ".join(methods) + " | TinyTL-L+B - FT-Full |")
    print("|---|---:|" + "---:|" * (len(methods) + 1))
    gaps = []
    for target in targets:
        tg = []
        for seed in seeds:
            g = 100 * (acc[(target, seed, "tinytl_lb")] - acc[(target, seed, "ft_full")])
            tg.append(g)
            print(f"| {target} | {seed} | " + " | ".join(f"{100 * acc[(target, seed, m)]:.1f}" for m in methods) + f" | {g:+.1f} |")
        means = [100 * sum(acc[(target, s, m)] for s in seeds) / len(seeds) for m in methods]
        print(f"| {target} | mean | " + " | ".join(f"{v:.1f}" for v in means) + f" | {sum(tg) / len(tg):+.1f} |")
        gaps += tg
    print(f"mean TinyTL-L+B - FT-Full over targets and seeds: {sum(gaps) / len(gaps):+.1f} points")
    print(f"(wall {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
