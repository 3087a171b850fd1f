"""Pruning at equal compute on an NN evaluator with an epoch fidelity.

TinyNAS on Fashion-MNIST (Debian's dataset-fashion-mnist; 1,500 training and
1,000 held-out validation images; hwaml-tinynas, the ``mcunet_test`` supernet,
trained once and shared by every run): every trial extracts a sub-network and
fine-tunes it for ``--epochs`` epochs, reporting validation accuracy after each
epoch (``ctx.report``). Three searches per seed:

* TPE alone (every trial fine-tunes all epochs),
* TPE with Optuna's HyperbandPruner (the BOHB-style combination),
* random search with Optuna's SuccessiveHalvingPruner (ASHA).

Time is the search process's CPU time (one thread: on an idle machine it is
the wall time; on a shared one it is what wall time would have been, where wall
clocks measure the other jobs). TPE alone gets ``--cpu-seconds``; the pruned
variants ``--pruned-fraction`` of it (1: equal compute; 0.5: the goal's half).
Each search stops after the trial that spends its budget. Printed per variant
and seed: the best complete validation accuracy, TPE's best at the same CPU
time, and the CPU time the variant needed to reach TPE-alone's best over TPE's
whole budget (``-``: not reached), as a fraction of TPE's budget (the goal:
at most 0.5) and of the time TPE itself needed (stricter). Also printed: the
epochs each variant trained, the epochs its pruned trials had trained when they
stopped, and a fit ``CPU per trial = fixed + per-epoch x epochs`` over its
trials (what pruning cannot save against what it can).

The samplers and pruners run with Optuna's defaults unless ``--tpe``,
``--hyperband`` or ``--sh`` give constructor arguments (``KEY=VALUE``)::

    python benchmarks/core/pruning.py [--seeds 100 101 102 103 104] [--cpu-seconds 60] [--epochs 8]

``--problem tinytl`` runs the same three searches on a space whose candidates
differ much more: TinyTL transfer (hwaml-tinytl, the backbone pretrained on
Fashion-MNIST classes 0-4 and cached by ``hwaml-tinytl pretrain``) to classes
5-9 with 20 training and 50 validation images per class, the method (the six
of the paper: FT-Full, FT-Last, FT-Norm+Last, TinyTL-B/L/L+B), the learning
rate (five values) and the lite residual placement searched; every trial trains
``--epochs`` epochs and reports validation accuracy after each::

    python benchmarks/core/pruning.py --problem tinytl --cpu-seconds 150 --epochs 10

``--problem tinytl_wide`` is the space a user would search there: the learning
rate log-uniform over 1e-4..1e-1 and the lite residual choices present only for
the methods that use them. One seed per process, merged afterwards (each run
stays within ten minutes on a shared machine)::

    for s in 100 101 102 103 104; do
      python benchmarks/core/pruning.py --problem tinytl_wide --epochs 10 --cpu-seconds 120 \
        --pruned-fraction 0.5 --tpe n_startup_trials=5 ... --seeds $s --json seed$s.json
    done
    python benchmarks/core/pruning.py --merge seed10?.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch


DATA = {"dataset": "fashion_mnist", "train_images": 1500, "val_images": 1000, "test_images": 500}


TINYTL_LRS = [3e-4, 1.5e-3, 4e-3, 1.2e-2, 3e-2]
TINYTL_METHODS = ["ft_full", "ft_last", "ft_norm_last", "tinytl_b", "tinytl_l", "tinytl_lb"]
PROBLEM = "tinynas"


def _wide_space(ev):
    """The space a user would search with TinyTL: the method, the learning rate
    log-uniform over three decades, and the lite residual placement per block only for
    the methods that use lite residuals (for FT-Full/Last/Norm+Last those choices change
    nothing, and in the ``tinytl`` problem's space they make identical trainings look
    like different candidates)."""
    from hwaml import Categorical, Float, Group, SearchSpace
    from hwaml_tinytl.methods import uses_lite_residual

    lite = [m for m in TINYTL_METHODS if uses_lite_residual(m)]
    dims = [Categorical("method", list(TINYTL_METHODS)), Float("lr", WIDE_LR[0], WIDE_LR[1], log=True)]
    for b in ev.blocks():
        kernels, groups = ev._block_choices(b)
        dims.append(Group(f"block{b.index}", [Categorical("lite", [False, True]), Categorical("kernel", kernels), Categorical("groups", groups)], when={"method": lite}))
    return SearchSpace(dims, meta={"blocks": [asdict(b) for b in ev.blocks()]}, name=ev.name)


WIDE_LR = (1e-4, 1e-1)


def evaluator(epochs: int):
    if PROBLEM == "tinytl_wide":
        from hwaml_tinytl.evaluator import TinyTLEvaluator

        class WideTinyTL(TinyTLEvaluator):
            def space(self):
                return _wide_space(self)

        # memory_saving off: the same gradients (the same validation accuracies, checked),
        # 1.3-1.7x faster per epoch on this CPU; this benchmark is about search time, not memory
        return WideTinyTL(
            data={"n_train": 20, "n_val": 50, "n_test": 50},
            training={"epochs": epochs, "memory_saving": False},
            search={"methods": list(TINYTL_METHODS)},
            progress=False,
        )
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
    trial, and each trial's CPU cost and number of reported epochs (what a pruned trial
    trained); it stops the search once ``budget`` CPU seconds are spent."""

    def __init__(self, budget: float):
        from hwaml import hookimpl

        self.t0 = time.process_time()
        self.curve: list = []
        self.trials: list = []  # (cpu seconds of the trial incl. the loop's work, epochs reported, status)
        self.best = float("-inf")

        @hookimpl
        def trial_completed(trial, ctx):
            if trial.status == "complete" and "accuracy" in trial.metrics:
                self.best = max(self.best, float(trial.metrics["accuracy"]))
            spent = time.process_time() - self.t0
            last = self.curve[-1][0] if self.curve else 0.0
            self.curve.append((spent, self.best, str(trial.status)))
            self.trials.append((spent - last, len((trial.info or {}).get("intermediate", []) or []), str(trial.status)))
            if spent >= budget:
                raise _CpuBudgetSpent()

        self.trial_completed = trial_completed


