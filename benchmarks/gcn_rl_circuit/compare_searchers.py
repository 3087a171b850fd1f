"""The paper's comparison on real PDKs, at an equal simulation budget: best FoM per circuit,
technology and searcher, plus the hand-sized (gm/Id) design.

    python benchmarks/gcn_rl_circuit/compare_searchers.py --tech sky130 --trials 40 \
        --seeds 100 101 102 103 104 105 106 107 108 109 --jobs 2 | tee run.log
    python benchmarks/gcn_rl_circuit/compare_searchers.py --from-logs run*.log   # the table of several runs

Searchers: GCN-RL with the plugin's shipped ``searcher=gcn_rl`` settings ("gcn_rl"), GCN-RL as
plain DDPG ("gcn_rl_ddpg": one critic, raw rewards, the actor's output plus noise, the class
defaults of ``GCNRLSearcher`` with the shipped warm-up), Bayesian optimisation with a Gaussian
process (Optuna's GP sampler, "bo_gp"), TPE, regularised evolution and random search -- each
gets the same number of ngspice-evaluated trials -- and the human design (one evaluation,
deterministic). The table prints mean +- std of the best FoM over the seeds (higher is better),
how many seeds' best designs met every hard spec, and GCN-RL's gap to the best other searcher
with Welch's one-sided p-value (``best`` needs p < 0.1; otherwise the row reads ``tie`` or
``no``). The default seeds 100-109 were not used to choose any setting (the shipped settings
were chosen on seeds 0-4 of the previous, synthetic-node version of the plugin).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import resources

import numpy as np
import yaml
from scipy.stats import ttest_ind

from hwaml.builtin.searchers import OptunaSearcher, RandomSearch, RegularizedEvolution
from hwaml.loop import SearchLoop
from hwaml_gcn_rl_circuit.circuits import CIRCUITS, get_circuit
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator, simulate_design
from hwaml_gcn_rl_circuit.human import human_design
from hwaml_gcn_rl_circuit.searcher import GCNRLSearcher
from hwaml_gcn_rl_circuit.technology import get_technology


def shipped_gcn_rl_settings() -> dict:
    """The plugin's ``searcher=gcn_rl`` config (what ``hwaml run searcher=gcn_rl`` uses)."""
    text = resources.files("hwaml_gcn_rl_circuit.conf.searcher").joinpath("gcn_rl.yaml").read_text()
    cfg = yaml.safe_load(text)
    cfg.pop("_target_")
    for k in ("init_from", "save_agent", "torch_threads"):
        cfg.pop(k, None)
    cfg.get("reward", {}).pop("objective", None)
    return cfg


GCN_RL = shipped_gcn_rl_settings()
NAMES = ["gcn_rl", "gcn_rl_ddpg", "bo_gp", "tpe", "evolution", "random"]


WARMUP = {"value": None}  # --warmup: both GCN-RL variants' warm-up (default: the shipped 21)


def make_searcher(name: str, warmup=None):
    w = GCN_RL["exploration"]["warmup"] if warmup is None else int(warmup)
    if name == "gcn_rl":
        return GCNRLSearcher(save_agent=False, **{**GCN_RL, "exploration": {**GCN_RL["exploration"], "warmup": w}})
    if name == "gcn_rl_ddpg":  # plain DDPG: the class defaults, the shipped warm-up
        return GCNRLSearcher(save_agent=False, exploration={"warmup": w})
    if name == "bo_gp":
        return OptunaSearcher("gp")
    if name == "tpe":
        return OptunaSearcher("tpe", multivariate=True)
    if name == "evolution":
        return RegularizedEvolution(population_size=10, tournament_size=3, mutation_prob=0.3)
    if name == "random":
        return RandomSearch()
    raise ValueError(name)


def run_cell(circuit: str, tech: str, name: str, seed: int, trials: int, warmup=None):
    logging.getLogger("hwaml").setLevel(logging.ERROR)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        loop = SearchLoop({"searcher": make_searcher(name, warmup), "evaluator": CircuitEvaluator(circuit, tech)}, d, {"fom": "max"},
                          budget_trials=trials, seed=seed)
        res = loop.run()
        loop.close()
    sim_s = sum(t.metrics.get("sim_ms", 0.0) for t in res.trials if t.ok) / 1e3
    return circuit, tech, name, seed, float(res.best.metrics["fom"]), bool(res.best.metrics["specs_met"] == 1.0), time.perf_counter() - t0, sim_s


