"""The evaluator and the backend through the hook contract, pruning of trials, deploy, distillation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hwaml
from hwaml import Candidate, Trial, TrialStatus
from hwaml.testing import BackendContract, EvaluatorContract, make_context

from hwaml_micronet_lm.backend import MicroNetScore
from hwaml_micronet_lm.distill import TeacherError, load_teacher, train_teacher
from hwaml_micronet_lm.evaluator import load_checkpoint
from hwaml_micronet_lm.train import evaluate_stream


FULL = {"n_layers": 1, "d_model": 32, "cutoffs": "300,1200", "cache": True, "hebbian": True, "distill": False, "sparsity": 0.5, "bits": 9}


class TestMicroNetEvaluator(EvaluatorContract):
    n_candidates = 1

    @pytest.fixture
    def evaluator(self, tiny):
        return tiny.evaluator(save_checkpoints=False)


class TestMicroNetScoreBackend(BackendContract):
    @pytest.fixture
    def backend(self):
        return MicroNetScore()

    @pytest.fixture
    def candidates(self):
        return [Candidate(dict(FULL), number=0), Candidate(dict(FULL, cutoffs="none", sparsity=0.0, bits=0, cache=False), number=1)]

    @pytest.fixture
    def contract_ctx(self, tmp_path, tiny):
        return make_context(tmp_path / "run", evaluator=tiny.evaluator(), backends={"micronet_score": MicroNetScore()})


def test_stages_move_the_score_the_published_way(tmp_path, tiny):
    ev = tiny.evaluator()
    ctx = make_context(tmp_path, evaluator=ev, backends={"m": MicroNetScore()})
    b = MicroNetScore()
    dense = b.cost(candidate=Candidate(dict(FULL, sparsity=0.0, bits=0)), ctx=ctx).metrics
    pruned = b.cost(candidate=Candidate(dict(FULL, bits=0)), ctx=ctx).metrics
    quant = b.cost(candidate=Candidate(dict(FULL)), ctx=ctx).metrics
    no_cache = b.cost(candidate=Candidate(dict(FULL, cache=False)), ctx=ctx).metrics
    full_softmax = b.cost(candidate=Candidate(dict(FULL, cutoffs="none", sparsity=0.0, bits=0)), ctx=ctx).metrics
    assert full_softmax["params_eq"] > dense["params_eq"]  # adaptive embedding shrinks the tables
    assert pruned["params_eq"] < dense["params_eq"] and pruned["ops_eq"] < dense["ops_eq"]
    assert quant["micronet_score"] < pruned["micronet_score"]
    assert no_cache["ops_eq"] < quant["ops_eq"]
    assert 0 < quant["same_corpus_score"] < 1


def test_pipeline_reports_each_epoch_trains_and_deploys(tmp_path, tiny):
    ev = tiny.evaluator()
    reports = []
    ctx = make_context(tmp_path, evaluator=ev, backends={"m": MicroNetScore()})
    from dataclasses import replace

    ctx = replace(ctx, report=lambda step, value: reports.append((step, value)))
    res = ev.evaluate(candidate=Candidate(dict(FULL), number=3), ctx=ctx)
    m = res.metrics
    assert [s for s, _ in reports] == [0, 1, 2]  # train, prune, quantize epochs
    assert all(np.isfinite(v) and v > 1 for _, v in reports)
    assert [s["stage"] for s in res.info["stages"]] == ["train", "prune", "cache_search", "quantize"]
    assert m["sparsity"] == pytest.approx(0.5, abs=0.01)
    # the planned count before training is the trained model's count
    cost = MicroNetScore().cost(candidate=Candidate(dict(FULL)), ctx=ctx).metrics
    assert m["trained_score"] == pytest.approx(cost["micronet_score"], rel=1e-6)
    assert res.info["cache_search"]["perplexity"] == min(g[2] for g in res.info["cache_search"]["grid"])
    model, meta = load_checkpoint(res.artifacts["checkpoint"])
    assert model.quant_bits == 9 and meta["candidate"]["sparsity"] == 0.5
    corpus = ev.corpus()
    assert evaluate_stream(model, corpus.valid, 600) == pytest.approx(m["perplexity"], rel=1e-4)
    trial = Trial(3, Candidate(dict(FULL), number=3), TrialStatus.COMPLETE, metrics=m, info={"artifacts": dict(res.artifacts)})
    dep = ev.deploy(trial=trial, ctx=ctx)
    assert dep.ok and dep.source == "micronet_lm"
    sheet = json.loads(Path(dep.artifacts["score_sheet"]).read_text())
    assert sheet["totals"]["micronet_score"] == pytest.approx(m["trained_score"])
    state = torch.load(dep.artifacts["model"], weights_only=True)
    codes = state["layers.0.ff1.codes"]
    assert codes.dtype == torch.int16 and codes.abs().max() <= 255
    assert state["layers.0.ff1.mask"].sum() == codes.numel()


def test_should_prune_stops_the_trial(tmp_path, tiny):
    from dataclasses import replace

    ev = tiny.evaluator(save_checkpoints=False)
    ctx = replace(make_context(tmp_path), should_prune=lambda: True)
    with pytest.raises(hwaml.TrialPruned, match="train epoch 0"):
        ev.evaluate(candidate=Candidate(dict(FULL), number=0), ctx=ctx)


def test_config_errors_are_clear(tiny):
    with pytest.raises(ValueError, match="teacher"):
        tiny.evaluator(space={"distill": [True, False]})
    with pytest.raises(ValueError, match="cutoffs"):
        tiny.evaluator(space={"cutoffs": ["8000,2000"]})
    with pytest.raises(ValueError, match="unknown model key"):
        tiny.evaluator(model={"n_layer": 2})
    from hwaml.config import ConfigError

    with pytest.raises(ConfigError, match="stages.train.epoch"):
        tiny.evaluator(stages={"train": {"epoch": 2}})


def test_distillation_from_a_trained_teacher(tmp_path, tiny):
    ev = tiny.evaluator()
    corpus = ev.corpus()
    teacher_dir = tmp_path / "teacher"
    meta = train_teacher(
        corpus,
        teacher_dir,
        model={"n_layers": 1, "d_model": 48, "n_head": 2, "d_head": 12, "d_inner": 96, "seq_len": 16, "mem_len": 16, "cutoffs": [300, 1200], "bin_widths": [48, 12, 3]},
        training=dict(tiny.stage),
        top_k=8,
        max_eval_tokens=500,
        progress=False,
    )
    assert 0 < meta["target_in_top_k"] <= 1 and meta["valid_perplexity"] > 1
    target = load_teacher(teacher_dir, corpus, tiny.stage["max_train_tokens"])
    assert target.indices.shape == (tiny.stage["max_train_tokens"], 8)
    assert target.hard_ratio(0, 10) == 0.5 and target.hard_ratio(10, 10) == 0.95
    with pytest.raises(TeacherError, match="not for this corpus"):
        load_teacher(teacher_dir, corpus, None)
    with pytest.raises(TeacherError, match="python -m hwaml_micronet_lm.distill"):
        load_teacher(tmp_path / "none", corpus, None)
    student = tiny.evaluator(teacher=str(teacher_dir), space={**ev.space_cfg.__dict__, "distill": [True]}, save_checkpoints=False)
    res = student.evaluate(candidate=Candidate(dict(FULL, distill=True, sparsity=0.0, bits=0), number=0), ctx=make_context(tmp_path / "s"))
    assert np.isfinite(res.metrics["perplexity"])
