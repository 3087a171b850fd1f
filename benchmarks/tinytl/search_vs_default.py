"""Memory-constrained search over lite-residual placement, kernels and groups vs the
published TinyTL-L+B configuration at the same training memory.

For each target: the default configuration's analytic training memory at batch 8
is the budget; a search (``--searcher``, ``--trials``) runs through the real hwaml
loop with ``tinytl_memory`` as the cost backend and ``train_memory_kb <= budget``
as the constraint, choosing on the validation split of data seed ``--tune-seed``.
The chosen configuration and the default are then retrained on data seed
``--seed`` and compared on its test split.

    python benchmarks/tinytl/search_vs_default.py --targets fashion_5_9,letters --trials 6
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from hwaml.builtin.searchers import RandomSearch
from hwaml.testing import run_search
from hwaml_tinytl.backend import TinyTLMemoryBackend

from common import add_pretrain_args, evaluator, memory, run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="fashion_5_9,letters")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=20)
    ap.add_argument("--n-val", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--tune-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    add_pretrain_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    rows = []
    for target in args.targets.split(","):
        ev = evaluator(target, "tinytl_lb", args, args.tune_seed, args.lr)
        default = ev.default_config()
        budget = memory(ev, default, 8)["analytic_kb"]
        run_dir = Path(tempfile.mkdtemp(prefix=f"tinytl_search_{target}_"))
        result = run_search(
            {"evaluator": ev, "searcher": RandomSearch(), "backend.tinytl_memory": TinyTLMemoryBackend(batch_size=8)},
            run_dir,
            trials=args.trials,
            constraints={"train_memory_kb": budget},
            seed=args.tune_seed,
        )
        done = [t for t in result.trials if t.ok]
        best = max(done, key=lambda t: t.metrics["accuracy"])
        final = evaluator(target, "tinytl_lb", args, args.seed, args.lr)
        searched = run(final, best.candidate.config, run_dir / "final")
        base = run(final, default, run_dir / "default")
        rows.append((target, budget, best.cost["train_memory_kb"], len(done), len(result.trials), base["test_accuracy"], searched["test_accuracy"], best.candidate.config))
        print(f"  {target}: default test {base['test_accuracy']:.3f}, searched test {searched['test_accuracy']:.3f} ({time.time() - t0:.0f} s)", flush=True)
    print(f"\n# memory-constrained lite-residual search vs TinyTL-L+B default (proxyless_tiny, {args.n_train} img/class, {args.epochs} epochs, {args.trials} random trials; chosen on seed {args.tune_seed} val, reported on seed {args.seed} test)")
    print("| target | budget KB (default, analytic b8) | chosen KB | feasible / trials | default top-1 | searched top-1 | delta |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for target, budget, chosen, ok, n, base, found, cfg in rows:
        print(f"| {target} | {budget:.0f} | {chosen:.0f} | {ok}/{n} | {100 * base:.1f} | {100 * found:.1f} | {100 * (found - base):+.1f} |")
    for target, *_, cfg in rows:
        lites = [k for k, v in cfg.items() if isinstance(v, dict) and v.get("lite")]
        print(f"{target} chosen: lite on {lites}; " + ", ".join(f"{k}: k{v['kernel']} g{v['groups']}" for k, v in cfg.items() if isinstance(v, dict) and v.get("lite")))
    print(f"(wall {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
