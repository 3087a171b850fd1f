"""3D-NAS's evolutionary search: operators stay in the space, the constraint holds, it beats random search,
and the hwaml searcher runs its generations through the loop (resumably)."""

from __future__ import annotations

import numpy as np
import pytest

from hwaml import CostReport, EvalResult, hookimpl
from hwaml.builtin.analytic import AnalyticEvaluator
from hwaml.plugins import PluginError
from hwaml.testing import SearcherContract, make_context, run_search

from hwaml_spvnas.design_space import DesignSpace
from hwaml_spvnas.evolution import SearchInfeasible, SPVNASEvolutionSearcher, ThreeDNASEvolution, genes_of, key_of

SPACE = DesignSpace(0.5, 4).search_space()
GENES = genes_of(SPACE)


class Knapsack:
    """A cheap analytic stand-in for (accuracy, MACs): every choice of every gene has a random value and cost;
    the score and the cost are their sums (the best feasible configuration is not found by inspection)."""

    def __init__(self, seed: int = 123):
        rng = np.random.default_rng(seed)
        self.value = {(s, p): dict(zip(c, rng.random(len(c)))) for s, p, c in GENES}
        self.weight = {(s, p): dict(zip(c, rng.random(len(c)))) for s, p, c in GENES}
        evo, r = ThreeDNASEvolution(GENES), np.random.default_rng(0)
        self.budget = float(np.median([self.cost(evo.random(r)) for _ in range(400)]))  # about half the space is feasible

    def score(self, cfg) -> float:
        return float(sum(self.value[(s, p)][cfg[s][p]] for s, p, _ in GENES))

    def cost(self, cfg) -> float:
        return float(sum(self.weight[(s, p)][cfg[s][p]] for s, p, _ in GENES))

    def feasible(self, cfg) -> bool:
        return self.cost(cfg) <= self.budget


def test_mutation_and_crossover_stay_in_the_space():
    evo = ThreeDNASEvolution(GENES, population_size=8, mutate_prob=0.5)
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(200):
        a, b = evo.random(rng), evo.random(rng)
        m, x = evo.mutate(a, rng), evo.crossover(a, b, rng)
        for cfg in (a, m, x):
            SPACE.validate(cfg)  # widths on the granularity grid within the bounds, depth / middle ratios among the choices
        assert all(x[s][p] in (a[s][p], b[s][p]) for s, p, _ in GENES)
        changed += sum(m[s][p] != a[s][p] for s, p, _ in GENES)
    # about half of the 32 parameters re-drawn per mutation (a re-draw may land on the same value)
    assert 0.3 * 32 * 200 < changed < 0.5 * 32 * 200
    still = ThreeDNASEvolution(GENES, population_size=8, mutate_prob=0.0)
    a = still.random(rng)
    assert still.mutate(a, rng) == a


def test_every_candidate_respects_the_constraint_and_a_too_tight_one_is_named():
    k = Knapsack()
    evo = ThreeDNASEvolution(GENES, population_size=12, parent_ratio=0.25, mutation_ratio=0.5)
    rng = np.random.default_rng(1)
    pop = evo.first_generation(rng, k.feasible)
    assert len(pop) == 12 and all(k.feasible(c) for c in pop)
    for _ in range(4):
        scored = [(k.score(c), c) for c in pop]
        parents = evo.parents(scored)
        assert len(parents) == 3 and {key_of(p) for p in parents} == {key_of(c) for _, c in sorted(scored, key=lambda t: -t[0])[:3]}
        pop = evo.next_generation(scored, rng, k.feasible)
        assert len(pop) == 12 and all(k.feasible(c) for c in pop)
    assert evo.rejected > 0  # the budget did bind
    with pytest.raises(SearchInfeasible, match="too tight"):
        ThreeDNASEvolution(GENES, population_size=4, max_resample=50).first_generation(rng, lambda c: k.cost(c) < 0.1 * k.budget)


def test_evolution_beats_random_search_with_the_same_number_of_evaluations():
    k = Knapsack()
    evo_best, rand_best = [], []
    for seed in range(4):
        evo = ThreeDNASEvolution(GENES, population_size=20)
        res = evo.run(k.score, np.random.default_rng(seed), generations=10, feasible=k.feasible)
        assert res.best_per_generation == sorted(res.best_per_generation)  # the best seen never gets worse
        assert k.feasible(res.best_config) and res.best_score == pytest.approx(k.score(res.best_config))
        rng = np.random.default_rng(100 + seed)
        rand = [evo._draw(lambda: evo.random(rng), k.feasible, "random") for _ in range(res.n_evaluated)]
        evo_best.append(res.best_score)
        rand_best.append(max(map(k.score, rand)))
    assert all(e > r for e, r in zip(evo_best, rand_best)), (evo_best, rand_best)
    assert np.mean(evo_best) > np.mean(rand_best) + 1.0


