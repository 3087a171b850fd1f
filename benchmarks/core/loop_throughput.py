"""Loop throughput: hwaml's durable loop vs Optuna's optimize() with SQLite storage.

Same objective (the analytic nas_toy problem: a resolution, a width, a per-block
choice list of variable depth, a learning rate, a conditional momentum), same
machine, same run. Both sample at random (hwaml's RandomSearch, Optuna's
RandomSampler) so the comparison measures the loop and its storage, not a
sampler's model. Every hwaml trial is committed to SQLite before the next
proposal; every Optuna trial is in its RDB storage when optimize moves on.

    python benchmarks/core/loop_throughput.py [--trials 2000] [--optuna-trials 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HWAML_LOAD_PLUGINS", "")  # measure the core, not plugin imports


def run_hwaml(trials: int, synchronous: str, tmp: Path) -> dict:
    from hwaml.builtin import AnalyticEvaluator, RandomSearch
    from hwaml.loop import SearchLoop

    loop = SearchLoop(
        {"searcher": RandomSearch(max_resample=1), "evaluator": AnalyticEvaluator("nas_toy")},
        tmp / f"hwaml_{synchronous}",
        objectives={"accuracy": "max"},
        budget_trials=trials,
        synchronous=synchronous,
    )
    t0 = time.perf_counter()
    res = loop.run()
    wall = time.perf_counter() - t0
    loop.close()
    assert len(res.trials) == trials
    return {"wall": wall, "rate": trials / wall, "best": res.best.metrics["accuracy"]}


def run_overhead(trials: int, tmp: Path) -> dict:
    """Per-trial cost split: searcher proposal, plugin dispatch, store commits."""
    import numpy as np

    from hwaml import Candidate
    from hwaml.builtin import AnalyticEvaluator
    from hwaml.builtin.analytic import nas_toy_accuracy, nas_toy_space
    from hwaml.loop import execute_trial
    from hwaml.plugins import build_run_manager
    from hwaml.store import TrialStore
    from hwaml.testing import make_context
    from hwaml.types import Trial

    space = nas_toy_space()
    rng = np.random.default_rng(0)
    cands = [Candidate(space.sample(rng)) for _ in range(trials)]
    ev = AnalyticEvaluator()
    pm = build_run_manager({"evaluator": ev}, registry=type("R", (), {"pm": __import__("hwaml.plugins").plugins.make_plugin_manager()})())
    ctx = make_context(tmp / "ovh")

    t0 = time.perf_counter()
    for c in cands:
        nas_toy_accuracy(c.config)
    direct = (time.perf_counter() - t0) / trials

    t0 = time.perf_counter()
    outs = [execute_trial(pm, c.with_number(i), ctx, {"accuracy": "max"}) for i, c in enumerate(cands)]
    dispatch = (time.perf_counter() - t0) / trials - direct

    store = TrialStore(tmp / "ovh" / "trials.sqlite")
    t0 = time.perf_counter()
    for i, (c, o) in enumerate(zip(cands, outs)):
        (num,) = store.add_pending([c], i)
        store.finish(Trial(num.number, num, o.status, o.metrics, o.cost, o.error, o.duration_s, o.info), {"elapsed_s": 0.0})
    store_cost = (time.perf_counter() - t0) / trials
    store.close()
    t0 = time.perf_counter()
    for i in range(trials):
        space.validate(space.sample(rng))
    propose = (time.perf_counter() - t0) / trials
    return {"objective": direct * 1e6, "dispatch": dispatch * 1e6, "store": store_cost * 1e6, "propose+validate": propose * 1e6}


def run_optuna(trials: int, tmp: Path) -> dict:
    import optuna

    from hwaml.builtin.analytic import nas_toy_accuracy, nas_toy_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = nas_toy_space()
    storage = f"sqlite:///{tmp / 'optuna.sqlite'}"
    study = optuna.create_study(storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        return nas_toy_accuracy(space.suggest(trial))

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - t0
    return {"wall": wall, "rate": trials / wall, "best": study.best_value}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3000)
    ap.add_argument("--optuna-trials", type=int, default=300)
    args = ap.parse_args()
    import optuna

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        normal = run_hwaml(args.trials, "NORMAL", tmp)
        full = run_hwaml(args.trials, "FULL", tmp)
        opt = run_optuna(args.optuna_trials, tmp)
        ovh = run_overhead(min(args.trials, 2000), tmp)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, optuna {optuna.__version__}")
    print()
    print(f"{'loop':<44} {'trials':>7} {'wall s':>8} {'trials/s':>9} {'vs optuna':>10}")
    print("-" * 82)
    rows = [
        ("hwaml (SQLite WAL, synchronous=NORMAL)", args.trials, normal),
        ("hwaml (SQLite WAL, synchronous=FULL)", args.trials, full),
        ("optuna optimize (RDB storage, sqlite)", args.optuna_trials, opt),
    ]
    for name, n, r in rows:
        print(f"{name:<44} {n:>7} {r['wall']:>8.2f} {r['rate']:>9.1f} {r['rate'] / opt['rate']:>9.1f}x")
    print()
    print("per-trial cost of the hwaml loop (microseconds)")
    for k, v in ovh.items():
        print(f"  {k:<18} {v:8.1f}")
    print(f"  {'loop overhead':<18} {ovh['dispatch'] + ovh['store'] + ovh['propose+validate']:8.1f}   (dispatch + store + propose/validate)")


if __name__ == "__main__":
    main()
