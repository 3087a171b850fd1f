"""Evolution vs random search at equal trials on the main job (MCUNet on Fashion-MNIST).

``hwaml run experiment=mcunet_fashion`` (stage 1, the progressive-shrinking
supernet, 20 trials under 8 KB of SRAM, Flash and a 60 ms latency bound) is run
once to train the supernet; every search then starts from a copy of that run's
``tinynas/`` state (stage 1's result and the supernet: the same for both
searchers, as in MCUNet, where one supernet serves every search), with
``searcher=evolution`` (the experiment's) or ``searcher=random``, the same
budget of trials, and a run seed per repetition. The experiment's settings were
chosen with the default seed 0; the seeds here are others.

Printed per searcher and seed: the best validation accuracy among feasible
trials (what the search ranks on: 5,000 held-out training images), that
model's test accuracy (2,000 test images, never seen by the search), the trial
that found it and the number of feasible trials; then the means.

    python benchmarks/tinynas/bench_search.py [--seeds 200 201 202 203 204] [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def hwaml(run_dir: Path, *overrides: str) -> None:
    cmd = [sys.executable, "-m", "hwaml.cli", "run", "experiment=mcunet_fashion", "deploy.enabled=false", "plots=false", f"hydra.run.dir={run_dir}", *overrides]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HWAML_PROGRESS": "0"})
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    print(f"  {run_dir.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def outcome(run_dir: Path) -> dict:
    con = sqlite3.connect(run_dir / "trials.sqlite")
    rows = con.execute("SELECT number, status, metrics FROM trials ORDER BY number").fetchall()
    feasible = [(n, json.loads(m)) for n, s, m in rows if s == "complete"]
    if not feasible:
        return {"best": float("nan"), "test": float("nan"), "at": None, "feasible": 0, "trials": len(rows)}
    n, m = max(feasible, key=lambda r: r[1]["accuracy"])
    return {"best": m["accuracy"], "test": m["test_accuracy"], "at": n, "feasible": len(feasible), "trials": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[200, 201, 202, 203, 204])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--work", default=None, help="keep the runs here (default: a temporary directory)")
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="hwaml_bench_search_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prep = work / "prepare"
    if not (prep / "tinynas" / "supernet.json").exists():
        print("training the supernet (one full run of the main job, its first trial only)", file=sys.stderr, flush=True)
        hwaml(prep, "budget.trials=1")
    table = {"evolution": [], "random": []}
    for seed in args.seeds:
        for searcher in table:
            run_dir = work / f"{searcher}_{seed}"
            if not (run_dir / "trials.sqlite").exists():
                shutil.rmtree(run_dir, ignore_errors=True)
                shutil.copytree(prep / "tinynas", run_dir / "tinynas")
                # the experiment's evolution settings are not parameters of random search (strict configs)
                drop = ["~searcher.population_size", "~searcher.tournament_size", "~searcher.mutation_prob", "~searcher.max_rejections"] if searcher == "random" else []
                hwaml(run_dir, f"searcher={searcher}", *drop, f"seed={seed}", f"budget.trials={args.trials}")
            table[searcher].append({"seed": seed, **outcome(run_dir)})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; experiment=mcunet_fashion, {args.trials} trials per search, one shared supernet; {time.perf_counter() - t0:.0f} s in all")
    print()
    print(f"{'searcher':<11}{'seed':>6}{'best val acc':>14}{'its test acc':>14}{'found at trial':>16}{'feasible':>10}")
    print("-" * 71)
    for s, rows in table.items():
        for r in rows:
            print(f"{s:<11}{r['seed']:>6}{r['best']:>14.4f}{r['test']:>14.4f}{str(r['at']):>16}{r['feasible']:>7}/{r['trials']}")
    print()
    print(f"{'searcher':<11}{'seeds with a feasible model':>29}{'mean best val':>15}{'mean test':>11}{'mean feasible trials':>22}")
    for s, rows in table.items():
        ok = [r for r in rows if r["feasible"]]
        mv = f"{statistics.mean(r['best'] for r in ok):.4f}" if ok else "-"
        mt = f"{statistics.mean(r['test'] for r in ok):.4f}" if ok else "-"
        print(f"{s:<11}{len(ok):>26}/{len(rows):<2}{mv:>15}{mt:>11}{statistics.mean(r['feasible'] for r in rows):>22.1f}")
    # a search that found no feasible model loses to one that found any
    better = lambda a, b: a["feasible"] > 0 and (b["feasible"] == 0 or a["best"] > b["best"])
    wins = sum(better(e, r) for e, r in zip(table["evolution"], table["random"]))
    losses = sum(better(r, e) for e, r in zip(table["evolution"], table["random"]))
    print(f"\nevolution better on {wins} of {len(args.seeds)} seeds, random on {losses} (no feasible model counts as the worst)")
    both = [(e["best"], r["best"]) for e, r in zip(table["evolution"], table["random"]) if e["feasible"] and r["feasible"]]
    if both:
        print(f"seeds where both found a feasible model: {len(both)}; mean best val evolution {statistics.mean(a for a, _ in both):.4f}, random {statistics.mean(b for _, b in both):.4f}")


if __name__ == "__main__":
    main()
