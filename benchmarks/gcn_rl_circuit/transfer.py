"""Transfer learning: fine-tuning a trained agent vs starting from scratch on a small budget.

    python benchmarks/gcn_rl_circuit/transfer.py --pretrain 150 --budget 30 --seeds 0 1 2

Pre-trains GCN-RL on the two-stage TIA at 180 nm, saves the agent, then sizes
(a) the same TIA on the 45 nm node (node transfer) and (b) the three-stage TIA
at 180 nm (topology transfer) with ``--budget`` simulations, once starting
from the saved agent (``init_from``) and once from a fresh agent with the same
settings (no warm-up, same exploration noise). Prints best and mean FoM.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from hwaml.loop import SearchLoop
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator
from hwaml_gcn_rl_circuit.searcher import AGENT_FILE, GCNRLSearcher


def run(searcher, circuit, node, trials, seed, run_dir):
    loop = SearchLoop({"searcher": searcher, "evaluator": CircuitEvaluator(circuit, node)}, run_dir, {"fom": "max"}, budget_trials=trials, seed=seed)
    res = loop.run()
    loop.close()
    foms = [t.metrics["fom"] for t in res.trials]
    return max(foms), float(np.mean(foms))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain", type=int, default=150)
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    logging.getLogger("hwaml").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp())
    targets = {"node: two_stage_tia n180 -> n45": ("two_stage_tia", "n45"), "topology: two_stage_tia -> three_stage_tia (n180)": ("three_stage_tia", "n180")}
    fine = dict(agent=dict(actor_lr=1e-3, updates_per_trial=4), exploration=dict(warmup=0, noise_sigma=0.15, noise_decay=0.97))
    rows = {k: {"transfer": [], "scratch": []} for k in targets}
    for seed in args.seeds:
        src = tmp / f"pretrain{seed}"
        best, _ = run(GCNRLSearcher(agent=dict(actor_lr=1e-3), exploration=dict(warmup=args.pretrain // 4, noise_sigma=0.3, noise_decay=0.98)), "two_stage_tia", "n180", args.pretrain, seed, src)
        print(f"seed {seed}: pre-trained on two_stage_tia n180, best FoM {best:.3f}", flush=True)
        for label, (circuit, node) in targets.items():
            for mode in ("transfer", "scratch"):
                init = str(src / AGENT_FILE) if mode == "transfer" else None
                b, m = run(GCNRLSearcher(init_from=init, save_agent=False, **fine), circuit, node, args.budget, seed, tmp / f"{mode}{seed}{circuit}{node}")
                rows[label][mode].append((b, m))
                print(f"  {label:50s} {mode:8s} best {b:.3f} mean {m:.3f}", flush=True)
    print(f"\nFoM after {args.budget} simulations (pre-training: {args.pretrain} on two_stage_tia n180), mean +- std over seeds {args.seeds}\n")
    print("| transfer | from scratch: best | transferred: best | from scratch: mean of trials | transferred: mean of trials |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, r in rows.items():
        s, t = np.array(r["scratch"]), np.array(r["transfer"])
        print(f"| {label} | {s[:, 0].mean():.3f} +- {s[:, 0].std():.3f} | {t[:, 0].mean():.3f} +- {t[:, 0].std():.3f} | {s[:, 1].mean():.3f} | {t[:, 1].mean():.3f} |")


if __name__ == "__main__":
    main()
