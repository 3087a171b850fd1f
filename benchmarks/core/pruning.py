"""Pruning at equal wall time on an NN evaluator with an epoch fidelity.

TinyNAS on Fashion-MNIST (Debian's dataset-fashion-mnist; 1,500 training and
1,000 held-out validation images; hwaml-tinynas, the ``mcunet_test`` supernet,
trained once and shared by every run): every trial extracts a sub-network and
fine-tunes it for ``--epochs`` epochs, reporting validation accuracy after each
epoch (``ctx.report``). Three searches per seed, each given the same wall-time
budget:

* TPE alone (every trial fine-tunes all epochs),
* TPE with Optuna's HyperbandPruner (the BOHB-style combination),
* random search with Optuna's SuccessiveHalvingPruner (ASHA).

The pruners run with Optuna's default settings (nothing was tuned, on these
seeds or any other). Printed per variant: the best validation accuracy at the
budget, and the wall time each variant needed to reach TPE-alone's final best
of the same seed (``-``: not reached).

    python benchmarks/core/pruning.py [--seeds 100 101 102 103 104] [--seconds 60] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
from pathlib import Path

import torch


DATA = {"dataset": "fashion_mnist", "train_images": 1500, "val_images": 1000, "test_images": 500}


def evaluator(epochs: int):
    from hwaml_tinynas.evaluator import TinyNASDigits

    return TinyNASDigits(
        data=dict(DATA),
        base_arch="mcunet_test",
        device="mcu64k",
        stage1={"widths": [0.5, 1.0], "resolutions": [12, 16], "samples_per_space": 3},
        training={"epochs": {"full": 6, "kernel": 2, "depth": 2, "expand": 2}, "calibration_size": 100},
        finetune={"epochs": epochs, "lr": 0.02},
        progress=False,
    )


def prepare(template: Path, epochs: int) -> None:
    """Stage 1 and the supernet, once; every run copies this state."""
    from hwaml.testing import make_context

    ev = evaluator(epochs)
    make_context(template, evaluator=ev)  # runs search_space: stage 1 + supernet training


def run(variant: str, seed: int, seconds: float, epochs: int, template: Path, work: Path) -> list:
    import optuna

    from hwaml.builtin import OptunaSearcher, RandomSearch
    from hwaml.loop import SearchLoop

    run_dir = work / f"{variant}_{seed}"
    shutil.copytree(template / "tinynas", run_dir / "tinynas")
    searcher = RandomSearch() if variant == "random+sh" else OptunaSearcher("tpe")
    pruner = {"tpe": None, "tpe+hyperband": optuna.pruners.HyperbandPruner(), "random+sh": optuna.pruners.SuccessiveHalvingPruner()}[variant]
    loop = SearchLoop({"searcher": searcher, "evaluator": evaluator(epochs)}, run_dir, objectives={"accuracy": "max"}, budget_seconds=seconds, seed=seed, pruner=pruner)
    try:
        loop.run()
    finally:
        loop.close()
    con = sqlite3.connect(run_dir / "trials.sqlite")
    rows = con.execute("SELECT status, metrics, proposed_at, finished_at FROM trials WHERE finished_at IS NOT NULL ORDER BY number").fetchall()
    t0 = min(r[2] for r in rows)
    curve, best = [], float("-inf")
    n_pruned = 0
    for status, metrics, _, finished in rows:
        n_pruned += status == "pruned"
        if status == "complete":
            best = max(best, json.loads(metrics)["accuracy"])
        curve.append((finished - t0, best, status))
    return curve


def time_to(curve: list, target: float):
    for t, best, _ in curve:
        if best >= target - 1e-12:
            return t
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("HWAML_PROGRESS", "0")
    variants = ["tpe", "tpe+hyperband", "random+sh"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare(tmp / "template", args.epochs)
        table = {v: [] for v in variants}
        for seed in args.seeds:
            curves = {v: run(v, seed, args.seconds, args.epochs, tmp / "template", tmp) for v in variants}
            target = curves["tpe"][-1][1]
            for v in variants:
                c = curves[v]
                table[v].append({"seed": seed, "best": c[-1][1], "trials": len(c), "pruned": sum(s == "pruned" for _, _, s in c), "t_target": time_to(c, target), "t_total": c[-1][0]})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread; budget {args.seconds:g} s per search, fine-tuning {args.epochs} epochs per trial")
    print()
    print(f"{'variant':<15}{'seed':>6}{'trials':>8}{'pruned':>8}{'best val acc':>14}{'t to TPE best (s)':>19}{'fraction':>10}")
    print("-" * 80)
    for v in variants:
        for r in table[v]:
            frac = "" if r["t_target"] is None else f"{r['t_target'] / table['tpe'][[x['seed'] for x in table['tpe']].index(r['seed'])]['t_target']:.2f}"
            tt = "-" if r["t_target"] is None else f"{r['t_target']:.1f}"
            print(f"{v:<15}{r['seed']:>6}{r['trials']:>8}{r['pruned']:>8}{r['best']:>14.4f}{tt:>19}{frac:>10}")
    print()
    print(f"{'variant':<15}{'mean best':>10}{'reached TPE best':>18}{'median time fraction':>22}")
    for v in variants:
        rows = table[v]
        fr = [r["t_target"] / t["t_target"] for r, t in zip(rows, table["tpe"]) if r["t_target"] is not None and t["t_target"]]
        med = f"{statistics.median(fr):.2f}" if fr else "-"
        print(f"{v:<15}{statistics.mean(r['best'] for r in rows):>10.4f}{sum(r['t_target'] is not None for r in rows):>13}/{len(rows):<4}{med:>22}")


if __name__ == "__main__":
    main()
