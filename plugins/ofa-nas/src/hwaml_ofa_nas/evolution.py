"""OFA's evolutionary search for a specialised sub-network, as a hwaml searcher.

The algorithm is the one of the OFA paper's specialisation step (and of the
reference ``EvolutionFinder``): a population of 100 feasible architectures is
drawn at random (candidates breaking the efficiency constraint are rejected and
redrawn); each generation keeps the best 25% by *predicted* accuracy as parents,
makes half of the next population by mutation (resolution with probability 0.5,
each block's kernel and expand ratio and each stage's depth with probability
0.1) and the other half by uniform crossover of two parents, again rejecting
infeasible children; after the time budget the best architecture found is
the answer. Genomes keep the choices of blocks beyond a stage's depth, so a
depth mutation can bring them back, as in OFA.

As a hwaml searcher (``searcher=ofa_evolution``), accuracy comes from the MLP
predictor of :mod:`hwaml_ofa_nas.predictors` - loaded from ``predictor_path``
or fitted on the run's own finished trials after ``warmup_trials`` random ones
- and efficiency from the run's cost backends through ``ctx.cost_fn`` and the
run's ``constraints``. Each step runs the evolution and proposes the best
sub-networks not yet evaluated; the evaluator then measures their real
accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hwaml import Candidate, RunContext, SearchSpace, Trial, hookimpl
from hwaml.constraints import is_feasible, normalise_constraints
from hwaml.plugins import PluginError
from hwaml.progress import progress as _progress

from .predictors import ArchEncoder, fit_accuracy_predictor, load_accuracy_predictor

log = logging.getLogger("hwaml.ofa_nas")

__all__ = ["OFAEvolutionSearcher", "evolution_search", "EvolutionResult", "SearchInfeasible"]

Genome = Dict[str, np.ndarray]


class SearchInfeasible(RuntimeError):
    """No architecture satisfying the constraints could be drawn."""


@dataclass
class EvolutionResult:
    best_config: Dict[str, Any]
    best_score: float
    #: best predicted score after each generation
    best_per_generation: List[float] = field(default_factory=list)
    #: the final population, best first: (predicted score, configuration)
    population: List[Tuple[float, Dict[str, Any]]] = field(default_factory=list)
    n_rejected: int = 0
    n_predicted: int = 0


def _take(g: Genome, idx: Sequence[int]) -> Genome:
    return {k: v[np.asarray(idx, dtype=int)] for k, v in g.items()}


def _concat(parts: Sequence[Genome]) -> Genome:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Feasibility:
    """Constraint checks for whole batches of genomes.

    ``batch(genomes) -> bool array`` is used as is (e.g. a vectorised MACs
    table); a per-configuration ``check(config) -> bool`` is memoised by the
    active architecture, so a sub-network that reappears (a mutation that
    touched only inactive slots, a crossover of similar parents) is not
    costed again.
    """

    def __init__(
        self,
        encoder: ArchEncoder,
        check: Optional[Callable[[Dict[str, Any]], bool]],
        max_rejections: int,
        batch: Optional[Callable[[Genome], np.ndarray]] = None,
    ):
        self.encoder = encoder
        self.check = check
        self.batch = batch
        self.max_rejections = max_rejections
        self.rejected = 0
        self._memo: Dict[bytes, bool] = {}

    def __call__(self, g: Genome) -> np.ndarray:
        n = len(g["res"])
        if self.batch is not None:
            return np.asarray(self.batch(g), dtype=bool).reshape(n)
        if self.check is None:
            return np.ones(n, dtype=bool)
        ok = np.empty(n, dtype=bool)
        for i, key in enumerate(self.encoder.keys(g)):
            hit = self._memo.get(key)
            if hit is None:
                hit = self._memo[key] = bool(self.check(self.encoder.to_config(g, i)))
            ok[i] = hit
        return ok

    def draw(self, make: Callable[[np.ndarray], Genome], n: int, what: str) -> Genome:
        """``n`` feasible genomes: ``make(slots)`` proposes one genome per slot
        and every rejected slot is proposed again (OFA's rejection loop, for
        all slots of a generation at once)."""
        pending = np.arange(n)
        out: Optional[Genome] = None
        for _ in range(self.max_rejections):
            g = make(pending)
            ok = self(g)
            if out is None:
                out = {k: np.empty((n,) + v.shape[1:], dtype=v.dtype) for k, v in g.items()}
            for k, v in g.items():
                out[k][pending[ok]] = v[ok]
            self.rejected += int((~ok).sum())
            pending = pending[~ok]
            if not len(pending):
                return out
        raise SearchInfeasible(
            f"no feasible {what} in {self.max_rejections} draws: the constraints are too tight for this space "
            f"(loosen them or raise max_rejections)"
        )


def evolution_search(
    encoder: ArchEncoder,
    predict: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
    is_feasible: Optional[Callable[[Dict[str, Any]], bool]] = None,
    population_size: int = 100,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    arch_mutate_prob: float = 0.1,
    resolution_mutate_prob: float = 0.5,
    generations: int = 500,
    max_rejections: int = 10000,
    progress: bool = False,
    feasible_batch: Optional[Callable[[Genome], np.ndarray]] = None,
) -> EvolutionResult:
    """Maximise ``predict(encoding)`` over feasible architectures with OFA's evolution.

    ``predict`` maps an N x features encoding matrix to N scores (called once
    per generation on all children); the constraint is either
    ``feasible_batch(genomes) -> bool array`` (vectorised, e.g.
    ``MacsTable.macs(g) <= limit``) or ``is_feasible(config) -> bool``
    (memoised per architecture); neither: everything is feasible.

    Each generation draws all mutations, then all crossovers, as arrays: child
    ``j`` picks its parent(s) uniformly among the best ``parent_ratio`` and is
    re-drawn from the same parent(s) until feasible, exactly OFA's per-child
    rejection loop.
    """
    if population_size < 2:
        raise ValueError("population_size must be >= 2")
    n_mut = int(round(mutation_ratio * population_size))
    n_par = max(1, int(round(parent_ratio * population_size)))
    feas = _Feasibility(encoder, is_feasible, max_rejections, feasible_batch)
    S, D = encoder.n_stages, encoder.max_depth
    nr, nd, nk, ne = len(encoder.resolutions), len(encoder.depths), len(encoder.kernels), len(encoder.expands)

    def mutate(parents: Genome, idx: np.ndarray) -> Genome:
        g = _take(parents, idx)  # a copy
        m = len(idx)
        res = rng.random(m) < resolution_mutate_prob
        g["res"][res] = rng.integers(nr, size=int(res.sum()))
        block = rng.random((m, S, D)) < arch_mutate_prob  # kernel and expand of a block mutate together
        g["kernel"][block] = rng.integers(nk, size=int(block.sum()))
        g["expand"][block] = rng.integers(ne, size=int(block.sum()))
        stage = rng.random((m, S)) < arch_mutate_prob
        g["depth"][stage] = rng.integers(nd, size=int(stage.sum()))
        return g

    def crossover(parents: Genome, i1: np.ndarray, i2: np.ndarray) -> Genome:
        a, b = _take(parents, i1), _take(parents, i2)
        return {k: np.where(rng.random(a[k].shape) < 0.5, a[k], b[k]) for k in a}

    population = feas.draw(lambda slots: encoder.random_genomes(len(slots), rng), population_size, "random sub-network")
    scores = np.asarray(predict(encoder.encode(population)), dtype=float)
    n_predicted = len(scores)
    best_per_gen: List[float] = []
    best_score, best = -math.inf, _take(population, [0])
    for _ in _progress(range(generations), total=generations, desc="OFA evolution", enabled=progress):
        order = np.argsort(-scores, kind="stable")[:n_par]
        parents, parent_scores = _take(population, order), scores[order]
        if parent_scores[0] > best_score:
            best_score, best = float(parent_scores[0]), _take(parents, [0])
        best_per_gen.append(best_score)
        mut_parent = rng.integers(n_par, size=n_mut)
        mutants = feas.draw(lambda slots: mutate(parents, mut_parent[slots]), n_mut, "mutation")
        n_cross = population_size - n_mut
        cross_parents = rng.integers(n_par, size=(n_cross, 2))
        crossed = feas.draw(lambda slots: crossover(parents, cross_parents[slots, 0], cross_parents[slots, 1]), n_cross, "crossover")
        child = _concat([mutants, crossed])
        child_scores = np.asarray(predict(encoder.encode(child)), dtype=float)
        n_predicted += len(child_scores)
        population = _concat([parents, child])
        scores = np.concatenate([parent_scores, child_scores])
    order = np.argsort(-scores, kind="stable")
    if scores[order[0]] > best_score:
        best_score, best = float(scores[order[0]]), _take(population, [order[0]])
    final = [(float(scores[i]), encoder.to_config(population, int(i))) for i in order]
    return EvolutionResult(encoder.to_config(best, 0), best_score, best_per_gen, final, feas.rejected, n_predicted)


def _key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


class OFAEvolutionSearcher:
    """``searcher=ofa_evolution``: OFA's predictor-driven evolutionary search.

    :param population_size: architectures per generation (OFA: 100).
    :param parent_ratio: fraction kept as parents (OFA: 0.25).
    :param mutation_ratio: fraction of children made by mutation, the rest by crossover (OFA: 0.5).
    :param arch_mutate_prob: per-block / per-stage mutation probability (OFA: 0.1).
    :param resolution_mutate_prob: resolution mutation probability (OFA: 0.5).
    :param generations: generations per search (OFA's ``max_time_budget``: 500).
    :param metric: the evaluator metric the predictor learns (maximised).
    :param predictor_path: a predictor saved by ``hwaml-ofa-nas predictor train``; without it
        the predictor is fitted on the run's finished trials.
    :param warmup_trials: random (feasible) trials before a history-fitted predictor is used.
    :param predictor_epochs: training epochs of a history-fitted predictor.
    :param max_rejections: draws before giving up on a feasible child.
    """

    def __init__(
        self,
        population_size: int = 100,
        parent_ratio: float = 0.25,
        mutation_ratio: float = 0.5,
        arch_mutate_prob: float = 0.1,
        resolution_mutate_prob: float = 0.5,
        generations: int = 500,
        metric: str = "accuracy",
        predictor_path: Optional[str] = None,
        warmup_trials: int = 10,
        predictor_hidden: int = 400,
        predictor_layers: int = 3,
        predictor_epochs: int = 300,
        max_rejections: int = 10000,
        progress: bool = False,
    ):
        for name, value in (("parent_ratio", parent_ratio), ("mutation_ratio", mutation_ratio), ("arch_mutate_prob", arch_mutate_prob), ("resolution_mutate_prob", resolution_mutate_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if population_size < 2 or generations < 0:
            raise ValueError("population_size must be >= 2 and generations >= 0")
        self.population_size = population_size
        self.parent_ratio = parent_ratio
        self.mutation_ratio = mutation_ratio
        self.arch_mutate_prob = arch_mutate_prob
        self.resolution_mutate_prob = resolution_mutate_prob
        self.generations = generations
        self.metric = metric
        self.predictor_path = predictor_path
        self.warmup_trials = warmup_trials
        self.predictor_hidden = predictor_hidden
        self.predictor_layers = predictor_layers
        self.predictor_epochs = predictor_epochs
        self.max_rejections = max_rejections
        self.progress = progress
        self.last_result: Optional[EvolutionResult] = None
        self._loaded: Any = None

    @staticmethod
    def encoder_for(space: SearchSpace) -> ArchEncoder:
        """OFA's genome encoder for ``space``; :class:`hwaml.plugins.PluginError`
        when the space is not an OFA sub-network space."""
        meta = space.meta.get("ofa")
        if meta is None:
            raise PluginError(
                f"searcher ofa_evolution needs an OFA sub-network space (space.meta['ofa'] with resolutions, stages and "
                f"kernel/expand/depth choices), but the space {space.name!r} has none; compose it with evaluator=ofa_digits "
                f"(or another evaluator of an OFA space), or use a generic searcher (random, evolution, optuna_tpe) with this evaluator"
            )
        try:
            return ArchEncoder(meta)
        except ValueError as exc:
            raise PluginError(f"searcher ofa_evolution: {exc}") from exc

    def _feasibility(self, ctx: RunContext) -> Optional[Callable[[Dict[str, Any]], bool]]:
        """``config -> bool`` through the run's cost backends (``ctx.cost_fn``, a
        merged CostReport): every constraint holds on the reported metrics and no
        backend said the candidate does not fit. ``None`` without backends' costs."""
        if ctx.cost_fn is None:
            return None
        bounds = normalise_constraints(ctx.constraints)
        cost_fn = ctx.cost_fn

        def ok(cfg: Dict[str, Any]) -> bool:
            return is_feasible(cost_fn(Candidate(cfg)), bounds)

        return ok

    def _predictor(self, encoder: ArchEncoder, history: Sequence[Trial], ctx: RunContext):
        if self.predictor_path:
            if self._loaded is None:
                model, _meta = load_accuracy_predictor(self.predictor_path)
                if model.n_features != encoder.n_features:
                    raise ValueError(
                        f"predictor {self.predictor_path} takes {model.n_features} features but this space encodes to "
                        f"{encoder.n_features}; it was trained for another supernet shape"
                    )
                self._loaded = model
            return self._loaded.predict, "loaded"
        done = [t for t in history if t.ok and self.metric in t.metrics and math.isfinite(float(t.metrics[self.metric]))]
        if len(done) < max(2, self.warmup_trials):
            return None, f"warm-up ({len(done)}/{self.warmup_trials})"
        X = encoder.encode_configs([t.config for t in done])
        y = np.asarray([float(t.metrics[self.metric]) for t in done])
        model, _report = fit_accuracy_predictor(
            X, y, hidden=self.predictor_hidden, layers=self.predictor_layers, epochs=self.predictor_epochs, val_fraction=0.0, seed=int(ctx.rng.integers(2**31))
        )
        return model.predict, f"fitted on {len(done)} trials"

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        encoder = self.encoder_for(space)
        rng = ctx.rng
        final = self._feasibility(ctx)
        # every child of the evolution is checked against the constraints (OFA's rejection
        # loop); without constraints only the backends' own verdicts can reject, and those
        # are checked on the proposals alone (costing every child would be wasted work)
        feasible = final if ctx.constraints else None
        seen = {_key(t.config) for t in history}
        predict, how = self._predictor(encoder, history, ctx)
        out: List[Candidate] = []
        if predict is None:  # warm-up: random feasible architectures feed the predictor
            feas = _Feasibility(encoder, final, self.max_rejections)
            for _ in range(n):
                for _ in range(100):
                    cfg = encoder.to_config(feas.draw(lambda slots: encoder.random_genomes(len(slots), rng), 1, "random sub-network"), 0)
                    if _key(cfg) not in seen:
                        break
                seen.add(_key(cfg))
                out.append(Candidate(cfg, origin="random", meta={"predictor": how}))
            return out
        t0 = time.perf_counter()
        result = evolution_search(
            encoder,
            predict,
            rng,
            feasible,
            self.population_size,
            self.parent_ratio,
            self.mutation_ratio,
            self.arch_mutate_prob,
            self.resolution_mutate_prob,
            self.generations,
            self.max_rejections,
            self.progress,
        )
        self.last_result = result
        log.info("ofa_evolution: %d generations in %.1fs, best predicted %s %.4f (%s)", self.generations, time.perf_counter() - t0, self.metric, result.best_score, how)
        for score, cfg in [(result.best_score, result.best_config)] + result.population:
            if len(out) >= n:
                break
            if _key(cfg) in seen:
                continue
            seen.add(_key(cfg))
            if final is not None and feasible is None and not final(cfg):
                continue
            out.append(Candidate(cfg, origin="ofa_evolution", meta={f"predicted_{self.metric}": score, "predictor": how}))
        # everything the evolution likes was already evaluated: explore by mutation
        for _ in range(self.max_rejections):
            if len(out) >= n:
                break
            cfg = space.mutate(result.best_config, rng, self.arch_mutate_prob * 3)
            if _key(cfg) not in seen and (final is None or final(cfg)):
                seen.add(_key(cfg))
                out.append(Candidate(cfg, origin="mutation", meta={"predictor": how}))
        return out
