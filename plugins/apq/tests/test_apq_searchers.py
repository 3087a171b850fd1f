"""APQ evolution, AMC, HAQ and the separate pipeline on the closed-form joint evaluator,
costed by the BitFusion backend on the built (untrained, quantized) networks."""

from pathlib import Path

import numpy as np
import pytest
from hwaml import Candidate
from hwaml.plugins import PluginError
from hwaml.testing import SearcherContract, make_context, run_search

from hwaml_apq.agents import AMCSearcher, HAQSearcher
from hwaml_apq.backends import BitFusionBackend
from hwaml_apq.evolution import APQEvolutionSearcher, EvolutionConfig, evolve
from hwaml_apq.pipeline import SeparatePipelineSearcher
from hwaml_apq.space import stage_blocks

SMALL_EVO = {"population": 6, "parents": 2, "mutations": 3, "crossovers": 3, "generations": 1, "max_draws": 200}
LATENCY = {"latency_ms": 0.0025}
AMC_LATENCY = {"latency_ms": 0.004}
HAQ_LATENCY = {"latency_ms": 0.0035}


def _latency(ctx, cfg):
    return ctx.cost_fn(Candidate(cfg)).metrics["latency_ms"]


class _WithBudget(SearcherContract):
    """The contract suite, run with the BitFusion backend and a latency budget
    (AMC and HAQ refuse to search without one)."""

    trials = 4
    constraints = LATENCY

    @pytest.fixture
    def contract_evaluator(self, synthetic_joint):
        return synthetic_joint()

    def _run(self, factory, evaluator, run_dir, seed=0, trials=None, resume=False):
        return run_search({"searcher": factory(), "evaluator": evaluator, "backend.bitfusion": BitFusionBackend()}, run_dir, trials=trials or self.trials, seed=seed, resume=resume, constraints=self.constraints)

    def test_proposals_are_valid_and_at_most_n(self, searcher_factory, contract_evaluator, tmp_path):
        ctx = make_context(tmp_path, evaluator=contract_evaluator, backends={"bitfusion": BitFusionBackend()}, constraints=self.constraints)
        cands = searcher_factory().propose(space=ctx.space, history=[], n=3, ctx=ctx)
        assert 1 <= len(cands) <= 3
        for c in cands:
            ctx.space.validate(c.config)


class TestAPQEvolution(_WithBudget):
    @pytest.fixture
    def searcher_factory(self):
        return lambda: APQEvolutionSearcher(evolution=SMALL_EVO, warmup_trials=3, predictor_epochs=3)


class TestAMC(_WithBudget):
    # between the largest network at 8 bits (0.0046 ms) and its narrowest widths (0.0035 ms)
    constraints = AMC_LATENCY

    @pytest.fixture
    def searcher_factory(self):
        return lambda: AMCSearcher(episodes=20, agent={"warmup_episodes": 2, "hidden1": 16, "hidden2": 16, "batch_size": 8})


def _haq():
    return HAQSearcher(episodes=20, agent={"warmup_episodes": 1, "hidden1": 16, "hidden2": 16, "batch_size": 8})


def test_haq_and_the_pipeline_run_through_the_loop_and_resume(synthetic_joint, tmp_path):
    """(The whole contract suite runs for apq_evolution and amc; haq and the pipeline
    share amc's episode code, so they get the loop and the exact-resume checks only.)"""
    ev = synthetic_joint()
    comps = lambda s: {"searcher": s, "evaluator": ev, "backend.bitfusion": BitFusionBackend()}
    res = run_search(comps(_haq()), tmp_path / "haq", trials=3, constraints=HAQ_LATENCY, seed=1)
    assert [t.candidate.meta["episode"] for t in res.trials] == [0, 1, 2] and res.best is not None
    half = run_search(comps(_haq()), tmp_path / "haq_half", trials=2, constraints=HAQ_LATENCY, seed=1)
    again = run_search(comps(_haq()), tmp_path / "haq_half", trials=3, constraints=HAQ_LATENCY, seed=1, resume=True)
    assert [dict(t.config) for t in again.trials] == [dict(t.config) for t in res.trials]
    pipe = SeparatePipelineSearcher(nas_trials=2, nas_warmup=1, amc_episodes=1, haq_episodes=1, evolution=SMALL_EVO)
    res = run_search(comps(pipe), tmp_path / "pipe", trials=6, constraints=HAQ_LATENCY)
    assert [t.candidate.meta["stage"] for t in res.trials] == ["nas", "nas", "amc", "haq"]  # then finished
    assert res.stopped_because == "searcher finished" if hasattr(res, "stopped_because") else True


