"""APQ's evolutionary search with the quantization-aware predictor, as a hwaml searcher.

As published: a population of 100 configurations, the best 25 kept as
parents, 50 children by mutation (every architecture and quantization gene
re-drawn with probability 0.1, the depth of a stage included) and 50 by
uniform crossover of two parents, per generation. Every child is checked
against the run's constraints (``ctx.cost_fn``: the hardware model's latency
/ energy) *before* it is predicted, and re-drawn when infeasible. Unlike the
reference implementation, crossover children are kept in the next
population (the reference computes them and then drops them), and the
constraint is applied to every child, so a tight budget does bind.

The accuracy comes from :class:`hwaml_apq.predictor.QuantAwarePredictor`,
loaded from ``predictor_path`` (``hwaml-apq predictor transfer``) or fitted on
the run's own finished trials after ``warmup_trials`` random ones
(transferred from ``fp_predictor_path`` when given). Each ``propose`` runs the
evolution and proposes its best configurations not yet evaluated, which the
evaluator then measures (quantization-aware fine-tuning).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hwaml import Candidate, RunContext, SearchSpace, Trial, hookimpl
from hwaml.constraints import is_feasible, normalise_constraints
from hwaml.plugins import PluginError
from hwaml.progress import progress as _progress

from .space import JointEncoder

log = logging.getLogger("hwaml.apq")

__all__ = ["EvolutionConfig", "evolve", "APQEvolutionSearcher", "encoder_for", "feasibility", "table_feasibility", "config_key", "NoFeasibleConfig", "COST_MODELS"]

#: how an evolution checks its children against the constraints: ``table``, APQ's
#: look-up table of the BitFusion model (verified against the run's backend), or
#: ``backend``, the run's ``ctx.cost_fn`` on every child's built network
COST_MODELS = ("table", "backend")


class NoFeasibleConfig(RuntimeError):
    """The constraints reject every configuration drawn."""


def config_key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


@dataclass(frozen=True)
class EvolutionConfig:
    """APQ's evolution (``evolution:``); defaults are the published values.

    :param population: configurations per generation (100).
    :param parents: best kept as parents (25).
    :param mutations: children by mutation per generation (50).
    :param crossovers: children by crossover per generation (50).
    :param mutate_prob: per-gene mutation probability (0.1).
    :param generations: generations per search (the reference: 500).
    :param max_draws: draws per child before the constraints are declared unsatisfiable.
    """

    population: int = 100
    parents: int = 25
    mutations: int = 50
    crossovers: int = 50
    mutate_prob: float = 0.1
    generations: int = 500
    max_draws: int = 500

    def __post_init__(self) -> None:
        if self.population < 2 or not 1 <= self.parents <= self.population or self.mutations < 0 or self.crossovers < 0 or self.generations < 0:
            raise ValueError(f"evolution: bad sizes {self}")
        if not 0 <= self.mutate_prob <= 1:
            raise ValueError(f"evolution.mutate_prob must be in [0, 1], got {self.mutate_prob}")


def encoder_for(space: SearchSpace, who: str) -> JointEncoder:
    meta = space.meta.get("apq")
    if meta is None:
        raise PluginError(
            f"searcher {who} needs APQ's joint space (space.meta['apq']: stages with width and bit choices), but the space "
            f"{space.name!r} has none; compose it with evaluator=apq_fashion or apq_digits, or use a generic searcher"
        )
    return JointEncoder(meta)


def feasibility(ctx: RunContext, constraints: Optional[Mapping[str, Any]] = None) -> Optional[Callable[[Mapping[str, Any]], bool]]:
    """``config -> bool`` through the run's cost backends and constraints, memoised;
    ``None`` when the run has no backends."""
    if ctx.cost_fn is None:
        return None
    bounds = normalise_constraints(ctx.constraints if constraints is None else constraints)
    cost_fn = ctx.cost_fn
    memo: Dict[str, bool] = {}

    def ok(cfg: Mapping[str, Any]) -> bool:
        k = config_key(cfg)
        if k not in memo:
            memo[k] = bool(is_feasible(cost_fn(Candidate(dict(cfg))), bounds))
        return memo[k]

    return ok


def table_feasibility(space: SearchSpace, ctx: RunContext, bounds: Mapping[str, Any], hardware: Optional[Mapping[str, Any]], who: str, n_check: int = 3):
    """``config -> bool`` from APQ's look-up table (:class:`hwaml_apq.costmodel.JointCostTable`)
    of the BitFusion model with ``hardware`` parameters, after checking on ``n_check``
    random configurations that it gives the run's backend costs (``ctx.cost_fn``);
    raises when it does not, or when a constraint is on a metric the table lacks."""
    from hwaml.config import as_config
    from hwaml_ofa_nas.supernet import supernet_config

    from .costmodel import TABLE_METRICS, JointCostTable
    from .hardware import BitFusionConfig

    norm = normalise_constraints(bounds)
    other = sorted(set(norm) - set(TABLE_METRICS))
    if other:
        raise PluginError(f"{who}: cost_model=table models {list(TABLE_METRICS)} of the BitFusion backend, not {other}; set cost_model=backend")
    if ctx.cost_fn is None:
        raise PluginError(f"{who}: the run has constraints {sorted(norm)} but no cost backend to check the look-up table against; add backend=[bitfusion]")
    table = JointCostTable(supernet_config(space.meta["arch"]), int(space.meta["apq"]["resolution"]), as_config(BitFusionConfig, hardware, "hardware"))
    rng = np.random.default_rng(12345)
    table.check([space.sample(rng) for _ in range(n_check)], ctx.cost_fn, sorted(norm))
    memo: Dict[str, bool] = {}

    def ok(cfg: Mapping[str, Any]) -> bool:
        k = config_key(cfg)
        if k not in memo:
            memo[k] = bool(is_feasible(table.cost(cfg), norm, only_present=False))
        return memo[k]

    ok.table = table  # type: ignore[attr-defined]
    return ok


def make_feasibility(space: SearchSpace, ctx: RunContext, bounds: Mapping[str, Any], cost_model: str, hardware: Optional[Mapping[str, Any]], who: str):
    """The constraint check of an evolution's children (``None`` without constraints)."""
    if not bounds:
        return None
    if cost_model == "table":
        return table_feasibility(space, ctx, bounds, hardware, who)
    return feasibility(ctx, bounds)


