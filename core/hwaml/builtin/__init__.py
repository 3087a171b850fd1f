"""Components every run can use: generic searchers and a toy analytic evaluator."""

from .analytic import AnalyticCost, AnalyticEvaluator
from .searchers import OptunaSearcher, RandomSearch, RegularizedEvolution

__all__ = ["AnalyticCost", "AnalyticEvaluator", "OptunaSearcher", "RandomSearch", "RegularizedEvolution"]
