"""Replaying pruner settings on recorded learning curves (random search + a pruner).

Reads the curves of ``pruning_curves.py --out`` (every candidate trained all its
epochs, each epoch's CPU time recorded) and replays random search on them: each
search draws candidates from the recorded ones (with replacement, so it behaves
like random search in a space whose candidates are distributed as the recorded
ones), reports each candidate's recorded validation accuracies epoch by epoch to
a real Optuna pruner in an in-memory study, stops it where the pruner says, and
charges the recorded CPU time of the epochs it trained (plus the start-up, and the
finishing work for a trial that completes). No training happens, so hundreds of
searches per setting take seconds.

Printed per setting: the mean number of trials and epochs per trial within the
budget, and how often the pruned search's best complete accuracy within
``--fraction`` of the budget reaches the best that random search without pruning
found within the whole budget (the goal's test, on replayed searches).

    python benchmarks/core/pruning_replay.py curves.json --budget 120 --fraction 0.5 --searches 200
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np


SETTINGS = {
    "none": ("nop", {}),
    "sh defaults (eta 4)": ("sh", {}),
    "sh min 1 eta 3": ("sh", {"min_resource": 1, "reduction_factor": 3}),
    "sh min 2 eta 3": ("sh", {"min_resource": 2, "reduction_factor": 3}),
    "sh min 2 eta 2": ("sh", {"min_resource": 2, "reduction_factor": 2}),
    "hyperband defaults": ("hb", {}),
    "hyperband max 10": ("hb", {"min_resource": 1, "max_resource": 10, "reduction_factor": 3}),
    "hyperband max 10 eta 4": ("hb", {"min_resource": 1, "max_resource": 10, "reduction_factor": 4}),
    "hyperband min 2 max 10 eta 2": ("hb", {"min_resource": 2, "max_resource": 10, "reduction_factor": 2}),
    "median (5 startup, 1 warmup)": ("median", {"n_startup_trials": 5, "n_warmup_steps": 1}),
}


def make(kind: str, kwargs: dict):
    import optuna

    return {
        "nop": optuna.pruners.NopPruner,
        "sh": optuna.pruners.SuccessiveHalvingPruner,
        "hb": optuna.pruners.HyperbandPruner,
        "median": optuna.pruners.MedianPruner,
    }[kind](**kwargs)


def replay(rows: list, kind: str, kwargs: dict, budget: float, seed: int, study_name: str) -> list:
    """One search: ``[(cpu seconds so far, best complete accuracy so far, epochs trained)]`` per trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make(kind, kwargs), study_name=study_name)
    rng = np.random.default_rng(seed)
    t, best, out = 0.0, float("-inf"), []
    while t < budget:
        r = rows[int(rng.integers(len(rows)))]
        trial = study.ask()
        t += r["startup_s"]
        done = len(r["curve"])
        for step, v in enumerate(r["curve"]):
            t += r["epoch_s"][step]
            trial.report(v, step)
            if step < len(r["curve"]) - 1 and trial.should_prune():
                done = step + 1
                break
        else:
            done = len(r["curve"])
        if done < len(r["curve"]):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif trial.should_prune():  # a rung on the last epoch: pruned after paying everything
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            t += r["finish_s"]
            study.tell(trial, r["final"])
            best = max(best, r["final"])
        out.append((t, best, done))
    return out


def best_within(curve: list, budget: float) -> float:
    b = float("-inf")
    for t, best, _ in curve:
        if t <= budget + 1e-9:
            b = best
    return b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("curves", type=Path)
    ap.add_argument("--budget", type=float, default=120.0, help="CPU seconds of the search without pruning")
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args()
    rows = json.loads(args.curves.read_text())
    seeds = range(args.first_seed, args.first_seed + args.searches)
    base = {s: best_within(replay(rows, "nop", {}, args.budget, s, f"s{s}"), args.budget) for s in seeds}
    print(f"{len(rows)} recorded candidates; budget {args.budget:g} CPU s without pruning, {args.budget * args.fraction:g} with; {args.searches} searches per setting (seeds {seeds.start}-{seeds.stop - 1})")
    print(f"{'setting':<32}{'trials':>8}{'epochs/trial':>14}{'best (mean)':>13}{'reaches no-pruning best':>25}")
    for name, (kind, kw) in SETTINGS.items():
        trials, ept, bests, hits = [], [], [], 0
        for s in seeds:
            # a different draw order than the no-pruning search of the same seed
            c = replay(rows, kind, kw, args.budget * args.fraction, 10_000 + s, f"p{s}")
            c = [x for x in c if x[0] <= args.budget * args.fraction + 1e-9] or c[:1]
            trials.append(len(c))
            ept.append(statistics.mean(d for _, _, d in c))
            b = best_within(c, args.budget * args.fraction)
            bests.append(b)
            hits += b >= base[s] - 1e-12
        finite = [b for b in bests if b > float("-inf")]
        print(f"{name:<32}{statistics.mean(trials):>8.1f}{statistics.mean(ept):>14.2f}{(statistics.mean(finite) if finite else float('nan')):>13.4f}{hits / len(seeds):>24.0%}")
    print(f"{'(no pruning, whole budget)':<32}{'':>8}{'':>14}{statistics.mean(base.values()):>13.4f}")


if __name__ == "__main__":
    main()
