"""The evaluator: the search space, how a candidate is scored, and how it is deployed.

This example fits a ridge-regularised polynomial to noisy samples of a smooth
function and scores it by R^2 on held-out points. The search chooses the
polynomial degree and the regularisation strength: too low a degree underfits,
too high a degree with too little regularisation overfits. Replace the body of
``evaluate`` with your own training or simulation.

``evaluate`` saves the fitted coefficients and lists the file in
``EvalResult.artifacts``; ``deploy`` finds them again through
``trial.artifacts`` (never by guessing a file name) and writes a C header that
evaluates the polynomial with Horner's rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from hwaml import Candidate, DeployResult, EvalResult, Float, Integer, RunContext, SearchSpace, Trial, hookimpl


class MyEvaluator:
    """Polynomial degree and ridge strength, scored by validation R^2 (maximised).

    Every constructor argument is a key of ``conf/evaluator/myplugin_eval.yaml``;
    hwaml checks the YAML keys against this signature before a run starts.
    Components keep no ``@property``: hwaml registers the object without running
    its code, so lazy state goes behind explicit methods (like ``_data``).
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
    def metric_names(self, ctx: RunContext) -> List[str]:
        # every metric evaluate can report: objectives and constraints are checked against it at start
        return ["r2"]

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
        # the trial's "checkpoint": plain JSON (never a pickle), listed in the artifacts
        path = Path(ctx.run_dir) / "myplugin" / f"trial_{candidate.number}_weights.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"degree": degree, "weights": [float(w) for w in weights]}))
        return EvalResult({"r2": r2}, artifacts={"weights": str(path)}, info={"weights_norm": float(np.linalg.norm(weights))})

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> Optional[DeployResult]:
        """Write ``deploy/myplugin_trial<N>.h``: the trial's coefficients and a Horner evaluator in C."""
        source = "myplugin_eval"  # DeployResult.source: `hwaml deploy RUN deploy.target=myplugin_eval` picks this
        weights_file = trial.artifacts.get("weights")
        if weights_file is None:
            return DeployResult({}, ok=False, message=f"trial {trial.number} has no 'weights' artifact (was it evaluated by {source}?)", source=source)
        saved = json.loads(Path(weights_file).read_text())
        coeffs = ", ".join(f"{w:.9g}f" for w in saved["weights"])
        stem = f"myplugin_trial{trial.number}"
        header = (
            f"/* trial {trial.number}: polynomial of degree {saved['degree']}, validation R^2 {trial.metrics.get('r2', float('nan')):.4f} */\n"
            f"#ifndef {stem.upper()}_H\n#define {stem.upper()}_H\n\n"
            f"static const float {stem}_coeffs[{len(saved['weights'])}] = {{{coeffs}}}; /* highest power first */\n\n"
            f"static inline float {stem}_eval(float x) {{\n"
            f"    float y = 0.0f;\n"
            f"    for (int i = 0; i < {len(saved['weights'])}; ++i) y = y * x + {stem}_coeffs[i];\n"
            f"    return y;\n}}\n\n#endif\n"
        )
        out = Path(ctx.run_dir) / "deploy" / f"{stem}.h"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header)
        return DeployResult({"header": str(out)}, ok=True, metrics=dict(trial.metrics), message=f"wrote {out.name}", source=source)
