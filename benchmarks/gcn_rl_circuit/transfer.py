"""Transfer learning on real PDKs: fine-tuning a trained agent vs starting from scratch.

    python benchmarks/gcn_rl_circuit/transfer.py --pretrain 60 --budget 60 --seeds 100 101 ... 109 --jobs 2

Per seed, pre-trains GCN-RL (the shipped ``searcher=gcn_rl`` settings) on the two-stage TIA,
saves the agent, then sizes (a) the same TIA on the other PDK (GF180MCU -> SKY130) and (b) the
three-stage TIA on the same PDK (SKY130, two-stage -> three-stage), ``--budget`` simulations
each, once from the saved agent (``init_from``) and once from a fresh agent, both with the
``experiment=gcn_rl_transfer_tia`` settings (warm-up 10, sigma 0.2). Prints the best FoM after
30 and after ``--budget`` simulations, mean +- std over seeds, and the one-sided Welch p-value
of "transferred > scratch".
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from scipy.stats import ttest_ind

from compare_searchers import GCN_RL
from hwaml.loop import SearchLoop
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator
from hwaml_gcn_rl_circuit.searcher import AGENT_FILE, GCNRLSearcher

TRANSFERS = {
    "PDK: two_stage_tia gf180mcu -> sky130": (("two_stage_tia", "gf180mcu"), ("two_stage_tia", "sky130")),
    "topology: two_stage_tia -> three_stage_tia (sky130)": (("two_stage_tia", "sky130"), ("three_stage_tia", "sky130")),
}


def fine_settings():
    s = {k: dict(v) if isinstance(v, dict) else v for k, v in GCN_RL.items()}
    s["exploration"].update(warmup=10, noise_sigma=0.2)
    return s


def run(searcher, circuit, tech, trials, seed, run_dir):
    loop = SearchLoop({"searcher": searcher, "evaluator": CircuitEvaluator(circuit, tech)}, run_dir, {"fom": "max"}, budget_trials=trials, seed=seed)
    res = loop.run()
    loop.close()
    return np.maximum.accumulate([t.metrics["fom"] for t in res.trials])


def cell(label, seed, pretrain, budget):
    logging.getLogger("hwaml").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(1)
    (src_c, src_t), (dst_c, dst_t) = TRANSFERS[label]
    tmp = Path(tempfile.mkdtemp())
    run(GCNRLSearcher(**GCN_RL), src_c, src_t, pretrain, seed, tmp / "src")
    out = {}
    for mode in ("transfer", "scratch"):
        init = str(tmp / "src" / AGENT_FILE) if mode == "transfer" else None
        curve = run(GCNRLSearcher(init_from=init, save_agent=False, **fine_settings()), dst_c, dst_t, budget, seed, tmp / mode)
        out[mode] = curve
    return label, seed, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain", type=int, default=60)
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(100, 110)))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--from-logs", nargs="+", default=None, help="the table from earlier runs' CELL lines (best FoM at the end; at 30 where logged)")
    args = ap.parse_args()
    if args.from_logs:
        import ast
        import re

        rows = {}
        for path in args.from_logs:
            for line in open(path):
                m = re.match(r"CELL ('.*?') seed (\d+) scratch (\S+) transfer (\S+)(?: scratch@30 (\S+) transfer@30 (\S+))?", line)
                if m:
                    label = ast.literal_eval(m.group(1))
                    rows.setdefault(label, {}).setdefault(int(m.group(2)), m.groups()[2:])
        print("| transfer | n | seeds | from scratch | transferred | gain | one-sided Welch p |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for label, by_seed in rows.items():
            for tag, (i, j) in (("end of run", (0, 1)), ("30", (2, 3))):
                vals = [(float(v[i]), float(v[j])) for v in by_seed.values() if v[i] is not None]
                if len(vals) < 2:
                    continue
                s_, t_ = np.array(vals).T
                p = ttest_ind(t_, s_, equal_var=False, alternative="greater").pvalue
                print(f"| {label} | {tag} | {len(vals)} | {s_.mean():.3f} +- {s_.std():.3f} | {t_.mean():.3f} +- {t_.std():.3f} | {t_.mean() - s_.mean():+.3f} | {p:.3f} |")
        return
    cells = [(label, s, args.pretrain, args.budget) for label in TRANSFERS for s in args.seeds]
    results = []

    def show(r):
        n30 = min(30, len(r[2]["scratch"])) - 1
        print(f"CELL {r[0]!r} seed {r[1]} scratch {r[2]['scratch'][-1]:.4f} transfer {r[2]['transfer'][-1]:.4f} "
              f"scratch@30 {r[2]['scratch'][n30]:.4f} transfer@30 {r[2]['transfer'][n30]:.4f}", flush=True)
        results.append(r)

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for fut in as_completed([pool.submit(cell, *c) for c in cells]):
                show(fut.result())
    else:
        for c in cells:
            show(cell(*c))
    checkpoints = sorted({min(30, args.budget), args.budget})
    print(f"Pre-training: {args.pretrain} simulations on the source; best FoM on the target after n simulations, "
          f"mean +- std over seeds {args.seeds}\n")
    print("| transfer | n | from scratch | transferred | gain | one-sided Welch p |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label in TRANSFERS:
        for n in checkpoints:
            s = np.array([r[2]["scratch"][n - 1] for r in results if r[0] == label])
            t = np.array([r[2]["transfer"][n - 1] for r in results if r[0] == label])
            p = ttest_ind(t, s, equal_var=False, alternative="greater").pvalue
            print(f"| {label} | {n} | {s.mean():.3f} +- {s.std():.3f} | {t.mean():.3f} +- {t.std():.3f} | {t.mean() - s.mean():+.3f} | {p:.3f} |")


if __name__ == "__main__":
    main()