def _kwargs(items) -> dict:
    """``KEY=VALUE`` strings as keyword arguments (ints, floats, or strings such as ``auto``)."""
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                out[key] = cast(val)
                break
            except ValueError:
                continue
        else:
            out[key] = val
    return out


SETTINGS = {"tpe": {}, "hyperband": {}, "sh": {}}


def run(variant: str, seed: int, budget: float, epochs: int, template: Path, work: Path) -> "_CpuClock":
    import optuna

    from hwaml.builtin import OptunaSearcher, RandomSearch
    from hwaml.loop import SearchLoop

    run_dir = work / f"{variant}_{seed}"
    if (template / "tinynas").is_dir():
        shutil.copytree(template / "tinynas", run_dir / "tinynas")
    searcher = RandomSearch() if variant == "random+sh" else OptunaSearcher("tpe", sampler_kwargs=dict(SETTINGS["tpe"]))
    pruner = {"tpe": lambda: None, "tpe+hyperband": lambda: optuna.pruners.HyperbandPruner(**SETTINGS["hyperband"]), "random+sh": lambda: optuna.pruners.SuccessiveHalvingPruner(**SETTINGS["sh"])}[variant]()
    clock = _CpuClock(budget)
    loop = SearchLoop({"searcher": searcher, "evaluator": evaluator(epochs), "observer.cpu": clock}, run_dir, objectives={"accuracy": "max"}, budget_trials=100000, seed=seed, pruner=pruner)
    try:
        loop.run()
    except _CpuBudgetSpent:
        pass
    finally:
        loop.close()
    return clock


def within(curve: list, budget: float) -> list:
    return [c for c in curve if c[0] <= budget + 1e-9]


def time_to(curve: list, target: float):
    for t, best, _ in curve:
        if best >= target - 1e-12:
            return t
    return None


