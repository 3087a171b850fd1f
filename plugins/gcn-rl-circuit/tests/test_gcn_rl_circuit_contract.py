"""The core's contract suites, run against this plugin's evaluator and searcher."""

import pytest

from hwaml.testing import EvaluatorContract, SearcherContract
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator
from hwaml_gcn_rl_circuit.searcher import GCNRLSearcher


class TestCircuitEvaluatorContract(EvaluatorContract):
    @pytest.fixture(params=["two_stage_tia", "ldo"])
    def evaluator(self, request):
        return CircuitEvaluator(request.param, "sky130")


class TestGCNRLSearcherContract(SearcherContract):
    trials = 10

    @pytest.fixture
    def searcher_factory(self):
        return lambda: GCNRLSearcher(agent={"hidden": 16, "gcn_layers": 2, "batch_size": 8, "updates_per_trial": 1}, exploration={"warmup": 4})

    @pytest.fixture
    def contract_evaluator(self):
        return CircuitEvaluator("two_stage_tia", "gf180mcu")