def test_bad_hyper_parameters_are_named():
    with pytest.raises(ValueError, match="parent_ratio"):
        SPVNASEvolutionSearcher(parent_ratio=1.5)
    with pytest.raises(ValueError, match="keeps no parent"):
        SPVNASEvolutionSearcher(population_size=2, parent_ratio=0.1)
    with pytest.raises(ValueError, match="generations"):
        SPVNASEvolutionSearcher(generations=0)


# ---------------------------------------------------------------- through the hwaml loop


class KnapsackEvaluator:
    """The analytic objective on the SPVNAS space (seconds, no supernet)."""

    default_objectives = {"score": "max"}

    def __init__(self):
        self.k = Knapsack()

    @hookimpl
    def metric_names(self, ctx):
        return ["score"]

    @hookimpl
    def search_space(self, ctx):
        return SPACE

    @hookimpl
    def evaluate(self, candidate, ctx):
        return EvalResult(metrics={"score": self.k.score(candidate.config)})


class KnapsackCost:
    def __init__(self):
        self.k, self.calls = Knapsack(), 0

    @hookimpl
    def metric_names(self, ctx):
        return ["cost"]

    @hookimpl
    def cost(self, candidate, ctx):
        self.calls += 1
        return CostReport(metrics={"cost": self.k.cost(candidate.config)}, source="knapsack_cost")


class TestSearcherContract(SearcherContract):
    trials = 12

    @pytest.fixture
    def searcher_factory(self):
        return lambda: SPVNASEvolutionSearcher(population_size=4, parent_ratio=0.5, generations=8)

    @pytest.fixture
    def contract_evaluator(self):
        return KnapsackEvaluator()


def test_the_searcher_runs_generations_under_the_constraint(tmp_path):
    k = Knapsack()
    backend = KnapsackCost()
    res = run_search({"searcher": SPVNASEvolutionSearcher(population_size=6, generations=3), "evaluator": KnapsackEvaluator(), "backend": backend},
                     tmp_path, trials=100, constraints={"cost": k.budget}, seed=2)
    trials = res.trials
    gens = [t.candidate.meta["generation"] for t in trials]
    assert gens == sorted(gens) and set(gens) == {0, 1, 2}  # generation by generation; the searcher then stops
    assert len(trials) <= 18 and len({key_of(t.config) for t in trials}) == len(trials)  # a repeated sub-network is not re-run
    assert all(t.cost["cost"] <= k.budget for t in trials)
    assert backend.calls > len(trials)  # infeasible children were costed and dropped before any trial
    # generation 1's parents are generation 0's top 2 (parent_ratio 0.25 of 6 rounds to 2): every child
    # takes each parameter from one of them (crossover) or from one parent, possibly re-drawn (mutation)
    first = sorted((t for t in trials if t.candidate.meta["generation"] == 0), key=lambda t: -t.metrics["score"])[:2]
    g1 = [t for t in trials if t.candidate.meta["generation"] == 1]
    assert g1
    for t in g1:
        inherited = sum(any(t.config[s][p] == f.config[s][p] for f in first) for s, p, _ in GENES)
        assert inherited >= 0.6 * len(GENES)


def test_it_refuses_a_space_that_is_not_spvnas(tmp_path):
    ev = AnalyticEvaluator("nas_toy")
    ctx = make_context(tmp_path, objectives=ev.default_objectives)
    with pytest.raises(PluginError, match="evaluator=spvnas_lidar"):
        SPVNASEvolutionSearcher().propose(space=ev.search_space(ctx=ctx), history=[], n=2, ctx=ctx)


def test_it_needs_one_objective_or_a_named_metric(tmp_path):
    ctx = make_context(tmp_path, objectives={"score": "max", "cost": "min"})
    with pytest.raises(PluginError, match="searcher.metric"):
        SPVNASEvolutionSearcher(population_size=4).propose(space=SPACE, history=[], n=2, ctx=ctx)
    cands = SPVNASEvolutionSearcher(population_size=4, metric="score").propose(space=SPACE, history=[], n=2, ctx=ctx)
    assert len(cands) == 2
