"""A small analytic evaluator and cost backend for tests, docs and benchmarks.

``AnalyticEvaluator(function="nas_toy")`` mimics a NAS problem in closed form:
a resolution, a width multiplier and a per-block choice list of variable depth
(kernel size and expand ratio per block), plus a learning rate. Its "accuracy"
grows with capacity and saturates, and peaks at a learning rate near 3e-3.
``AnalyticCost`` reports a latency and a parameter count that grow with the same
capacity, so accuracy and latency trade off and a Pareto front exists.

Other functions: ``branin`` (two floats, minimise ``loss``) and ``zdt1``
(multi-objective, ``f1`` and ``f2`` both minimised).

The knobs ``fail_prob``, ``nan_prob`` and ``sleep_s`` make it misbehave on purpose
(deterministically per trial) so tests can exercise failure handling and resume.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, Mapping, Optional

import numpy as np

from .. import hookimpl
from ..space import Categorical, Float, Group, Integer, Repeated, SearchSpace
from ..types import Candidate, CostReport, DeployResult, EvalResult, RunContext, Trial

FUNCTIONS = ("nas_toy", "branin", "zdt1")


def nas_toy_space(max_blocks: int = 4) -> SearchSpace:
    return SearchSpace(
        [
            Categorical("resolution", [96, 128, 160, 192]),
            Float("width", 0.25, 1.5),
            Repeated("blocks", [Categorical("kernel", [3, 5, 7]), Categorical("expand", [3, 4, 6])], lengths=list(range(2, max_blocks + 1))),
            Float("lr", 1e-4, 1e-1, log=True),
            Categorical("optimizer", ["sgd", "adam"]),
            Group("sgd", [Float("momentum", 0.0, 0.99)], when={"optimizer": ["sgd"]}),
        ]
    )


def _capacity(cfg: Mapping[str, Any]) -> float:
    blocks = cfg["blocks"]
    per_block = sum((b["kernel"] / 7.0) * (b["expand"] / 6.0) for b in blocks)
    return cfg["width"] * (cfg["resolution"] / 192.0) ** 2 * per_block


def nas_toy_accuracy(cfg: Mapping[str, Any]) -> float:
    cap = _capacity(cfg)
    base = 0.55 + 0.4 * (1.0 - math.exp(-1.6 * cap))
    lr_pen = 0.06 * (math.log10(cfg["lr"]) - math.log10(3e-3)) ** 2
    opt = 0.0
    if cfg["optimizer"] == "sgd":
        opt = 0.01 - 0.03 * (cfg["sgd"]["momentum"] - 0.9) ** 2
    return float(max(0.0, min(1.0, base - lr_pen + opt)))


def nas_toy_latency_ms(cfg: Mapping[str, Any]) -> float:
    blocks = cfg["blocks"]
    macs = sum(b["kernel"] ** 2 * b["expand"] for b in blocks) * cfg["width"] ** 2 * (cfg["resolution"] / 32.0) ** 2
    return float(0.5 + 0.004 * macs)


def branin(x: float, y: float) -> float:
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (y - b * x**2 + c * x - r) ** 2 + s * (1 - t) * math.cos(x) + s


class AnalyticEvaluator:
    """Closed-form objectives with the full evaluator contract (space, evaluate, deploy)."""

    def __init__(
        self,
        function: str = "nas_toy",
        dims: int = 6,
        max_blocks: int = 4,
        noise: float = 0.0,
        fail_prob: float = 0.0,
        nan_prob: float = 0.0,
        sleep_s: float = 0.0,
        trace_file: Optional[str] = None,
        fidelity_steps: int = 0,
        step_sleep_s: float = 0.0,
    ):
        if function not in FUNCTIONS:
            raise ValueError(f"unknown analytic function {function!r}; choose one of {FUNCTIONS}")
        self.function = function
        self.dims = dims
        self.max_blocks = max_blocks
        self.noise = noise
        self.fail_prob = fail_prob
        self.nan_prob = nan_prob
        self.sleep_s = sleep_s
        self.trace_file = trace_file  # appends "<trial number>\n" per finished evaluation
        if int(fidelity_steps) < 0:
            raise ValueError(f"fidelity_steps must be >= 0, got {fidelity_steps}")
        # a fidelity axis: the objective approaches its final value over
        # ``fidelity_steps`` "epochs", reported through ctx.report (pruning tests, docs)
        self.fidelity_steps = int(fidelity_steps)
        self.step_sleep_s = float(step_sleep_s)
        self.default_objectives = {
            "nas_toy": {"accuracy": "max"},
            "branin": {"loss": "min"},
            "zdt1": {"f1": "min", "f2": "min"},
        }[function]

    @hookimpl
    def metric_names(self, ctx: RunContext) -> list:
        return list(self.default_objectives)

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        if self.function == "nas_toy":
            return nas_toy_space(self.max_blocks)
        if self.function == "branin":
            return SearchSpace([Float("x", -5.0, 10.0), Float("y", 0.0, 15.0)])
        return SearchSpace([Float(f"x{i}", 0.0, 1.0) for i in range(self.dims)])

    def metrics(self, cfg: Mapping[str, Any]) -> Dict[str, float]:
        if self.function == "nas_toy":
            return {"accuracy": nas_toy_accuracy(cfg)}
        if self.function == "branin":
            return {"loss": branin(cfg["x"], cfg["y"])}
        xs = np.array([cfg[f"x{i}"] for i in range(self.dims)])
        f1 = float(xs[0])
        g = 1.0 + 9.0 * float(xs[1:].sum()) / max(1, self.dims - 1)
        return {"f1": f1, "f2": float(g * (1.0 - math.sqrt(f1 / g)))}

    def learning_curve(self, cfg: Mapping[str, Any], final: Mapping[str, float]) -> list:
        """The first objective after each of ``fidelity_steps`` steps, ending at its
        final value: an exponential approach whose speed depends on the candidate
        (for ``nas_toy``: the learning rate), so early values rank candidates
        imperfectly, as real learning curves do."""
        name = next(iter(self.default_objectives))
        target = float(final[name])
        if self.function == "nas_toy":
            tau = 0.25 * self.fidelity_steps * (1.0 + abs(math.log10(cfg["lr"]) - math.log10(3e-2)) / 2.0)
            start = 0.1  # chance level of a ten-class problem
        else:
            tau = 0.3 * self.fidelity_steps
            start = target + 10.0 if self.default_objectives[name] == "min" else target - 10.0
        n = self.fidelity_steps
        decay = [math.exp(-(t + 1) / tau) for t in range(n)]
        last = decay[-1]
        # rescaled so that the last step lands exactly on the final value
        return [target + (start - target) * (d - last) / (1.0 - last) if last < 1.0 else target for d in decay]

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        rng = ctx.rng if ctx.rng is not None else np.random.default_rng(0)
        u = rng.random(3)
        if u[0] < self.fail_prob:
            raise RuntimeError(f"analytic evaluator: injected failure for trial {candidate.number}")
        out = self.metrics(candidate.config)
        if self.fidelity_steps:
            from ..pruning import TrialPruned

            curve = self.learning_curve(candidate.config, out)
            for step, value in enumerate(curve):
                if self.step_sleep_s:
                    time.sleep(self.step_sleep_s)
                ctx.report(step, value)
                if ctx.should_prune():
                    raise TrialPruned(f"step {step}: {next(iter(self.default_objectives))}={value:.4g}")
        if self.noise:
            out = {k: v + float(rng.normal(0.0, self.noise)) for k, v in out.items()}
        if u[1] < self.nan_prob:
            out = {k: math.nan for k in out}
        if self.trace_file:
            with open(self.trace_file, "a") as f:
                f.write(f"{candidate.number}\n")
        return EvalResult(out)

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> DeployResult:
        import json

        candidate = trial.candidate
        out = ctx.run_dir / "deploy"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"trial_{candidate.number}.json"
        metrics = self.metrics(candidate.config)
        path.write_text(json.dumps({"config": candidate.config, "metrics": metrics}, indent=2))
        return DeployResult({"config": str(path)}, ok=True, metrics=metrics, message=f"wrote {path.name}", source="analytic")


class AnalyticCost:
    """Cost backend for the ``nas_toy`` function: latency_ms and params_k.

    It abstains (returns ``None``) on candidates that are not ``nas_toy``
    configurations, rather than inventing a cost for them.
    """

    NAS_TOY_KEYS = frozenset({"resolution", "width", "blocks"})

    def __init__(self, latency_scale: float = 1.0, name: str = "analytic_cost"):
        self.latency_scale = latency_scale
        self.name = name

    @hookimpl
    def metric_names(self, ctx: RunContext) -> list:
        return ["latency_ms", "params_k"]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> Optional[CostReport]:
        cfg = candidate.config
        if not self.NAS_TOY_KEYS <= set(cfg):
            return None
        params = sum(b["expand"] * b["kernel"] ** 2 for b in cfg["blocks"]) * cfg["width"] * 10.0
        return CostReport(
            {"latency_ms": self.latency_scale * nas_toy_latency_ms(cfg), "params_k": float(params)},
            source=self.name,
        )