def human_row(circuit: str, tech: str):
    t = get_technology(tech)
    c = get_circuit(circuit).configure(t)
    cfg, _ = human_design(circuit, tech)
    m = simulate_design(c, t, cfg)["metrics"]
    return float(m["fom"]), bool(m["specs_met"] == 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(100, 110)))
    ap.add_argument("--tech", nargs="+", default=["sky130", "gf180mcu"])
    ap.add_argument("--circuits", nargs="+", default=list(CIRCUITS))
    ap.add_argument("--searchers", nargs="+", default=NAMES, choices=NAMES)
    ap.add_argument("--jobs", type=int, default=1, help="parallel processes")
    ap.add_argument("--warmup", type=int, default=None,
                    help="warm-up of both GCN-RL variants (default: the shipped 21; a budget at or below it never lets the agent act)")
    ap.add_argument("--from-logs", nargs="+", default=None,
                    help="build the table from the CELL lines of earlier runs' output instead of running")
    args = ap.parse_args()
    t_all = time.perf_counter()
    if args.from_logs:
        results = []
        for path in args.from_logs:
            for line in open(path):
                if line.startswith("CELL "):
                    _, c, t, n, s, fom, met, wall, sim = line.split()
                    if not any(r[:4] == (c, t, n, int(s)) for r in results):  # a cell run twice counts once
                        results.append((c, t, n, int(s), float(fom), met == "1", float(wall), float(sim)))
        args.tech = [t for t in dict.fromkeys(r[1] for r in results)]
        args.circuits = [c for c in dict.fromkeys(r[0] for r in results)]
        args.searchers = [n for n in NAMES if any(r[2] == n for r in results)]
        args.seeds = sorted({r[3] for r in results})
        args.trials = "the logged"
        print("cells per (circuit, tech, searcher): " + str(sorted({(c, t): len([r for r in results if r[0] == c and r[1] == t]) // len(args.searchers)
                                                                      for c, t in {(r[0], r[1]) for r in results}}.items())))
    else:
        cells = [(c, t, n, s, args.trials, args.warmup) for t in args.tech for c in args.circuits for n in args.searchers for s in args.seeds]
        results = []

        def show(r):
            print(f"CELL {r[0]} {r[1]} {r[2]} {r[3]} {r[4]:.6f} {int(r[5])} {r[6]:.2f} {r[7]:.2f}", flush=True)
            results.append(r)

        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                futures = [pool.submit(run_cell, *cell) for cell in cells]
                for fut in as_completed(futures):
                    show(fut.result())
        else:
            for cell in cells:
                show(run_cell(*cell))
    humans = {(c, t): human_row(c, t) for t in args.tech for c in args.circuits}
    names = list(args.searchers)
    print(f"gcn_rl settings (searcher/gcn_rl.yaml): {GCN_RL}" + (f"; warm-up set to {args.warmup}" if args.warmup is not None else ""))
    print(f"\nBest FoM after {args.trials} simulations, mean +- std over seeds {args.seeds} (higher is better); "
          f"(k/n) = seeds whose best design met every spec; wall {time.perf_counter() - t_all:.0f} s\n")
    print("| circuit | tech | " + " | ".join(names) + " | human (gm/Id) | GCN-RL (shipped) vs best other |")
    print("| --- | --- | " + " | ".join("---:" for _ in names) + " | ---: | --- |")
    wins = 0
    rows = [(t, c) for t in args.tech for c in args.circuits if any(r[0] == c and r[1] == t for r in results)]
    for t, c in rows:
        if True:
            stats = {}
            for n in names:
                b = [r[4] for r in results if r[0] == c and r[1] == t and r[2] == n]
                met = sum(r[5] for r in results if r[0] == c and r[1] == t and r[2] == n)
                stats[n] = (np.array(b), met)
            txt = [f"{stats[n][0].mean():.3f} +- {stats[n][0].std():.3f} ({stats[n][1]}/{len(stats[n][0])})" for n in names]
            hf, hm = humans[(c, t)]
            verdict = "-"
            if "gcn_rl" in names and len(names) > 1:
                g = stats["gcn_rl"][0]
                others = {n: stats[n][0] for n in names if n != "gcn_rl"}
                best_name = max(others, key=lambda n: others[n].mean())
                ref = others[best_name]
                if hf > ref.mean():
                    best_name, ref = "human", np.array([hf] * len(g))
                gap = g.mean() - ref.mean()
                p = ttest_ind(g, ref, equal_var=False, alternative="greater").pvalue if ref.std() > 0 or g.std() > 0 else (0.0 if gap > 0 else 1.0)
                ok = gap > 0 and p < 0.1
                wins += ok
                verdict = ("best" if ok else "tie" if gap > 0 else "no") + f" ({gap:+.3f} vs {best_name}, one-sided Welch p={p:.3f})"
            print(f"| {c} | {t} | " + " | ".join(txt) + f" | {hf:.3f} ({'met' if hm else 'not met'}) | {verdict} |")
    print(f"\nGCN-RL (shipped) best with p < 0.1 on {wins} of {len(rows)} circuit/technology rows")
    sim = sum(r[7] for r in results)
    wall = sum(r[6] for r in results)
    print(f"time in ngspice evaluations {sim:.0f} s of {wall:.0f} s of search wall time ({100 * sim / wall:.0f} %)")


if __name__ == "__main__":
    main()