@dataclass
class EvolutionResult:
    best: Dict[str, Any]
    best_score: float
    population: List[Tuple[float, Dict[str, Any]]] = field(default_factory=list)
    best_per_generation: List[float] = field(default_factory=list)
    rejected: int = 0
    crossover_children_kept: int = 0


def evolve(
    space: SearchSpace,
    predict: Callable[[List[Dict[str, Any]]], np.ndarray],
    rng: np.random.Generator,
    cfg: EvolutionConfig,
    feasible: Optional[Callable[[Mapping[str, Any]], bool]] = None,
    project: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    progress: bool = False,
    seeds: Sequence[Mapping[str, Any]] = (),
) -> EvolutionResult:
    """Maximise ``predict(configs)`` over feasible configurations of ``space``.

    ``project`` maps every drawn configuration onto a sub-space (the separate
    pipeline's NAS stage fixes widths and bits with it); ``seeds`` join the
    first population."""
    project = project or (lambda c: c)
    rejected = 0

    def draw(make: Callable[[], Dict[str, Any]], what: str) -> Dict[str, Any]:
        nonlocal rejected
        for _ in range(cfg.max_draws):
            c = project(make())
            if feasible is None or feasible(c):
                return c
            rejected += 1
        raise NoFeasibleConfig(f"no feasible {what} in {cfg.max_draws} draws: the constraints {what!r} are too tight for this space (loosen them)")

    pop = [project(dict(s)) for s in seeds if feasible is None or feasible(project(dict(s)))][: cfg.population]
    while len(pop) < cfg.population:
        pop.append(draw(lambda: space.sample(rng), "random configuration"))
    scores = np.asarray(predict(pop), dtype=float)
    best_per_gen: List[float] = []
    kept_cross = 0
    for _ in _progress(range(cfg.generations), total=cfg.generations, desc="APQ evolution", enabled=progress):
        order = np.argsort(-scores, kind="stable")[: cfg.parents]
        parents = [pop[i] for i in order]
        parent_scores = scores[order]
        best_per_gen.append(float(parent_scores[0]))
        mutants = [draw(lambda: space.mutate(parents[int(rng.integers(len(parents)))], rng, cfg.mutate_prob), "mutation") for _ in range(cfg.mutations)]

        def cross() -> Dict[str, Any]:
            i, j = rng.integers(len(parents), size=2)
            return space.crossover(parents[int(i)], parents[int(j)], rng)

        crossed = [draw(cross, "crossover") for _ in range(cfg.crossovers)]
        children = mutants + crossed
        kept_cross += len(crossed)
        child_scores = np.asarray(predict(children), dtype=float) if children else np.zeros(0)
        pop = parents + children
        scores = np.concatenate([parent_scores, child_scores])
    order = np.argsort(-scores, kind="stable")
    final = [(float(scores[i]), pop[i]) for i in order]
    return EvolutionResult(final[0][1], final[0][0], final, best_per_gen, rejected, kept_cross)