def best_at(curve: list, budget: float) -> float:
    c = within(curve, budget)
    return c[-1][1] if c else float("-inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    ap.add_argument("--cpu-seconds", type=float, default=60.0, help="CPU seconds of TPE alone per seed")
    ap.add_argument("--pruned-fraction", type=float, default=1.0, help="the pruned variants' budget as a fraction of TPE's (0.5: the goal's half; 1: equal compute)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--problem", choices=["tinynas", "tinytl", "tinytl_wide"], default="tinynas", help="tinynas: sub-network fine-tuning (narrow accuracy range); tinytl: transfer method x 5 learning rates x lite residuals (wide range); tinytl_wide: the same with a log-uniform learning rate 1e-4..1e-1 and lite residual choices only where the method uses them")
    ap.add_argument("--tpe", nargs="*", default=[], metavar="KEY=VALUE", help="TPESampler arguments for both TPE variants (e.g. n_startup_trials=5); default Optuna's")
    ap.add_argument("--hyperband", nargs="*", default=[], metavar="KEY=VALUE", help="HyperbandPruner arguments (e.g. min_resource=1 max_resource=10 reduction_factor=3); default Optuna's")
    ap.add_argument("--sh", nargs="*", default=[], metavar="KEY=VALUE", help="SuccessiveHalvingPruner arguments (e.g. min_resource=1 reduction_factor=3); default Optuna's")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and trials to this file")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, help="print the table of earlier --json files (one seed each, same settings) instead of running")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        keys = ("problem", "epochs", "cpu_seconds", "pruned_fraction")
        for p in parts[1:]:
            if [p["args"][k] for k in keys] != [parts[0]["args"][k] for k in keys] or p["settings"] != parts[0]["settings"]:
                raise SystemExit(f"--merge: files differ in {keys} or settings")
        SETTINGS.update(parts[0]["settings"])
        for k in keys:
            setattr(args, k, parts[0]["args"][k])
        table = {v: [r for p in parts for r in p["table"][v]] for v in parts[0]["table"]}
        trials = {v: [tuple(t) for p in parts for t in p["trials"][v]] for v in parts[0]["trials"]}
        report(args, table, trials)
        return
    global PROBLEM
    PROBLEM = args.problem
    SETTINGS["tpe"], SETTINGS["hyperband"], SETTINGS["sh"] = _kwargs(args.tpe), _kwargs(args.hyperband), _kwargs(args.sh)
    torch.set_num_threads(1)
    os.environ.setdefault("HWAML_PROGRESS", "0")
    variants = ["tpe", "tpe+hyperband", "random+sh"]
    table = {v: [] for v in variants}
    all_trials = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare(tmp / "template", args.epochs)
        for seed in args.seeds:
            clocks = {}
            for v in variants:
                budget = args.cpu_seconds * (1.0 if v == "tpe" else args.pruned_fraction)
                clocks[v] = run(v, seed, budget, args.epochs, tmp / "template", tmp)
                all_trials[v] += clocks[v].trials
            tpe_curve = clocks["tpe"].curve
            t_full = tpe_curve[-1][0]
            target = tpe_curve[-1][1]
            t_tpe = time_to(tpe_curve, target)
            for v in variants:
                c = clocks[v].curve
                t_end = c[-1][0]
                tt = time_to(c, target)
                epochs_trained = sum(e for _, e, _ in clocks[v].trials)
                table[v].append({
                    "seed": seed, "t_end": t_end, "best": c[-1][1], "tpe_best_same_t": best_at(tpe_curve, t_end),
                    "trials": len(c), "pruned": sum(s == "pruned" for _, _, s in c), "epochs": epochs_trained,
                    "t_target": tt, "frac_budget": None if tt is None else tt / t_full, "frac_tpe": None if tt is None else tt / t_tpe,
                })
            print(f"seed {seed}: TPE {t_full:.0f} CPU s best {target:.4f}; " + ", ".join(f"{v} {table[v][-1]['trials']} trials best {table[v][-1]['best']:.4f}" for v in variants[1:]), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "settings": SETTINGS, "table": table, "trials": all_trials}))
    report(args, table, all_trials)


