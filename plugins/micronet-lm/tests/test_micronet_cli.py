"""`hwaml run experiment=micronet_pydocs` end to end through Hydra (shrunk to the pydoc topics corpus)."""

import json
import os
import subprocess
import sys

#: overrides that shrink experiment=micronet_pydocs to seconds (the real scale is the preset's)
SHRUNK = [
    "evaluator.data.kind=pydoc_topics",
    "evaluator.data.min_count=2",
    "evaluator.space.n_layers=[1]",
    "evaluator.space.d_model=[32]",
    'evaluator.space.cutoffs=["300,1200"]',
    "evaluator.space.sparsity=[0.5]",
    "evaluator.space.bits=[9]",
    "evaluator.model.seq_len=16",
    "evaluator.model.mem_len=16",
    "evaluator.model.n_cache=32",
    "evaluator.stages.train.max_train_tokens=3000",
    "evaluator.stages.prune.max_train_tokens=1500",
    "evaluator.stages.quantize.max_train_tokens=1000",
    "evaluator.stages.train.epochs=1",
    "evaluator.stages.train.warmup_steps=2",
    "evaluator.stages.max_eval_tokens=500",
    "evaluator.stages.max_test_tokens=500",
    "evaluator.progress=false",
    "evaluator.threads=1",
    "budget.trials=2",
    "searcher.population_size=2",
    "constraints.micronet_score=0.01",
]


def test_micronet_pydocs_searches_scores_and_deploys(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(
        [sys.executable, "-m", "hwaml.cli", "run", "experiment=micronet_pydocs", *SHRUNK, f"evaluator.data.cache_dir={tmp_path / 'tokens'}", "deploy.enabled=true", f"hydra.run.dir={run}"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    best = json.loads(out.split("hwaml: best trial", 1)[1].split(" ", 2)[2].splitlines()[0])
    for key in ("perplexity", "test_perplexity", "micronet_score", "params_eq", "ops_eq", "same_corpus_score"):
        assert key in best, key
    assert best["micronet_score"] <= 0.01 and best["trained_score"] == best["micronet_score"]
    sheets = list((run / "deploy").glob("micronet_lm_trial_*/score_sheet.csv"))
    assert sheets, out
    assert "layers.0.qkv" in sheets[0].read_text()