class APQEvolutionSearcher:
    """``searcher=apq_evolution``: APQ's predictor-guided joint search.

    :param evolution: an :class:`EvolutionConfig` or mapping.
    :param predictor_path: a quantization-aware predictor (``hwaml-apq predictor transfer``).
    :param fp_predictor_path: a full-precision predictor to transfer from when the
        predictor is fitted on the run's own trials.
    :param warmup_trials: random feasible trials before a history-fitted predictor.
    :param predictor_epochs: epochs of a history-fitted predictor.
    :param metric: the metric predicted and maximised.
    :param cost_model: how children are checked against the constraints: ``table``
        (APQ's look-up table of the BitFusion model, checked against the run's backend
        at start; microseconds per child) or ``backend`` (``ctx.cost_fn`` on every
        child's built network, ~0.2 s each; any backend and metric).
    :param hardware: the table's :class:`~hwaml_apq.hardware.BitFusionConfig` fields
        (those of the run's ``backend=bitfusion``).
    """

    def __init__(
        self,
        evolution: Optional[Mapping[str, Any]] = None,
        predictor_path: Optional[str] = None,
        fp_predictor_path: Optional[str] = None,
        warmup_trials: int = 10,
        predictor_epochs: int = 200,
        metric: str = "accuracy",
        progress: bool = False,
        cost_model: str = "table",
        hardware: Optional[Mapping[str, Any]] = None,
    ):
        from hwaml.config import as_config

        self.evolution = as_config(EvolutionConfig, evolution, "evolution")
        self.predictor_path = predictor_path
        self.fp_predictor_path = fp_predictor_path
        self.warmup_trials = int(warmup_trials)
        self.predictor_epochs = int(predictor_epochs)
        self.metric = metric
        self.progress = progress
        if cost_model not in COST_MODELS:
            raise ValueError(f"cost_model: {cost_model!r} is not one of {COST_MODELS}")
        self.cost_model = cost_model
        self.hardware = dict(hardware) if hardware else None
        self._feasible: Any = None
        self.last_result: Optional[EvolutionResult] = None
        self._loaded: Any = None

    def predictor(self, encoder: JointEncoder, history: Sequence[Trial], ctx: RunContext):
        """``configs -> scores`` and how it was obtained; ``None`` during warm-up."""
        from .predictor import PredictorTraining, fit_quant_predictor, load_predictor

        def wrap(model):
            def predict(configs):
                X = encoder.matrix(configs)
                return model.predict(X[:, : encoder.n_arch], X[:, encoder.n_arch :])

            return predict

        if self.predictor_path:
            if self._loaded is None:
                model, _ = load_predictor(self.predictor_path)
                if getattr(model, "n_quant", None) != encoder.n_quant or model.n_arch != encoder.n_arch:
                    raise ValueError(f"predictor {self.predictor_path} is not a quantization-aware predictor of this space ({encoder.n_arch}+{encoder.n_quant} features)")
                self._loaded = model
            return wrap(self._loaded), "loaded"
        done = [t for t in history if t.ok and math.isfinite(t.value(self.metric))]
        if len(done) < max(2, self.warmup_trials):
            return None, f"warm-up ({len(done)}/{self.warmup_trials})"
        init = None
        if self.fp_predictor_path:
            init, _ = load_predictor(self.fp_predictor_path)
        X = encoder.matrix([t.config for t in done])
        y = np.asarray([t.value(self.metric) for t in done])
        model = fit_quant_predictor(X[:, : encoder.n_arch], X[:, encoder.n_arch :], y, init=init, training=PredictorTraining(epochs=self.predictor_epochs), seed=int(ctx.rng.integers(2**31)))
        return wrap(model), f"fitted on {len(done)} trials" + (" (transferred)" if init is not None else "")

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        encoder = encoder_for(space, "apq_evolution")
        rng = ctx.rng
        if self._feasible is None:
            self._feasible = (make_feasibility(space, ctx, ctx.constraints, self.cost_model, self.hardware, "apq_evolution"),)
        feasible = self._feasible[0]
        seen = {config_key(t.config) for t in history}
        predict, how = self.predictor(encoder, history, ctx)
        out: List[Candidate] = []
        if predict is None:
            for _ in range(n):
                for _ in range(self.evolution.max_draws):
                    c = space.sample(rng)
                    if config_key(c) not in seen and (feasible is None or feasible(c)):
                        break
                else:
                    raise NoFeasibleConfig(f"apq_evolution: no feasible configuration in {self.evolution.max_draws} draws; loosen the constraints")
                seen.add(config_key(c))
                out.append(Candidate(c, origin="random", meta={"predictor": how}))
            return out
        if how == "loaded" and self.last_result is not None:
            result = self.last_result  # a fixed predictor ranks the same population again: reuse it
        else:
            seeds = [t.config for t in sorted((t for t in history if t.ok), key=lambda t: -t.value(self.metric))[: self.evolution.parents]]
            result = evolve(space, predict, rng, self.evolution, feasible, progress=self.progress, seeds=seeds)
            self.last_result = result
        log.info("apq_evolution: best predicted %s %.4f (%s), %d rejected", self.metric, result.best_score, how, result.rejected)
        for score, c in result.population:
            if len(out) >= n:
                break
            if config_key(c) in seen:
                continue
            seen.add(config_key(c))
            out.append(Candidate(c, origin="apq_evolution", meta={f"predicted_{self.metric}": score, "predictor": how}))
        for _ in range(self.evolution.max_draws):
            if len(out) >= n:
                break
            c = space.mutate(result.best, rng, 0.3)
            if config_key(c) not in seen and (feasible is None or feasible(c)):
                seen.add(config_key(c))
                out.append(Candidate(c, origin="mutation", meta={"predictor": how}))
        return out
