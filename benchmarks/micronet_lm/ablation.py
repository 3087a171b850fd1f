"""MicroNet-LM ablation on the Python docs corpus: perplexity and score after each stage.

The paper's table (Yan et al., MicroNet for efficient language modeling): a
Transformer-XL-style base, then adaptive embedding/softmax, cache, Hebbian
softmax, distillation, pruning, cache search, quantization -- each stage
cumulative -- beside the same-corpus LSTM baseline of the challenge's kind, all
trained on the same tokens in the same run, on this machine's CPU.

Every stage goes through hwaml_micronet_lm.evaluator.MicroNetEvaluator (the
code `hwaml run evaluator=micronet_pydocs` runs); the teacher is trained by the
distillation command's function first. Run from the repository root:

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/micronet_lm/ablation.py --seed 1

Settings (sizes, learning rates) were chosen on seed 0; the recorded run uses seed 1.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import torch

from hwaml import Candidate
from hwaml.testing import make_context

from hwaml_micronet_lm.backend import MicroNetScore
from hwaml_micronet_lm.distill import train_teacher
from hwaml_micronet_lm.evaluator import MicroNetEvaluator
from hwaml_micronet_lm.lstm import LSTMLM, evaluate_lstm, train_lstm
from hwaml_micronet_lm.score import score_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-tokens", type=int, default=150_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--eval-tokens", type=int, default=20_000)
    ap.add_argument("--test-tokens", type=int, default=40_000)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--sparsity", type=float, default=0.4)
    ap.add_argument("--bits", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--hebbian-T", type=int, default=500, help="the Hebbian softmax's hand-over count T (published: 500, for 103M tokens)")
    ap.add_argument("--hebbian-sweep", type=int, nargs="*", default=None,
                    help="only train the '+ Hebbian softmax' stage (adaptive softmax + cache) without Hebbian and with each T given, "
                         "and print validation perplexities (to choose T on a seed other than the reported one)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="micronet_bench_"))
    stage = {"epochs": a.epochs, "batch_size": 16, "lr": 2e-3, "warmup_steps": 20, "max_train_tokens": a.train_tokens}

    def evaluator(**kw):
        args = dict(
            data={"kind": "python_docs"},
            model={"n_head": 4, "d_head": 16, "d_inner": 256, "seq_len": 48, "mem_len": 48, "n_cache": 500, "bin_widths": [64, 16, 4]},
            space={"n_layers": [a.layers], "d_model": [a.d_model], "cutoffs": ["none", "2000,8000"], "sparsity": [0.0, a.sparsity], "bits": [0, a.bits], "cache": [False, True], "hebbian": [False, True], "distill": [False, True]},
            stages={
                "train": stage,
                "prune": dict(stage, lr=5e-4, warmup_steps=0, max_train_tokens=a.train_tokens // 2),
                "quantize": dict(stage, lr=2e-4, warmup_steps=0, max_train_tokens=a.train_tokens // 4),
                "max_eval_tokens": a.eval_tokens,
                "max_test_tokens": a.test_tokens,
            },
            baseline={"d_embed": 128, "d_hidden": 512, "project": True},
            save_checkpoints=False,
            progress=False,
            threads=a.threads,
            seed=a.seed,
            hebbian={"T": a.hebbian_T, "gamma": 0.01, "match_norm": True},
        )
        args.update(kw)
        return MicroNetEvaluator(**args)

    probe = evaluator(teacher="unused")
    corpus = probe.corpus()
    print(f"corpus {corpus.name}: {corpus.summary()}; training on the first {a.train_tokens} tokens, {a.epochs} epoch(s)")
    if a.hebbian_sweep is not None:
        cand = {"n_layers": a.layers, "d_model": a.d_model, "cutoffs": "2000,8000", "cache": True, "hebbian": False, "distill": False, "sparsity": 0.0, "bits": 0}
        print(f"seed {a.seed}: adaptive softmax + cache, without and with the Hebbian softmax (gamma 0.01), validation perplexity of the training stage")
        print("| Hebbian T | valid ppl | test ppl | s |")
        print("| ---: | ---: | ---: | ---: |")
        for T in [None, *a.hebbian_sweep]:
            ev = evaluator(teacher="unused", hebbian={"T": T or a.hebbian_T, "gamma": 0.01, "match_norm": True})
            ctx = make_context(work / f"sweep{T}", seed=a.seed, evaluator=ev, backends={"micronet_score": MicroNetScore()})
            t = time.perf_counter()
            res = ev.evaluate(candidate=Candidate(dict(cand, hebbian=T is not None), number=0), ctx=ctx)
            train = next(s for s in res.info["stages"] if s["stage"] == "train")
            print(f"| {'off' if T is None else T} | {train['perplexity']:.2f} | {res.metrics['test_perplexity']:.2f} | {time.perf_counter() - t:.0f} |", flush=True)
        return

    # -- teacher (the distillation command's function), on the same tokens
    t = time.perf_counter()
    teacher_dir = work / "teacher"
    tmeta = train_teacher(
        corpus,
        teacher_dir,
        model={"n_layers": a.layers + 2, "d_model": 2 * a.d_model, "n_head": 4, "d_head": 32, "d_inner": 8 * a.d_model, "seq_len": 48, "mem_len": 48, "cutoffs": [2000, 8000], "bin_widths": [2 * a.d_model, a.d_model // 2, 8]},
        training=dict(stage, lr=1.5e-3),
        top_k=32,
        max_eval_tokens=a.eval_tokens,
        progress=False,
        seed=a.seed,
    )
    print(f"teacher: {tmeta['parameters']} parameters, validation perplexity {tmeta['valid_perplexity']:.2f}, target in top-32 {tmeta['target_in_top_k']:.3f} ({time.perf_counter() - t:.0f} s)")

    # -- LSTM baseline of the challenge's kind
    t = time.perf_counter()
    torch.manual_seed(a.seed)
    lstm = LSTMLM(len(corpus.vocab), 128, 512, project=True, dropout=0.0)
    lstm_tps = train_lstm(lstm, corpus.train, epochs=a.epochs, batch_size=16, bptt=48, lr=2e-3, max_train_tokens=a.train_tokens, progress=False)
    lstm_val = evaluate_lstm(lstm, corpus.valid, a.eval_tokens)
    lstm_test = evaluate_lstm(lstm, corpus.test, a.test_tokens)
    lsheet = score_model(lstm)
    print(f"LSTM baseline trained ({time.perf_counter() - t:.0f} s)")

    rows = []
    base = {"n_layers": a.layers, "d_model": a.d_model, "cutoffs": "none", "cache": False, "hebbian": False, "distill": False, "sparsity": 0.0, "bits": 0}
    steps = [
        ("base (Transformer-XL, full softmax)", {}),
        ("+ adaptive embedding/softmax", {"cutoffs": "2000,8000"}),
        ("+ cache (trained theta, lambda)", {"cache": True}),
        ("+ Hebbian softmax", {"hebbian": True}),
        ("+ distillation", {"distill": True}),
    ]
    cand = dict(base)
    tps = None
    throughput = {}
    for i, (name, change) in enumerate(steps):
        cand.update(change)
        last = i == len(steps) - 1
        if last:
            cand.update({"sparsity": a.sparsity, "bits": a.bits})
        ev = evaluator(teacher=str(teacher_dir))
        ctx = make_context(work / f"run{i}", seed=a.seed, evaluator=ev, backends={"micronet_score": MicroNetScore()})
        t = time.perf_counter()
        res = ev.evaluate(candidate=Candidate(dict(cand), number=i), ctx=ctx)
        tps = res.metrics["train_tokens_per_s"]
        throughput[name] = tps
        stages = res.info["stages"]
        labels = {"train": name, "prune": f"+ pruning ({a.sparsity:.0%}, Zhu & Gupta)", "cache_search": "+ cache search (validation)", "quantize": f"+ quantization ({a.bits} bits, QAT)"}
        for s in stages if last else stages[:1]:
            if s["stage"] == "cache_search" and not last:
                continue
            rows.append({"stage": labels[s["stage"]], "valid_ppl": s["perplexity"], "params_eq": s["params_eq"], "ops_eq": s["ops_eq"], "score": s["micronet_score"]})
        rows[-1]["test_ppl"] = res.metrics["test_perplexity"]
        print(f"  {name}: done ({time.perf_counter() - t:.0f} s)")

    info = probe.stats_info(probe.model_config(cand))
    lp, lo = lsheet.params_eq(), lsheet.ops_eq()
    final = rows[-1]
    print()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {a.threads} thread(s); seed {a.seed}; wall {time.perf_counter() - t_start:.0f} s")
    print()
    print("| stage | valid ppl | test ppl | params-eq | ops-eq/token | MicroNet score | same-corpus score |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        same = r["params_eq"] / info["baseline_params"] + r["ops_eq"] / info["baseline_ops"]
        tp = f"{r['test_ppl']:.2f}" if "test_ppl" in r else ""
        print(f"| {r['stage']} | {r['valid_ppl']:.2f} | {tp} | {r['params_eq']:,.0f} | {r['ops_eq']:,.0f} | {r['score']:.6f} | {same:.4f} |")
    lsame = lp / info["baseline_params"] + lo / info["baseline_ops"]
    print(f"| LSTM baseline (1 layer, 512 units, full softmax) | {lstm_val:.2f} | {lstm_test:.2f} | {lp:,.0f} | {lo:,.0f} | {lsheet.score():.6f} | {lsame:.4f} |")
    print()
    print(f"final vs LSTM baseline: {lp / final['params_eq']:.1f}x fewer parameter-equivalents, {lo / final['ops_eq']:.1f}x fewer op-equivalents; "
          f"test perplexity {final['test_ppl']:.2f} vs {lstm_test:.2f} ({'at or better than' if final['test_ppl'] <= lstm_test else 'worse than'} the baseline)")
    print(f"training throughput (tokens/s, {a.threads} thread, training stage of each run): " + ", ".join(f"{k}: {v:,.0f}" for k, v in throughput.items()) + f"; LSTM baseline: {lstm_tps:,.0f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows, "lstm": {"valid_ppl": lstm_val, "test_ppl": lstm_test, "params_eq": lp, "ops_eq": lo, "tokens_per_s": lstm_tps}, "model_tokens_per_s": throughput, "args": vars(a)}, indent=1))


if __name__ == "__main__":
    main()
