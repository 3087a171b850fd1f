"""The evaluator: the search space and how a candidate is scored.

This example fits a ridge-regularised polynomial to noisy samples of a smooth
function and scores it by R^2 on held-out points. The search chooses the
polynomial degree and the regularisation strength: too low a degree underfits,
too high a degree with too little regularisation overfits. Replace the body of
``evaluate`` with your own training or simulation.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from hwaml import Candidate, EvalResult, Float, Integer, RunContext, SearchSpace, hookimpl


class MyEvaluator:
    """Polynomial degree and ridge strength, scored by validation R^2 (maximised).

    Every constructor argument is a key of ``conf/evaluator/myplugin_eval.yaml``;
    hwaml checks the YAML keys against this signature before a run starts.
    """

    #: the objectives used when the run config sets none
    default_objectives: Dict[str, str] = {"r2": "max"}

    def __init__(self, n_samples: int = 200, noise: float = 0.1, max_degree: int = 15, data_seed: int = 0):
        if n_samples < 10:
            raise ValueError("n_samples must be >= 10")
        self.n_samples = n_samples
        self.noise = noise
        self.max_degree = max_degree
        self.data_seed = data_seed

    def _data(self):
        # Fixed data (its own seed): every trial sees the same training set.
        rng = np.random.default_rng(self.data_seed)
        x = rng.uniform(-1.0, 1.0, self.n_samples)
        y = np.sin(3.0 * x) + 0.5 * x**2 + rng.normal(0.0, self.noise, self.n_samples)
        split = int(0.7 * self.n_samples)
        return (x[:split], y[:split]), (x[split:], y[split:])

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        return SearchSpace([Integer("degree", 1, self.max_degree), Float("alpha", 1e-8, 10.0, log=True)])

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        degree, alpha = int(candidate.config["degree"]), float(candidate.config["alpha"])
        (x_train, y_train), (x_val, y_val) = self._data()
        features = np.vander(x_train, degree + 1)
        # ridge regression in closed form: (X^T X + alpha I) w = X^T y
        weights = np.linalg.solve(features.T @ features + alpha * np.eye(degree + 1), features.T @ y_train)
        pred = np.vander(x_val, degree + 1) @ weights
        r2 = 1.0 - float(np.sum((y_val - pred) ** 2) / np.sum((y_val - y_val.mean()) ** 2))
        return EvalResult({"r2": r2}, info={"weights_norm": float(np.linalg.norm(weights))})
