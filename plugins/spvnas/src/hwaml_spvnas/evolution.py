"""3D-NAS's evolutionary architecture search (SPVNAS, Tang et al. ECCV 2020, Sec. 3.4).

The algorithm as the paper describes it: the population is initialised with
``population_size`` randomly sampled sub-networks; every generation evaluates
all of them, keeps the ``k = parent_ratio x population_size`` with the highest
score as parents and builds the next population from ``mutation_ratio`` of it
by mutation (a parent drawn at random, each architectural parameter - every
stage's width, depth and the residual blocks' middle widths - re-drawn from its
choices with probability ``mutate_prob``) and the rest by crossover (two parents
drawn at random, each parameter taken from either with probability 1/2). Every
candidate must satisfy the resource constraint (MACs or measured latency): one
that breaks it is dropped and drawn again. The answer is the best sub-network
seen (the paper: of the last generation; here, the best seen over all
generations, which includes it).

Defaults: ``population_size`` 50, ``generations`` 20, ``parent_ratio`` 0.25,
``mutation_ratio`` 0.5, ``mutate_prob`` 0.1. The paper states the procedure
(n/2 mutations, n/2 crossovers from the top-k, resampling of infeasible
candidates) but its text that the ``search`` tool could reach gives no numbers;
these are the values of the same group's released evolution finder (OFA:
parent ratio 0.25, mutation ratio 0.5, mutation probability 0.1) with a smaller
population and fewer generations, as a supernet evaluation of a 3D network
costs far more than OFA's accuracy-predictor query. All are config options.

Two entry points:

* :class:`ThreeDNASEvolution` - the algorithm on a configuration space, with a
  ``fitness(config)`` callable (the supernet's mIoU, say) and a
  ``feasible(config)`` one; :meth:`ThreeDNASEvolution.run` is the whole search.
* :class:`SPVNASEvolutionSearcher` (``searcher=spvnas_evolution``) - the same
  generations through the hwaml loop: every sub-network of a generation is one
  trial of the run's evaluator (``spvnas_lidar``: the supernet's weights, batch
  norm recalibrated), and the run's cost backends and ``constraints`` decide
  feasibility. The searcher keeps no state between calls: each ``propose``
  replays the generations from the run's seed and the finished trials, so a
  resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hwaml import Candidate, RunContext, SearchSpace, Trial, TrialStatus, hookimpl
from hwaml.constraints import is_feasible, normalise_constraints
from hwaml.plugins import PluginError
from hwaml.space import Categorical, Group, Integer

__all__ = ["ThreeDNASEvolution", "SPVNASEvolutionSearcher", "EvolutionResult", "SearchInfeasible", "genes_of"]

Config = Dict[str, Dict[str, Any]]
#: (stage, parameter, choices)
Gene = Tuple[str, str, Tuple[Any, ...]]


class SearchInfeasible(RuntimeError):
    """No sub-network satisfying the constraint could be drawn."""


def key_of(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def genes_of(space: SearchSpace) -> List[Gene]:
    """Every architectural parameter of an SPVNAS space with its choices.

    :class:`hwaml.plugins.PluginError` when ``space`` is not one (it must carry
    ``meta['spvnas']`` and consist of per-stage groups of integer/categorical
    parameters, as :meth:`DesignSpace.search_space` builds it)."""
    if "spvnas" not in (space.meta or {}):
        raise PluginError(
            f"searcher spvnas_evolution searches 3D-NAS's SPVNAS design space (space.meta['spvnas']: per-stage width, depth and "
            f"middle widths), but the space {space.name!r} is not one; compose it with evaluator=spvnas_lidar, or use a generic "
            f"searcher (random, evolution, optuna_tpe) with this evaluator"
        )
    genes: List[Gene] = []
    for stage in space.dims:
        if not isinstance(stage, Group):
            raise PluginError(f"searcher spvnas_evolution: dimension {stage.name!r} of the SPVNAS space is not a per-stage group")
        for d in stage.dims:
            if isinstance(d, Integer):
                choices = tuple(range(d.low, d.high + 1, d.step))
            elif isinstance(d, Categorical):
                choices = tuple(d.choices)
            else:
                raise PluginError(f"searcher spvnas_evolution: {stage.name}.{d.name} is a {type(d).__name__}; 3D-NAS parameters are discrete")
            genes.append((stage.name, d.name, choices))
    return genes


@dataclass
class EvolutionResult:
    best_config: Config
    best_score: float
    #: best score seen after each generation (generation 0 = the random population)
    best_per_generation: List[float] = field(default_factory=list)
    #: distinct sub-networks scored
    n_evaluated: int = 0
    #: candidates dropped for breaking the constraint
    n_rejected: int = 0
    #: (score, config) of every distinct sub-network scored, best first
    history: List[Tuple[float, Config]] = field(default_factory=list)


class ThreeDNASEvolution:
    """3D-NAS's evolution over ``genes`` (see the module docstring for the algorithm)."""

    def __init__(
        self,
        genes: Sequence[Gene],
        population_size: int = 50,
        parent_ratio: float = 0.25,
        mutation_ratio: float = 0.5,
        mutate_prob: float = 0.1,
        max_resample: int = 1000,
    ):
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        for name, value in (("parent_ratio", parent_ratio), ("mutation_ratio", mutation_ratio), ("mutate_prob", mutate_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if parent_ratio * population_size < 1:
            raise ValueError(f"parent_ratio {parent_ratio} x population_size {population_size} keeps no parent")
        if max_resample < 1:
            raise ValueError(f"max_resample must be >= 1, got {max_resample}")
        if not genes:
            raise ValueError("no genes: the space has no architectural parameter")
        self.genes = [(s, p, tuple(c)) for s, p, c in genes]
        self.population_size = int(population_size)
        self.n_parents = max(1, int(round(parent_ratio * population_size)))
        self.n_mutations = int(round(mutation_ratio * population_size))
        self.mutate_prob = float(mutate_prob)
        self.max_resample = int(max_resample)
        self.rejected = 0

    # -- operators
    def random(self, rng: np.random.Generator) -> Config:
        cfg: Config = {}
        for s, p, choices in self.genes:
            cfg.setdefault(s, {})[p] = choices[int(rng.integers(len(choices)))]
        return cfg

    def mutate(self, parent: Mapping[str, Mapping[str, Any]], rng: np.random.Generator) -> Config:
        """Each architectural parameter re-drawn from its choices with probability ``mutate_prob``."""
        child: Config = {s: dict(v) for s, v in parent.items()}
        for s, p, choices in self.genes:
            if rng.random() < self.mutate_prob:
                child[s][p] = choices[int(rng.integers(len(choices)))]
        return child

    def crossover(self, a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]], rng: np.random.Generator) -> Config:
        """Each architectural parameter from either parent with probability 1/2."""
        child: Config = {}
        for s, p, _ in self.genes:
            child.setdefault(s, {})[p] = (a if rng.random() < 0.5 else b)[s][p]
        return child

    def _draw(self, make: Callable[[], Config], feasible: Optional[Callable[[Config], bool]], what: str) -> Config:
        for _ in range(self.max_resample):
            cfg = make()
            if feasible is None or feasible(cfg):
                return cfg
            self.rejected += 1
        raise SearchInfeasible(f"no feasible {what} in {self.max_resample} draws: the constraint is too tight for this space (loosen it or raise max_resample)")

    # -- generations
    def first_generation(self, rng: np.random.Generator, feasible: Optional[Callable[[Config], bool]] = None) -> List[Config]:
        return [self._draw(lambda: self.random(rng), feasible, "random sub-network") for _ in range(self.population_size)]

    def parents(self, scored: Sequence[Tuple[float, Config]]) -> List[Config]:
        """The top-k of a scored population (ties keep the population's order)."""
        if not scored:
            raise ValueError("no scored sub-network to select parents from")
        order = sorted(range(len(scored)), key=lambda i: -scored[i][0])
        return [scored[i][1] for i in order[: self.n_parents]]

    def next_generation(self, scored: Sequence[Tuple[float, Config]], rng: np.random.Generator, feasible: Optional[Callable[[Config], bool]] = None) -> List[Config]:
        parents = self.parents(scored)
        k = len(parents)
        out = []
        for _ in range(self.n_mutations):
            out.append(self._draw(lambda: self.mutate(parents[int(rng.integers(k))], rng), feasible, "mutation"))
        for _ in range(self.population_size - self.n_mutations):
            out.append(self._draw(lambda: self.crossover(parents[int(rng.integers(k))], parents[int(rng.integers(k))], rng), feasible, "crossover"))
        return out

    def run(self, fitness: Callable[[Config], float], rng: np.random.Generator, generations: int = 20,
            feasible: Optional[Callable[[Config], bool]] = None, progress: Optional[Callable[[int, float], None]] = None) -> EvolutionResult:
        """The whole search: ``generations`` populations (the first random), each
        sub-network scored once by ``fitness`` (higher is better; repeated
        sub-networks reuse their score)."""
        if generations < 1:
            raise ValueError(f"generations must be >= 1, got {generations}")
        self.rejected = 0
        memo: Dict[str, Tuple[float, Config]] = {}
        best_per_gen: List[float] = []
        population = self.first_generation(rng, feasible)
        for g in range(generations):
            scored = []
            for cfg in population:
                k = key_of(cfg)
                if k not in memo:
                    score = float(fitness(cfg))
                    if not math.isfinite(score):
                        raise FloatingPointError(f"fitness {score} for sub-network {k}")
                    memo[k] = (score, cfg)
                scored.append((memo[k][0], cfg))
            best_per_gen.append(max(s for s, _ in memo.values()))
            if progress is not None:
                progress(g, best_per_gen[-1])
            if g + 1 < generations:
                population = self.next_generation(scored, rng, feasible)
        ranked = sorted(memo.values(), key=lambda sc: -sc[0])
        return EvolutionResult(ranked[0][1], ranked[0][0], best_per_gen, len(memo), self.rejected, ranked)


