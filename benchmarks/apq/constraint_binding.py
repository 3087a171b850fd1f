"""Why APQ's best model did not sit at the latency budget, and the fix: the
evolution's generations against how close its best ends below the budget.

    python benchmarks/apq/constraint_binding.py --out /tmp/apq_fashion --seeds 1,2,3

Reads the predictor and samples ``joint_vs_separate.py`` left in ``--out``
(``quant.pt``, ``samples_*.json``); budgets: the 25/50/75th percentiles of the
random samples' BitFusion latency and the median energy. For each budget, seed
and generation count, APQ's evolution (population 100, 25 parents, 50 + 50
children, mutation 0.1) runs with the constraint checked by the look-up table
(:class:`hwaml_apq.costmodel.JointCostTable`, checked here against the backend's
traced cost of the best); printed: the best's cost / budget and its predicted
accuracy. Also printed: the time per child of the two constraint checks
(backend: build + trace the network; table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/apq_fashion")
    p.add_argument("--dataset", choices=["fashion", "digits"], default="fashion")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--generations", default="2,20,100")
    args = p.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hwaml import Candidate
    from hwaml.testing import make_context
    from joint_vs_separate import evaluator

    from hwaml_apq.backends import BitFusionBackend
    from hwaml_apq.costmodel import JointCostTable
    from hwaml_apq.evolution import EvolutionConfig, evolve
    from hwaml_apq.predictor import load_predictor
    from hwaml_apq.space import JointEncoder

    out = Path(args.out)
    ev = evaluator(8, args.dataset)
    space = ev._space
    enc = JointEncoder(space.meta["apq"])
    model, _ = load_predictor(out / "quant.pt")
    rows = json.loads((out / "samples_fp32.json").read_text()) + json.loads((out / "samples_quant.json").read_text())
    lat = np.asarray([r["latency_ms"] for r in rows])
    en = np.asarray([r["energy_mj"] for r in rows])
    budgets = [("latency_ms", float(np.percentile(lat, q))) for q in (25, 50, 75)] + [("energy_mj", float(np.percentile(en, 50)))]
    ctx = make_context(out / "binding", evaluator=ev, backends={"bitfusion": BitFusionBackend()})
    table = JointCostTable(ev.arch, ev.resolution)

    rng = np.random.default_rng(0)
    probe = [space.sample(rng) for _ in range(10)]
    t0 = time.perf_counter()
    for c in probe:
        ctx.cost_fn(Candidate(c))
    t_backend = (time.perf_counter() - t0) / len(probe)
    t0 = time.perf_counter()
    for c in probe:
        table.cost(c)
    t_table = (time.perf_counter() - t0) / len(probe)
    print(f"machine: x86_64, 2 shared cores, torch {torch.__version__}, 1 thread; evaluator {ev.name} ({args.dataset}), predictor {out / 'quant.pt'}")
    print(f"constraint check per child: backend (build + trace the network) {1000 * t_backend:.1f} ms, look-up table {1000 * t_table:.2f} ms")

    def predict(cs):
        X = enc.matrix(cs)
        return model.predict(X[:, : enc.n_arch], X[:, enc.n_arch :])

    gens = [int(g) for g in args.generations.split(",")]
    print()
    print("| budget | seed | " + " | ".join(f"{g} gen.: best cost / budget" for g in gens) + " | " + " | ".join(f"{g} gen.: predicted acc." for g in gens) + " | s (last) |")
    print("| --- | ---: |" + " ---: |" * (2 * len(gens) + 1))
    for metric, bound in budgets:
        for seed in [int(s) for s in args.seeds.split(",")]:
            ratios, preds = [], []
            for g in gens:
                t0 = time.perf_counter()
                res = evolve(space, predict, np.random.default_rng(seed), EvolutionConfig(generations=g), lambda c: table.cost(c)[metric] <= bound)
                wall = time.perf_counter() - t0
                ours = table.cost(res.best)[metric]
                theirs = ctx.cost_fn(Candidate(res.best)).metrics[metric]
                if abs(ours - theirs) > 1e-9 * theirs:
                    raise SystemExit(f"table {ours} != backend {theirs}")
                ratios.append(theirs / bound)
                preds.append(res.best_score)
            print(f"| {metric} <= {bound:.5g} | {seed} | " + " | ".join(f"{r:.3f}" for r in ratios) + " | " + " | ".join(f"{x:.4f}" for x in preds) + f" | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
