"""Pruning at equal compute on an NN evaluator with an epoch fidelity.

TinyNAS on Fashion-MNIST (Debian's dataset-fashion-mnist; 1,500 training and
1,000 held-out validation images; hwaml-tinynas, the ``mcunet_test`` supernet,
trained once and shared by every run): every trial extracts a sub-network and
fine-tunes it for ``--epochs`` epochs, reporting validation accuracy after each
epoch (``ctx.report``). Three searches per seed:

* TPE alone (every trial fine-tunes all epochs),
* TPE with Optuna's HyperbandPruner (the BOHB-style combination),
* random search with Optuna's SuccessiveHalvingPruner (ASHA).

The pruners run with Optuna's default settings (nothing was tuned, on these
seeds or any other). Time is the search process's CPU time (one thread: on an
idle machine it is the wall time; on a shared one it is what wall time would
have been, where wall clocks measure the other jobs). Each search stops after
the trial that spends ``--cpu-seconds``; the comparison budget of a seed is the
least CPU time any of its three searches reached. Printed per variant: the best
validation accuracy within that budget, and the CPU time each variant needed
to reach TPE-alone's best of the same seed and budget (``-``: not reached).

    python benchmarks/core/pruning.py [--seeds 100 101 102 103 104] [--cpu-seconds 60] [--epochs 8]

``--problem tinytl`` runs the same three searches on a space whose candidates
differ much more: TinyTL transfer (hwaml-tinytl, the backbone pretrained on
Fashion-MNIST classes 0-4 and cached by ``hwaml-tinytl pretrain``) to classes
5-9 with 20 training and 50 validation images per class, the method (the six
of the paper: FT-Full, FT-Last, FT-Norm+Last, TinyTL-B/L/L+B), the learning
rate and the lite residual placement searched; every trial trains ``--epochs``
epochs and reports validation accuracy after each:

    python benchmarks/core/pruning.py --problem tinytl --cpu-seconds 150 --epochs 10
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


DATA = {"dataset": "fashion_mnist", "train_images": 1500, "val_images": 1000, "test_images": 500}


TINYTL_LRS = [3e-4, 1.5e-3, 4e-3, 1.2e-2, 3e-2]
TINYTL_METHODS = ["ft_full", "ft_last", "ft_norm_last", "tinytl_b", "tinytl_l", "tinytl_lb"]
PROBLEM = "tinynas"


def evaluator(epochs: int):
    if PROBLEM == "tinytl":
        from hwaml_tinytl.evaluator import TinyTLEvaluator

        return TinyTLEvaluator(
            data={"n_train": 20, "n_val": 50, "n_test": 50},
            training={"epochs": epochs},
            search={"methods": list(TINYTL_METHODS), "lrs": list(TINYTL_LRS)},
            progress=False,
        )
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


class _CpuBudgetSpent(KeyboardInterrupt):
    """Raised by the clock after the trial that spends the CPU budget: the loop stops
    as on Ctrl-C (the store keeps every finished trial)."""


class _CpuClock:
    """An observer: the process's CPU time and the best complete accuracy after each
    trial; it stops the search once ``budget`` CPU seconds are spent."""

    def __init__(self, budget: float):
        from hwaml import hookimpl

        self.t0 = time.process_time()
        self.curve: list = []
        self.best = float("-inf")

        @hookimpl
        def trial_completed(trial, ctx):
            if trial.status == "complete" and "accuracy" in trial.metrics:
                self.best = max(self.best, float(trial.metrics["accuracy"]))
            spent = time.process_time() - self.t0
            self.curve.append((spent, self.best, str(trial.status)))
            if spent >= budget:
                raise _CpuBudgetSpent()

        self.trial_completed = trial_completed


def run(variant: str, seed: int, budget: float, epochs: int, template: Path, work: Path) -> list:
    import optuna

    from hwaml.builtin import OptunaSearcher, RandomSearch
    from hwaml.loop import SearchLoop

    run_dir = work / f"{variant}_{seed}"
    if (template / "tinynas").is_dir():
        shutil.copytree(template / "tinynas", run_dir / "tinynas")
    searcher = RandomSearch() if variant == "random+sh" else OptunaSearcher("tpe")
    pruner = {"tpe": None, "tpe+hyperband": optuna.pruners.HyperbandPruner(), "random+sh": optuna.pruners.SuccessiveHalvingPruner()}[variant]
    clock = _CpuClock(budget)
    loop = SearchLoop({"searcher": searcher, "evaluator": evaluator(epochs), "observer.cpu": clock}, run_dir, objectives={"accuracy": "max"}, budget_trials=100000, seed=seed, pruner=pruner)
    try:
        loop.run()
    except _CpuBudgetSpent:
        pass
    finally:
        loop.close()
    return clock.curve


def within(curve: list, budget: float) -> list:
    return [c for c in curve if c[0] <= budget + 1e-9]


def time_to(curve: list, target: float):
    for t, best, _ in curve:
        if best >= target - 1e-12:
            return t
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    ap.add_argument("--cpu-seconds", type=float, default=60.0, help="CPU seconds per search")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--problem", choices=["tinynas", "tinytl"], default="tinynas", help="tinynas: sub-network fine-tuning (narrow accuracy range); tinytl: transfer method x learning rate x lite residuals (wide range)")
    args = ap.parse_args()
    global PROBLEM
    PROBLEM = args.problem
    torch.set_num_threads(1)
    os.environ.setdefault("HWAML_PROGRESS", "0")
    variants = ["tpe", "tpe+hyperband", "random+sh"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare(tmp / "template", args.epochs)
        table = {v: [] for v in variants}
        for seed in args.seeds:
            curves = {v: run(v, seed, args.cpu_seconds, args.epochs, tmp / "template", tmp) for v in variants}
            budget = min(c[-1][0] for c in curves.values() if c)
            curves = {v: within(c, budget) for v, c in curves.items()}
            target = curves["tpe"][-1][1]
            for v in variants:
                c = curves[v]
                table[v].append({"seed": seed, "best": c[-1][1], "trials": len(c), "pruned": sum(s == "pruned" for _, _, s in c), "t_target": time_to(c, target), "t_total": budget})
            print(f"seed {seed}: CPU budget {budget:.0f} s; " + ", ".join(f"{v} {table[v][-1]['trials']} trials best {table[v][-1]['best']:.4f}" for v in variants), file=sys.stderr, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (load average {load:.1f} at the end), torch {torch.__version__}, 1 thread; {args.cpu_seconds:g} CPU s per search, problem {args.problem}, {args.epochs} epochs per trial; times are the search's CPU seconds")
    print()
    print(f"{'variant':<15}{'seed':>6}{'budget s':>10}{'trials':>8}{'pruned':>8}{'best val acc':>14}{'t to TPE best (s)':>19}{'fraction':>10}")
    print("-" * 90)
    for v in variants:
        for r in table[v]:
            frac = "" if r["t_target"] is None else f"{r['t_target'] / table['tpe'][[x['seed'] for x in table['tpe']].index(r['seed'])]['t_target']:.2f}"
            tt = "-" if r["t_target"] is None else f"{r['t_target']:.1f}"
            print(f"{v:<15}{r['seed']:>6}{r['t_total']:>10.0f}{r['trials']:>8}{r['pruned']:>8}{r['best']:>14.4f}{tt:>19}{frac:>10}")
    print()
    print(f"{'variant':<15}{'mean best':>10}{'reached TPE best':>18}{'median time fraction':>22}")
    for v in variants:
        rows = table[v]
        fr = [r["t_target"] / t["t_target"] for r, t in zip(rows, table["tpe"]) if r["t_target"] is not None and t["t_target"]]
        med = f"{statistics.median(fr):.2f}" if fr else "-"
        print(f"{v:<15}{statistics.mean(r['best'] for r in rows):>10.4f}{sum(r['t_target'] is not None for r in rows):>13}/{len(rows):<4}{med:>22}")


if __name__ == "__main__":
    main()