def test_evolution_keeps_crossover_children_and_the_constraint_binds(synthetic_joint, tmp_path):
    ev = synthetic_joint()
    ctx = make_context(tmp_path, evaluator=ev, backends={"bitfusion": BitFusionBackend()})
    from hwaml_apq.evolution import feasibility

    budget = {"latency_ms": 0.0022}
    ok = feasibility(ctx, budget)
    res = evolve(ev.space, lambda cs: np.asarray([ev.accuracy(c) for c in cs]), np.random.default_rng(0), EvolutionConfig(**SMALL_EVO), ok)
    assert res.crossover_children_kept == SMALL_EVO["crossovers"] * SMALL_EVO["generations"]
    assert all(ok(c) for _, c in res.population)
    assert res.rejected > 0  # the budget rejected children: it binds
    free = evolve(ev.space, lambda cs: np.asarray([ev.accuracy(c) for c in cs]), np.random.default_rng(0), EvolutionConfig(**SMALL_EVO))
    assert _latency(ctx, free.best) > budget["latency_ms"] >= _latency(ctx, res.best)


def test_amc_bounds_actions_so_the_budget_holds(synthetic_joint, tmp_path):
    ev = synthetic_joint()
    ctx = make_context(tmp_path, evaluator=ev, backends={"bitfusion": BitFusionBackend()}, constraints=AMC_LATENCY)
    amc = AMCSearcher(episodes=2, agent={"warmup_episodes": 2})
    cands = amc.propose(space=ctx.space, history=[], n=2, ctx=ctx)
    base = amc.base(ctx.space)
    assert _latency(ctx, base) > AMC_LATENCY["latency_ms"]
    for c in cands:
        assert _latency(ctx, c.config) <= AMC_LATENCY["latency_ms"]
        # AMC changes only widths
        for st in ctx.space.meta["apq"]["stages"]:
            for b0, b1 in zip(stage_blocks(base, st["name"]), stage_blocks(c.config, st["name"])):
                assert {k: v for k, v in b0.items() if k != "width"} == {k: v for k, v in b1.items() if k != "width"}


def test_haq_reduces_bits_until_the_budget_holds(synthetic_joint, tmp_path):
    ev = synthetic_joint()
    ctx = make_context(tmp_path, evaluator=ev, backends={"bitfusion": BitFusionBackend()}, constraints=HAQ_LATENCY)
    haq = HAQSearcher(episodes=2, agent={"warmup_episodes": 2})
    for c in haq.propose(space=ctx.space, history=[], n=2, ctx=ctx):
        assert _latency(ctx, c.config) <= HAQ_LATENCY["latency_ms"]


def test_agents_refuse_without_a_budget_and_haq_without_bits(synthetic_joint, tmp_path, tiny_checkpoint):
    ev = synthetic_joint()
    ctx = make_context(tmp_path, evaluator=ev, backends={"bitfusion": BitFusionBackend()})
    with pytest.raises(PluginError, match="constraints"):
        AMCSearcher(episodes=2).propose(space=ctx.space, history=[], n=1, ctx=ctx)
    from hwaml_ofa_nas.evaluator import OFAEvaluator

    ofa = OFAEvaluator(arch="test_tiny", checkpoint=str(tiny_checkpoint), train_if_missing=False, progress=False)
    octx = make_context(tmp_path / "ofa", evaluator=ofa, backends={"bitfusion": BitFusionBackend()}, constraints={"latency_ms": 0.004})
    with pytest.raises(PluginError, match="bit-widths"):
        HAQSearcher(episodes=2).propose(space=octx.space, history=[], n=1, ctx=octx)
    with pytest.raises(PluginError, match="joint space"):
        APQEvolutionSearcher().propose(space=octx.space, history=[], n=1, ctx=octx)


def test_amc_runs_on_ofa_nas_evaluator(tmp_path, tiny_checkpoint):
    """AMC on another plugin's evaluator: OFA's expand ratios are its widths."""
    from hwaml_ofa_nas.evaluator import OFAEvaluator

    ofa = OFAEvaluator(arch="test_tiny", checkpoint=str(tiny_checkpoint), train_if_missing=False, calibration_size=32, progress=False)
    res = run_search({"searcher": AMCSearcher(episodes=2, agent={"warmup_episodes": 2}), "evaluator": ofa, "backend.bitfusion": BitFusionBackend()}, tmp_path / "run", trials=2, constraints={"latency_ms": 0.01})
    assert len(res.trials) == 2 and all(t.status in ("complete", "infeasible") for t in res.trials)
    assert all(t.candidate.meta["agent"] == "amc" for t in res.trials)
