"""The built-in components pass the same contract suites plugins use."""

import pytest

from hwaml import Candidate
from hwaml.builtin import AnalyticCost, AnalyticEvaluator, OptunaSearcher, RandomSearch, RegularizedEvolution
from hwaml.builtin.analytic import nas_toy_space
from hwaml.testing import BackendContract, EvaluatorContract, SearcherContract

import numpy as np


@pytest.mark.parametrize("function", ["nas_toy", "branin", "zdt1"])
class TestAnalyticEvaluator(EvaluatorContract):
    @pytest.fixture
    def evaluator(self, function):
        return AnalyticEvaluator(function)


class TestAnalyticCost(BackendContract):
    @pytest.fixture
    def backend(self):
        return AnalyticCost()

    @pytest.fixture
    def candidates(self):
        rng = np.random.default_rng(0)
        return [Candidate(nas_toy_space().sample(rng), number=i) for i in range(3)]


class TestRandomSearch(SearcherContract):
    @pytest.fixture
    def searcher_factory(self):
        return RandomSearch


class TestRegularizedEvolution(SearcherContract):
    trials = 16

    @pytest.fixture
    def searcher_factory(self):
        return lambda: RegularizedEvolution(population_size=6, tournament_size=3)


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsga2", "qmc"])
class TestOptunaSearcher(SearcherContract):
    @pytest.fixture
    def searcher_factory(self, sampler):
        return lambda: OptunaSearcher(sampler)


class TestOptunaGP(SearcherContract):
    """GP needs a continuous space: Branin."""

    trials = 8

    @pytest.fixture
    def searcher_factory(self):
        return lambda: OptunaSearcher("gp")

    @pytest.fixture
    def contract_evaluator(self):
        return AnalyticEvaluator("branin")


class TestOptunaCmaEs(TestOptunaGP):
    @pytest.fixture
    def searcher_factory(self):
        return lambda: OptunaSearcher("cmaes")

    def test_resume_continues_the_history(self, searcher_factory, contract_evaluator, tmp_path):
        # CMA-ES keeps its optimiser in Optuna trial system attributes, which a
        # resumed study does not have: it restarts CMA-ES from the stored trials.
        # The run still continues without re-evaluating finished trials.
        half = self._run(searcher_factory, contract_evaluator, tmp_path / "half", seed=5, trials=4)
        resumed = self._run(searcher_factory, contract_evaluator, tmp_path / "half", seed=5, resume=True)
        assert [t.number for t in resumed.trials] == list(range(self.trials))
        assert [dict(t.config) for t in resumed.trials[:4]] == [dict(t.config) for t in half.trials]
