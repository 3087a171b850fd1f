"""APQ benchmark: predictor transfer (sample efficiency) and joint search vs the
separate pipeline (NAS -> AMC -> HAQ), on the same supernet, data, BitFusion
model and budgets.

    python benchmarks/apq/joint_vs_separate.py --out /tmp/apq_fashion --search-seeds 1   # Fashion-MNIST (default)
    python benchmarks/apq/joint_vs_separate.py --dataset digits --out /tmp/apq_bench         # digits

Fashion-MNIST: the ``apq_fashion`` preset at the CPU scale of
``benchmarks/apq/fashion_common.py`` (a 16 px supernet trained once and cached),
validated on 5,000 held-out training images; the best trial of each search is
then scored once on the 10,000 test images (the final report; never searched on).

1. Samples: ``--fp`` random joint configurations evaluated in full precision
   (sub-networks of ofa-nas's cached tiny_digits supernet on digits, batch norm
   recalibrated, no training) and ``--quant`` evaluated quantized (calibration +
   short quantization-aware fine-tuning), by the apq evaluator itself. Cached in
   ``--out`` (a rerun reuses them).
2. Sample efficiency: the quantization-aware predictor transferred from the
   full-precision one vs trained from scratch, RMSE and pairwise ranking accuracy
   on held-out quantized samples, per number of quantized training samples, seeds.
3. Joint vs separate at latency budgets (quartiles of the random samples'
   BitFusion latency) and one energy budget: each search runs through the hwaml
   loop (``run_search``) with the apq evaluator and the bitfusion backend; the
   final quantized accuracy of the best feasible trial, its cost / budget, the
   number of real (fine-tuned) evaluations and the wall time are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch


def evaluator(qat_steps: int, dataset: str = "fashion"):
    from hwaml_apq.evaluator import APQEvaluator

    if dataset == "fashion":
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fashion_common import fashion_evaluator

        return fashion_evaluator(qat={"epochs": 1, "max_steps_per_epoch": qat_steps, "batch_size": 32, "calibration_images": 128, "kl_bins": 256, "save_weights": True})
    return APQEvaluator(
        data={"dataset": "digits"},
        qat={"epochs": 1, "max_steps_per_epoch": qat_steps, "batch_size": 32, "calibration_images": 128, "kl_bins": 256, "save_weights": False},
        calibration_size=200,
        progress=False,
        name="apq_digits",
    )


def collect(ev, n, mode, rng, out: Path, ctx):
    path = out / f"samples_{mode}.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    ev.mode = mode
    from hwaml import Candidate

    t0 = time.perf_counter()
    while len(rows) < n:
        cfg = ev._space.sample(rng)
        r = ev.evaluate(Candidate(cfg), ctx)
        cost = ctx.cost_fn(Candidate(cfg)).metrics
        rows.append({"config": cfg, **r.metrics, **cost})
        path.write_text(json.dumps(rows))
    return rows, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", choices=["fashion", "digits"], default="fashion")
    p.add_argument("--out", default="/tmp/apq_fashion")
    p.add_argument("--fp", type=int, default=80)
    p.add_argument("--quant", type=int, default=45)
    p.add_argument("--counts", default="5,10,15,20,25")
    p.add_argument("--test", type=int, default=20)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--search-seeds", default="0")
    p.add_argument("--qat-steps", type=int, default=8)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--budgets", default="25,50,75", help="latency budgets: percentiles of the random samples' latency")
    p.add_argument("--skip-search", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from hwaml.testing import make_context, run_search

    from hwaml_apq.agents import AMCSearcher  # noqa: F401  (imported for the record of what runs)
    from hwaml_apq.backends import BitFusionBackend
    from hwaml_apq.cli import format_efficiency, sample_efficiency
    from hwaml_apq.evolution import APQEvolutionSearcher
    from hwaml_apq.pipeline import SeparatePipelineSearcher
    from hwaml_apq.predictor import PredictorTraining, fit_fp_predictor, fit_quant_predictor, save_predictor
    from hwaml_apq.space import JointEncoder

    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, 1 thread, shared CPU")
    ev = evaluator(args.qat_steps, args.dataset)
    t0 = time.perf_counter()
    ev.supernet()
    d = ev.data()
    print(f"data: {args.dataset}, {len(d.train)} training / {len(d.val)} validation images" + (f" / {len(ev.test_split())} test images (final report only)" if ev.test_split() is not None else " (no test split)") + f"; supernet ready in {time.perf_counter() - t0:.0f} s")
    ctx = make_context(out / "collect", evaluator=ev, backends={"bitfusion": BitFusionBackend()})
    rng = np.random.default_rng(100)
    fp_rows, t_fp = collect(ev, args.fp, "fp32", rng, out, ctx)
    q_rows, t_q = collect(ev, args.quant, "quant", rng, out, ctx)
    print(f"samples: {len(fp_rows)} fp32 ({t_fp:.0f} s this run), {len(q_rows)} quantized ({t_q:.0f} s this run)")
    enc = JointEncoder(ev._space.meta["apq"])
    fp = ([r["config"] for r in fp_rows], np.asarray([r["accuracy_fp32"] for r in fp_rows]))
    qd = ([r["config"] for r in q_rows], np.asarray([r["accuracy"] for r in q_rows]))
    print(f"fp32 accuracy range {fp[1].min():.3f}..{fp[1].max():.3f}; quantized {qd[1].min():.3f}..{qd[1].max():.3f}")
    counts = [int(c) for c in args.counts.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    eff = out / "efficiency.json"
    key = {"counts": counts, "seeds": seeds, "test": args.test, "fp": len(fp[1]), "quant": len(qd[1])}
    cached = json.loads(eff.read_text()) if eff.is_file() else {}
    if isinstance(cached, dict) and cached.get("key") == key:
        rows = cached["rows"]
    else:
        rows = sample_efficiency(enc, fp, qd, counts, seeds, args.test, epochs=300, compare_restandardised=True)
        eff.write_text(json.dumps({"key": key, "rows": rows}))
    print()
    print(format_efficiency(rows, len(fp[1]), args.test))
    if args.skip_search:
        return
    # predictors for the searches: fp32 on all fp samples; quantization-aware transferred, on all quantized ones
    t = PredictorTraining(epochs=300)
    Xf, Xq = enc.matrix(fp[0]), enc.matrix(qd[0])
    fp_model = fit_fp_predictor(Xf[:, : enc.n_arch], fp[1], t, seed=0)
    save_predictor(fp_model, out / "fp.pt")
    q_model = fit_quant_predictor(Xq[:, : enc.n_arch], Xq[:, enc.n_arch :], qd[1], init=fp_model, training=t, seed=0)
    save_predictor(q_model, out / "quant.pt")
    lat = np.asarray([r["latency_ms"] for r in fp_rows + q_rows])
    en = np.asarray([r["energy_mj"] for r in fp_rows + q_rows])
    budgets = [("latency_ms", float(np.percentile(lat, float(q)))) for q in args.budgets.split(",")] + [("energy_mj", float(np.percentile(en, 50)))]
    ev.mode = "quant"
    evo = {"population": 100, "parents": 25, "mutations": 50, "crossovers": 50, "mutate_prob": 0.1, "generations": args.generations, "max_draws": 500}
    table = []
    for metric, bound in budgets:
        for seed in [int(s) for s in args.search_seeds.split(",")]:
            for name, searcher, trials in (
                ("joint (APQ)", APQEvolutionSearcher(evolution=evo, predictor_path=str(out / "quant.pt")), 3),
                (
                    "separate (NAS+AMC+HAQ)",
                    SeparatePipelineSearcher(nas_trials=2, amc_episodes=3, haq_episodes=3, fp_predictor_path=str(out / "fp.pt"), evolution=evo, amc_agent={"warmup_episodes": 3}, haq_agent={"warmup_episodes": 3}),
                    8,
                ),
            ):
                run_dir = out / f"{name.split()[0]}_{metric}_{bound:.6f}_s{seed}"
                if run_dir.exists():
                    import shutil

                    shutil.rmtree(run_dir)  # a fresh search each time (its wall time is measured)
                t0 = time.perf_counter()
                res = run_search({"searcher": searcher, "evaluator": ev, "backend.bitfusion": BitFusionBackend()}, run_dir, trials=trials, constraints={metric: bound}, seed=seed)
                wall = time.perf_counter() - t0
                ok = [tr for tr in res.trials if tr.ok]
                best = max(ok, key=lambda tr: tr.metrics["accuracy"]) if ok else None
                evals = sum(1 for tr in res.trials if tr.status in ("complete", "pruned", "failed"))
                eval_s = sum(tr.duration_s for tr in res.trials)
                test_acc = math.nan
                if best is not None and ev.test_split() is not None:
                    test_acc = ev.test_accuracy(best, make_context(run_dir, evaluator=ev))  # the final report: once, on the test split
                row = {
                    "budget": f"{metric} <= {bound:.5g}",
                    "seed": seed,
                    "method": name,
                    "accuracy": best.metrics["accuracy"] if best else math.nan,
                    "test_accuracy": test_acc,
                    "cost/budget": (best.cost[metric] / bound) if best else math.nan,
                    "evaluations": evals,
                    "eval_s": eval_s,
                    "wall_s": wall,
                }
                table.append(row)
                print(json.dumps(row), flush=True)
    (out / f"search_s{args.search_seeds.replace(',', '_')}.json").write_text(json.dumps(table))
    print()
    print("| budget | seed | method | quantized accuracy (validation) | test accuracy of that model | best cost / budget | fine-tuned evaluations | evaluation s | search wall s |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['budget']} | {r['seed']} | {r['method']} | {r['accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['cost/budget']:.3f} | {r['evaluations']} | {r['eval_s']:.0f} | {r['wall_s']:.0f} |")
    print(f"\none-time predictor data (APQ only, amortised over every budget): {len(fp_rows)} fp32 + {len(q_rows)} quantized samples")


if __name__ == "__main__":
    main()