def _acc(x: float) -> str:
    return f"{x:.4f}" if x > float("-inf") else "-"


def report(args, table: dict, all_trials: dict) -> None:
    variants = list(table)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    settings = ", ".join(f"{k} {SETTINGS[k] or 'Optuna defaults'}" for k in ("tpe", "hyperband", "sh"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (load average {load:.1f} at the end), torch {torch.__version__}, 1 thread; problem {args.problem}, {args.epochs} epochs per trial")
    print(f"budgets: TPE alone {args.cpu_seconds:g} CPU s, pruned variants {args.cpu_seconds * args.pruned_fraction:g} CPU s (each search stops after the trial that spends its budget); times are the search's CPU seconds")
    print(f"settings: {settings}")
    print()
    print(f"{'variant':<15}{'seed':>5}{'CPU s':>7}{'trials':>7}{'pruned':>7}{'epochs':>7}{'best':>8}{'TPE best same t':>16}{'t to TPE best':>14}{'/TPE budget':>12}{'/TPE t':>8}")
    print("-" * 106)
    for v in variants:
        for r in table[v]:
            tt = "-" if r["t_target"] is None else f"{r['t_target']:.1f}"
            fb = "" if r["frac_budget"] is None else f"{r['frac_budget']:.2f}"
            ft = "" if r["frac_tpe"] is None else f"{r['frac_tpe']:.2f}"
            print(f"{v:<15}{r['seed']:>5}{r['t_end']:>7.0f}{r['trials']:>7}{r['pruned']:>7}{r['epochs']:>7}{_acc(r['best']):>8}{_acc(r['tpe_best_same_t']):>16}{tt:>14}{fb:>12}{ft:>8}")
    print()
    print("t to TPE best: CPU s until the variant's best complete trial reached TPE-alone's best over TPE's whole budget;")
    print("/TPE budget: that time over TPE's whole budget (the goal: <= 0.5); /TPE t: over the time TPE itself needed (stricter).")
    print()
    print(f"{'variant':<15}{'mean best':>10}{'TPE same t':>11}{'reached':>9}{'<= half':>9}{'median /budget':>16}{'median /TPE t':>15}{'epochs/trial':>14}{'CPU s/epoch trained':>21}")
    for v in variants:
        rows = table[v]
        fb = [r["frac_budget"] for r in rows if r["frac_budget"] is not None]
        ft = [r["frac_tpe"] for r in rows if r["frac_tpe"] is not None]
        ept = sum(r["epochs"] for r in rows) / max(1, sum(r["trials"] for r in rows))
        # every CPU second of the search over the epochs it trained: a per-trial cost that
        # pruning cannot save shows as a higher figure for the variants with short trials
        per_epoch = sum(c for c, _, _ in all_trials[v]) / max(1, sum(e for _, e, _ in all_trials[v]))
        print(
            f"{v:<15}{statistics.mean(r['best'] for r in rows):>10.4f}{statistics.mean(r['tpe_best_same_t'] for r in rows):>11.4f}"
            f"{sum(r['t_target'] is not None for r in rows):>7}/{len(rows):<1}{sum(f <= 0.5 for f in fb):>7}/{len(rows):<1}"
            f"{(f'{statistics.median(fb):.2f}' if fb else '-'):>16}{(f'{statistics.median(ft):.2f}' if ft else '-'):>15}{ept:>14.2f}{per_epoch:>21.3f}"
        )
    stops = {}
    for v in variants[1:]:
        hist = {}
        for _, e, s in all_trials[v]:
            if s == "pruned":
                hist[e] = hist.get(e, 0) + 1
        stops[v] = hist
        print(f"{v}: pruned trials by epochs trained when stopped: " + (", ".join(f"{e}: {n}" for e, n in sorted(hist.items())) or "none"))


if __name__ == "__main__":
    main()