class SPVNASEvolutionSearcher:
    """``searcher=spvnas_evolution``: 3D-NAS's evolution through the hwaml loop.

    :param population_size: sub-networks per generation.
    :param generations: generations (the first is random); the searcher is finished after the last.
    :param parent_ratio: fraction of a generation kept as parents (top-k by the objective).
    :param mutation_ratio: fraction of the next generation made by mutation, the rest by crossover.
    :param mutate_prob: probability that a mutation re-draws each architectural parameter.
    :param metric: the evaluator metric ranked (default: the run's single objective, in its direction).
    :param max_resample: draws of a candidate before the constraint is declared too tight.
    """

    def __init__(
        self,
        population_size: int = 50,
        generations: int = 20,
        parent_ratio: float = 0.25,
        mutation_ratio: float = 0.5,
        mutate_prob: float = 0.1,
        metric: Optional[str] = None,
        max_resample: int = 1000,
    ):
        # validates the hyper-parameters now, not at the first proposal
        ThreeDNASEvolution([("s", "p", (0,))], population_size, parent_ratio, mutation_ratio, mutate_prob, max_resample)
        if generations < 1:
            raise ValueError(f"generations must be >= 1, got {generations}")
        self.population_size, self.generations = int(population_size), int(generations)
        self.parent_ratio, self.mutation_ratio, self.mutate_prob = float(parent_ratio), float(mutation_ratio), float(mutate_prob)
        self.metric, self.max_resample = metric, int(max_resample)
        self._feasible_memo: Dict[str, bool] = {}

    def _objective(self, ctx: RunContext) -> Tuple[str, float]:
        objectives = dict(ctx.objectives or {})
        if self.metric is not None:
            direction = objectives.get(self.metric, "max")
            return self.metric, (1.0 if direction == "max" else -1.0)
        if len(objectives) != 1:
            raise PluginError(f"searcher spvnas_evolution ranks one metric; the run has objectives {sorted(objectives)} (set searcher.metric)")
        (name, direction), = objectives.items()
        return name, (1.0 if direction == "max" else -1.0)

    def _feasibility(self, ctx: RunContext) -> Optional[Callable[[Config], bool]]:
        if not ctx.constraints:
            return None
        if ctx.cost_fn is None:
            raise PluginError(f"searcher spvnas_evolution: the run constrains {sorted(ctx.constraints)} but has no cost backend (add backend=spvnas_macs or spvnas_latency)")
        bounds = normalise_constraints(ctx.constraints)
        cost_fn, memo = ctx.cost_fn, self._feasible_memo

        def ok(cfg: Config) -> bool:
            k = key_of(cfg)
            if k not in memo:
                memo[k] = bool(is_feasible(cost_fn(Candidate(cfg)), bounds))
            return memo[k]

        return ok

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        evo = ThreeDNASEvolution(genes_of(space), self.population_size, self.parent_ratio, self.mutation_ratio, self.mutate_prob, self.max_resample)
        metric, sign = self._objective(ctx)
        feasible = self._feasibility(ctx)
        finished: Dict[str, Trial] = {key_of(t.config): t for t in history}
        population = evo.first_generation(np.random.default_rng([int(ctx.seed), 0, 3]), feasible)
        for g in range(self.generations):
            todo, queued = [], set()
            for cfg in population:
                k = key_of(cfg)
                if k not in finished and k not in queued:
                    queued.add(k)
                    todo.append(cfg)
            if todo:
                return [Candidate(cfg, origin="spvnas_evolution", meta={"generation": g}) for cfg in todo[:n]]
            if g + 1 == self.generations:
                break
            scored = []
            for cfg in population:
                t = finished[key_of(cfg)]
                value = t.metrics.get(metric) if t.status == TrialStatus.COMPLETE else None
                if value is not None and math.isfinite(float(value)):
                    scored.append((sign * float(value), cfg))
            if not scored:
                raise RuntimeError(f"spvnas_evolution: no sub-network of generation {g} completed with a finite {metric!r}; nothing to select parents from")
            population = evo.next_generation(scored, np.random.default_rng([int(ctx.seed), g + 1, 3]), feasible)
        return []
