"""What closes the TinyTL-L+B vs FT-Full gap: the source model or the lite residuals' pretraining?

Transfers FT-Full and TinyTL-L+B from several pretrained networks (validation accuracy of
data seed ``--seed``; the settings it picks are reported on other seeds by transfer_table.py):

- ``old``: the previous default (600 source images/class, 3 epochs, no lite residuals: fresh
  ones at transfer), from the cache file given by ``--old-checkpoint``;
- ``more-data``: ``--pretrain-n-train``/``--pretrain-epochs``, no lite residuals (if cached);
- ``more-data+lite``: the same with lite residuals pretrained with the backbone (published);
- ``more-data+lite, random lite init``: that checkpoint with the trained lite modules
  re-initialised at transfer (``training.lite_init: random``).

    python benchmarks/tinytl/pretrain_ablation.py --targets fashion_5_9,digits --epochs 15 --lrs ft_full=4e-3,tinytl_lb=1.2e-2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from hwaml_tinytl.evaluator import TinyTLEvaluator

from common import run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="fashion_5_9,digits")
    ap.add_argument("--methods", default="ft_full,tinytl_lb")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--n-train", type=int, default=20)
    ap.add_argument("--n-val", type=int, default=30)
    ap.add_argument("--lrs", default="ft_full=4e-3,tinytl_lb=1.2e-2", help="method=lr,...")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--old-checkpoint", default=None)
    ap.add_argument("--pretrain-n-train", type=int, default=2000)
    ap.add_argument("--pretrain-epochs", type=int, default=6)
    ap.add_argument("--variants", default="old,more-data,more-data+lite,random", help="which rows to run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    lrs = {k: float(v) for k, v in (kv.split("=") for kv in args.lrs.split(","))}
    variants = {}
    if args.old_checkpoint:
        variants["old"] = {"checkpoint": args.old_checkpoint, "lite_residual": False, "train_if_missing": False}
    variants["more-data"] = {"n_train": args.pretrain_n_train, "epochs": args.pretrain_epochs, "lite_residual": False, "train_if_missing": False}
    variants["more-data+lite"] = {"n_train": args.pretrain_n_train, "epochs": args.pretrain_epochs, "lite_residual": True, "train_if_missing": False}
    variants["more-data+lite, random lite init"] = dict(variants["more-data+lite"])
    keep = args.variants.split(",")
    variants = {k: v for k, v in variants.items() if k in keep or ("random" in k and "random" in keep)}
    tmp = Path(tempfile.mkdtemp(prefix="tinytl_ablation_"))
    rows = []
    for vname, pre in variants.items():
        probe = TinyTLEvaluator(pretrain=pre, progress=False)
        ck = probe.checkpoint()
        if not ck.is_file():
            print(f"  {vname}: no checkpoint {ck} (make it with hwaml-tinytl pretrain); skipped", flush=True)
            continue
        meta = json.loads(ck.with_suffix(".json").read_text())
        for target in args.targets.split(","):
            accs = {}
            for method in args.methods.split(","):
                if "random" in vname and method == "ft_full":  # the same network as more-data+lite's
                    same = [a for v, _, t, a in rows if v == "more-data+lite" and t == target]
                    if same:
                        accs[method] = same[0][method]
                    continue
                ev = TinyTLEvaluator(
                    target=target, method=method, data={"n_train": args.n_train, "n_val": args.n_val, "n_test": 10, "seed": args.seed},
                    training={"epochs": args.epochs, "lr": lrs[method], "lite_init": "random" if "random" in vname else "pretrained"},
                    pretrain=pre, progress=False,
                )
                accs[method] = run(ev, {**ev.default_config(), "lr": lrs[method]}, tmp)["accuracy"]
                print(f"  {vname:<15} {target:<12} {method:<10} val={accs[method]:.3f} ({time.time() - t0:.0f} s)", flush=True)
            rows.append((vname, meta.get("source_val_accuracy"), target, accs))
    methods = args.methods.split(",")
    print(f"\n# pretrain ablation: validation top-1 of data seed {args.seed}, {args.n_train} img/class, {args.epochs} epochs, lr {args.lrs}")
    print("| pretrained network | source val top-1 | target | " + " | ".join(methods) + " | TinyTL-L+B - FT-Full |")
    print("|---|---:|---|" + "---:|" * (len(methods) + 1))
    for vname, src, target, accs in rows:
        gap = 100 * (accs.get("tinytl_lb", float("nan")) - accs.get("ft_full", float("nan")))  # nan: FT-Full not run in this row
        print(f"| {vname} | {100 * src:.1f} | {target} | " + " | ".join(f"{100 * accs[m]:.1f}" if m in accs else "-" for m in methods) + f" | {gap:+.1f} |")
    print(f"(wall {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
