"""Why pruning saves what it saves: learning curves of random candidates.

Trains ``--n`` configurations drawn uniformly from the pruning benchmark's space
(``benchmarks/core/pruning.py``, the same evaluator and settings) for every epoch,
timing each part of a trial in CPU seconds (one torch thread), and prints:

* the per-trial cost split: start-up (building the network, quantising the frozen
  weights), each epoch (training + the validation that ``ctx.report`` reports), and
  the finishing work after the last epoch (final/test accuracy, artifacts, memory report);
* how well the ranking after epoch ``k`` predicts the ranking after the last epoch
  (Spearman's rho over the candidates, and where the final top candidates stood at
  epoch ``k``): what a pruner's rung at that step sees.

The curves are written to ``--out`` (JSON) so pruner settings can be replayed on them
(``benchmarks/core/pruning_replay.py``)::

    python benchmarks/core/pruning_curves.py --problem tinytl --n 30 --epochs 10 --seed 0 --out curves.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pruning as bench  # noqa: E402


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    # average ranks for ties
    def avg(x, r):
        x = np.asarray(x)
        out = r.copy()
        for v in np.unique(x):
            m = x == v
            out[m] = r[m].mean()
        return out

    ra, rb = avg(a, ra), avg(b, rb)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def collect(n: int, epochs: int, seed: int, out=None) -> list:
    from hwaml_tinytl.evaluator import save_adapted
    from hwaml_tinytl.memory import profile_training_memory
    from hwaml_tinytl.quantize import quantize_frozen_weights
    from hwaml_tinytl.training import TransferRecipe, accuracy, transfer
    import tempfile

    ev = bench.evaluator(epochs)
    ev.pretrained()
    data = ev.target_data()
    space = ev.space()
    rng = np.random.default_rng(seed)
    pc = time.process_time
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for i in range(n):
        cfg = space.sample(rng)
        t0 = pc()
        net, _ = ev.adapted_network(cfg, pretrained=True)
        books = quantize_frozen_weights(net)
        t_start = pc() - t0
        recipe = TransferRecipe(**{**asdict(ev.training), "lr": float(cfg["lr"])})
        ticks = [pc()]
        curve = []

        def on_epoch(epoch, acc):
            curve.append(acc)
            ticks.append(pc())

        try:
            res = transfer(net, data, recipe, ev.seed, books, on_epoch, show=False)
        except FloatingPointError as exc:  # a learning rate that diverges: the trial fails
            print(f"{i:3d} {cfg['method']:<13} lr {cfg['lr']:<7g} failed after {len(curve)} epochs: {exc}", file=sys.stderr, flush=True)
            continue
        t1 = pc()
        save_adapted(net, books, tmp / f"t{i}.pt", {})
        for b in (8, 1):
            profile_training_memory(net.train(), ev.input_shape, b).summary()
        t_finish = pc() - ticks[-1]
        epoch_s = [b - a for a, b in zip(ticks, ticks[1:])]
        rows.append({"config": cfg, "method": cfg["method"], "lr": cfg["lr"], "curve": curve, "final": res["val_accuracy"], "startup_s": t_start, "epoch_s": epoch_s, "finish_s": t_finish})
        if out is not None:
            out.write_text(json.dumps(rows, default=str))
        print(f"{i:3d} {cfg['method']:<13} lr {cfg['lr']:<9.3g} start {t_start:.2f}s epoch {statistics.mean(epoch_s):.2f}s finish {t_finish:.2f}s curve {' '.join(f'{a:.3f}' for a in curve)}", file=sys.stderr, flush=True)
    return rows


def analyse(rows: list) -> None:
    epochs = len(rows[0]["curve"])
    start = [r["startup_s"] for r in rows]
    ep = [s for r in rows for s in r["epoch_s"]]
    fin = [r["finish_s"] for r in rows]
    total = [r["startup_s"] + sum(r["epoch_s"]) + r["finish_s"] for r in rows]
    print(f"{len(rows)} candidates, {epochs} epochs each; CPU seconds (one thread), median [min, max]")
    for name, xs in (("start-up per trial", start), ("one epoch (train + validate)", ep), ("finishing after the last epoch", fin), ("whole trial", total)):
        print(f"  {name:<32}{statistics.median(xs):8.3f}  [{min(xs):.3f}, {max(xs):.3f}]")
    print(f"  overhead that pruning cannot save: {statistics.median([(a + c) / t for a, c, t in zip(start, fin, total)]):.1%} of a full trial (median)")
    by_method = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(statistics.mean(r["epoch_s"]))
    print("  epoch cost by method: " + ", ".join(f"{m} {statistics.median(v):.2f}s" for m, v in sorted(by_method.items())))
    final = [r["curve"][-1] for r in rows]
    order = np.argsort(final)[::-1]
    top = order[: max(1, len(rows) // 10)]
    print()
    print(f"{'after epoch':>12}{'spearman rho':>14}{'top-10% final: rank at this epoch':>36}")
    for k in range(epochs):
        at = [r["curve"][k] for r in rows]
        ranks = np.argsort(np.argsort(-np.asarray(at), kind="stable"), kind="stable")
        print(f"{k + 1:>12}{spearman(at, final):>14.3f}{', '.join(str(int(ranks[i]) + 1) for i in top):>36}")
    print()
    print("best candidates (final validation accuracy):")
    for i in order[:6]:
        r = rows[i]
        print(f"  {r['final']:.3f} (last epoch {r['curve'][-1]:.3f}) {r['method']:<13} lr {r['lr']:<7g} curve {' '.join(f'{a:.3f}' for a in r['curve'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", choices=["tinytl", "tinytl_wide"], default="tinytl")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--load", type=Path, default=None, help="analyse curves written by an earlier --out")
    args = ap.parse_args()
    bench.PROBLEM = args.problem
    torch.set_num_threads(1)
    os.environ.setdefault("HWAML_PROGRESS", "0")
    if args.load:
        rows = json.loads(args.load.read_text())
    else:
        rows = collect(args.n, args.epochs, args.seed, args.out)
    analyse(rows)


if __name__ == "__main__":
    main()
