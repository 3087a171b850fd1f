"""The TinyTL paper's Table 1 at small scale: top-1 and training memory of the six
methods on three targets, from one backbone pretrained on Fashion-MNIST classes 0-4.

Memory at batch 8 and 1: analytic (the paper's model: weights + peak activations)
and measured (one real step in the memory-saving mode: parameters + saved tensors +
gradients + Adam state). Accuracy: test split of data seed ``--seed``, with the
learning rate chosen per target on the validation split of data seed
``--tune-seed`` (``--lrs`` grid; each method listed in ``--tune-method`` is tuned on its
own, the others use the first listed method's choice; ``--tune-method all`` tunes each method).

    python benchmarks/tinytl/transfer_table.py --epochs 5 --n-train 20 --lrs 1e-3,4e-3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from hwaml_tinytl.methods import METHODS

from common import TARGETS, add_pretrain_args, evaluator, memory, run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=20)
    ap.add_argument("--n-val", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--lrs", default="1e-3,4e-3")
    ap.add_argument("--tune-method", default="tinytl_lb")
    ap.add_argument("--tune-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None)
    add_pretrain_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lrs = [float(v) for v in args.lrs.split(",")]
    t0 = time.time()
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="tinytl_bench_"))
    def tune(target: str, method: str):
        if len(lrs) == 1:
            return lrs[0], {}
        ev = evaluator(target, method, args, args.tune_seed, lrs[0])
        scores = {lr: run(evaluator(target, method, args, args.tune_seed, lr), {**ev.default_config(), "lr": lr}, tmp)["accuracy"] for lr in lrs}
        print(f"  {target:<12} lr tuning ({method}, seed {args.tune_seed} val): " + ", ".join(f"{k:g}: {v:.3f}" for k, v in scores.items()), flush=True)
        return max(scores, key=scores.get), scores

    methods = args.methods.split(",")
    tuned = methods if args.tune_method == "all" else args.tune_method.split(",")
    for target in args.targets.split(","):
        # each method in --tune-method gets its own lr; the others use the first one's
        own = {m: tune(target, m) for m in tuned}
        for method in methods:
            ev = evaluator(target, method, args, args.seed, lrs[0])
            config = ev.default_config()
            lr, scores = own.get(method, own[tuned[0]])
            out = run(ev, {**config, "lr": lr}, tmp)
            mem8, mem1 = memory(ev, config, 8), memory(ev, config, 1)
            results[(target, method)] = {"lr": lr, "tuning": scores, **out, "mem8": mem8, "mem1": mem1}
            print(f"  {target:<12} {method:<13} lr={lr:g} val={out['accuracy']:.3f} test={out['test_accuracy']:.3f}  ({time.time() - t0:.0f} s)", flush=True)
    targets = args.targets.split(",")
    ck = evaluator(targets[0], "tinytl_lb", args, args.seed, lrs[0]).checkpoint().with_suffix(".json")
    meta = json.loads(ck.read_text()) if ck.is_file() else {}
    print(f"\n# TinyTL transfer, proxyless_tiny (32x32), pretrained on fashion_0_4 ({meta.get('pretrain')}, source val {meta.get('source_val_accuracy')}); {args.n_train} train images/class, {args.epochs} epochs, batch 8, Adam + cosine, seed {args.seed}")
    head = " | ".join(f"{t} top-1" for t in targets)
    print(f"| method | {head} | mean top-1 | mem b8 analytic KB | mem b8 measured KB | mem b1 analytic KB | mem b1 measured KB |")
    print("|---|" + "---:|" * (len(targets) + 5))
    for method in args.methods.split(","):
        accs = [results[(t, method)]["test_accuracy"] for t in targets]
        r = results[(targets[0], method)]
        cells = " | ".join(f"{100 * a:.1f}" for a in accs)
        print(
            f"| {method} | {cells} | {100 * sum(accs) / len(accs):.1f} | {r['mem8']['analytic_kb']:.0f} | {r['mem8']['measured_kb']:.0f} | "
            f"{r['mem1']['analytic_kb']:.0f} | {r['mem1']['measured_kb']:.0f} |"
        )
    if "ft_full" in args.methods and "tinytl_lb" in args.methods:
        full, lb = results[(targets[0], "ft_full")], results[(targets[0], "tinytl_lb")]
        print(
            f"\nFT-Full / TinyTL-L+B training memory at batch 8: analytic {full['mem8']['analytic_kb'] / lb['mem8']['analytic_kb']:.1f}x, "
            f"measured {full['mem8']['measured_kb'] / lb['mem8']['measured_kb']:.1f}x"
        )
        d = [results[(t, "tinytl_lb")]["test_accuracy"] - results[(t, "ft_full")]["test_accuracy"] for t in targets]
        print(f"TinyTL-L+B - FT-Full top-1: {', '.join(f'{t} {100 * v:+.1f}' for t, v in zip(targets, d))} (mean {100 * sum(d) / len(d):+.1f})")
        if "ft_last" in args.methods:
            d2 = [results[(t, "tinytl_lb")]["test_accuracy"] - results[(t, "ft_last")]["test_accuracy"] for t in targets]
            print(f"TinyTL-L+B - FT-Last top-1: {', '.join(f'{t} {100 * v:+.1f}' for t, v in zip(targets, d2))}")
    print(f"(wall {time.time() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{t}/{m}": v for (t, m), v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
