"""Searchers every run can use: random, regularised (aging) evolution, Optuna.

All three rebuild their state from ``history`` and draw randomness from
``ctx.rng`` (fresh for every step), so the same seed gives the same history and a
resumed run proposes what the killed one would have.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .. import hookimpl
from ..space import SearchSpace
from ..types import Candidate, RunContext, Trial, TrialStatus


def _key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


class _SeenKeys:
    """Canonical keys of every configuration in the history, updated
    incrementally: a searcher instance lives for the whole run, so each step
    only hashes the trials that are new (O(1) per trial instead of O(history))."""

    def __init__(self) -> None:
        self._numbers: set = set()
        self.keys: set = set()

    def update(self, history: Sequence[Trial]) -> set:
        if len(self._numbers) != len(history):
            # new trials sit at the end of the (number-ordered) history
            for t in reversed(history):
                if t.number in self._numbers:
                    break
                self._numbers.add(t.number)
                self.keys.add(_key(t.config))
            if len(self._numbers) != len(history):  # not append-only: rebuild
                self._numbers = {t.number for t in history}
                self.keys = {_key(t.config) for t in history}
        return self.keys


class _Overlay:
    """The history's keys plus this step's proposals, without copying the former."""

    def __init__(self, base: set) -> None:
        self.base, self.extra = base, set()

    def __contains__(self, key: str) -> bool:
        return key in self.base or key in self.extra

    def add(self, key: str) -> None:
        self.extra.add(key)


def _signed_values(trials: Sequence[Trial], objectives: Mapping[str, str]) -> np.ndarray:
    rows = [[t.value(k) * (1.0 if d == "max" else -1.0) for k, d in objectives.items()] for t in trials]
    return np.asarray(rows, dtype=float).reshape(len(trials), len(objectives))


def _pareto_ranks(values: np.ndarray) -> np.ndarray:
    """Non-dominated sorting rank of each row (0 = front); larger values are better."""
    n = len(values)
    ranks = np.full(n, -1)
    remaining = np.arange(n)
    r = 0
    while remaining.size:
        sub = values[remaining]
        front = []
        for i in range(len(sub)):
            dominated = np.all(sub >= sub[i], axis=1) & np.any(sub > sub[i], axis=1)
            if not dominated.any():
                front.append(i)
        ranks[remaining[front]] = r
        remaining = np.delete(remaining, front)
        r += 1
    return ranks


class RandomSearch:
    """Uniform samples from the space, skipping configurations already tried."""

    def __init__(self, max_resample: int = 50):
        self.max_resample = max_resample
        self._seen = _SeenKeys()

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        seen = _Overlay(self._seen.update(history))
        out: List[Candidate] = []
        for _ in range(n):
            cfg = space.sample(ctx.rng)
            for _ in range(self.max_resample):
                if _key(cfg) not in seen:
                    break
                cfg = space.sample(ctx.rng)
            seen.add(_key(cfg))
            out.append(Candidate(cfg, origin="random"))
        return out


class RegularizedEvolution:
    """Regularised (aging) evolution, Real et al. 2019, with constraint-aware rejection.

    The population is the ``population_size`` most recent complete trials (the
    oldest die first, whatever their fitness). Each child is a mutation (and, with
    ``crossover_prob``, a crossover) of the best of ``tournament_size`` members drawn
    at random. With ``reject_infeasible`` a child is costed by the run's backends
    before it is proposed and re-drawn (up to ``max_rejections`` times) while it
    breaks a constraint, so cheap cost models spare evaluations. With several
    objectives the tournament ranks by non-dominated sorting.
    """

    def __init__(
        self,
        population_size: int = 50,
        tournament_size: int = 10,
        mutation_prob: float = 0.2,
        crossover_prob: float = 0.0,
        reject_infeasible: bool = True,
        max_rejections: int = 50,
    ):
        if tournament_size < 1 or population_size < 1:
            raise ValueError("population_size and tournament_size must be >= 1")
        self.population_size = population_size
        self.tournament_size = min(tournament_size, population_size)
        self.mutation_prob = mutation_prob
        self.crossover_prob = crossover_prob
        self.reject_infeasible = reject_infeasible
        self.max_rejections = max_rejections
        self._seen = _SeenKeys()

    def _feasible(self, cfg: Dict[str, Any], ctx: RunContext) -> bool:
        if not self.reject_infeasible or ctx.cost_fn is None:
            return True
        from ..constraints import is_feasible
        from ..trial import MetricConflict

        try:
            report = ctx.cost_fn(Candidate(cfg))
        except MetricConflict:
            raise
        except Exception:  # noqa: BLE001 - any backend error: the real trial records it with its traceback
            return True
        return is_feasible(report, ctx.constraints)

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        rng = ctx.rng
        objectives = dict(ctx.objectives) or {"accuracy": "max"}
        population: List[Trial] = []
        for t in reversed(history):  # the youngest complete trials (aging)
            if t.status == TrialStatus.COMPLETE:
                population.append(t)
                if len(population) == self.population_size:
                    break
        population.reverse()
        seen = _Overlay(self._seen.update(history))
        out: List[Candidate] = []
        for _ in range(n):
            if len(population) < self.population_size:
                cfg, origin, parents = self._random(space, rng, ctx, seen), "random", []
            else:
                cfg, origin, parents = self._child(space, population, objectives, rng, ctx, seen)
            seen.add(_key(cfg))
            out.append(Candidate(cfg, origin=origin, meta={"parents": parents}))
        return out

    def _random(self, space, rng, ctx, seen):
        cfg = space.sample(rng)
        for _ in range(self.max_rejections):
            if _key(cfg) not in seen and self._feasible(cfg, ctx):
                break
            cfg = space.sample(rng)
        return cfg

    def _tournament(self, population, objectives, rng) -> Trial:
        idx = rng.choice(len(population), size=self.tournament_size, replace=False)
        contenders = [population[i] for i in idx]
        values = _signed_values(contenders, objectives)
        if values.shape[1] == 1:
            return contenders[int(np.argmax(values[:, 0]))]
        ranks = _pareto_ranks(values)
        best = np.flatnonzero(ranks == ranks.min())
        return contenders[int(best[int(rng.integers(len(best)))])]

    def _child(self, space, population, objectives, rng, ctx, seen):
        cfg: Dict[str, Any] = {}
        parents: List[int] = []
        for _ in range(self.max_rejections):
            p1 = self._tournament(population, objectives, rng)
            parents = [p1.number]
            base = p1.config
            origin = "mutation"
            if self.crossover_prob > 0 and rng.random() < self.crossover_prob:
                p2 = self._tournament(population, objectives, rng)
                base = space.crossover(p1.config, p2.config, rng)
                parents.append(p2.number)
                origin = "crossover"
            cfg = space.mutate(base, rng, self.mutation_prob)
            if _key(cfg) not in seen and self._feasible(cfg, ctx):
                return cfg, origin, parents
        return cfg, origin, parents


# ---------------------------------------------------------------------------
# Optuna through ask/tell
# ---------------------------------------------------------------------------


class _ReplayTrial:
    """Answers Optuna's suggest_* calls from a stored configuration, recording the
    distributions, so a finished trial can be told to a fresh study on resume."""

    def __init__(self, flat: Mapping[str, Any]):
        import optuna.distributions as D

        self._D = D
        self.flat = flat
        self.params: Dict[str, Any] = {}
        self.distributions: Dict[str, Any] = {}

    def _take(self, name, dist):
        self.params[name] = self.flat[name]
        self.distributions[name] = dist
        return self.flat[name]

    def suggest_categorical(self, name, choices):
        return self._take(name, self._D.CategoricalDistribution(list(choices)))

    def suggest_int(self, name, low, high, step=1, log=False):
        return self._take(name, self._D.IntDistribution(low, high, step=step, log=log))

    def suggest_float(self, name, low, high, log=False, step=None):
        return self._take(name, self._D.FloatDistribution(low, high, log=log, step=step))


_SAMPLERS = {
    "tpe": "TPESampler",
    "cmaes": "CmaEsSampler",
    "nsga2": "NSGAIISampler",
    "nsga3": "NSGAIIISampler",
    "gp": "GPSampler",
    "random": "RandomSampler",
    "qmc": "QMCSampler",
}


class OptunaSearcher:
    """Any Optuna sampler (TPE, CMA-ES, NSGA-II, GP ...) through ask/tell.

    An in-memory study mirrors the run's history: trials this searcher asked are
    told their results; trials it did not ask (a resumed run) are added with
    ``add_trial``. Infeasible and failed trials are told as failures, so the
    sampler never learns from a value that was not measured; pruned trials as
    ``PRUNED`` with their intermediate values (single objective; with several
    objectives Optuna has no pruned ranking, so they count as failures). A new sampler seeded
    from ``(seed, step)`` is set for every ask, which makes runs reproducible and
    resumable.
    """

    def __init__(self, sampler: str = "tpe", sampler_kwargs: Optional[Dict[str, Any]] = None, multivariate: bool = False):
        if sampler not in _SAMPLERS:
            raise ValueError(f"unknown Optuna sampler {sampler!r}; choose one of {sorted(_SAMPLERS)}")
        self.sampler_name = sampler
        self.sampler_kwargs = dict(sampler_kwargs or {})
        if sampler == "tpe" and multivariate:
            self.sampler_kwargs.setdefault("multivariate", True)
        self._study = None
        self._asked: Dict[int, Any] = {}  # our trial number -> optuna trial
        self._told: set = set()
        self._directions: List[str] = []

    def _make_sampler(self, seed: int):
        import optuna

        cls = getattr(optuna.samplers, _SAMPLERS[self.sampler_name])
        kwargs = dict(self.sampler_kwargs)
        if self.sampler_name == "qmc":
            kwargs.setdefault("scramble", True)
        return cls(seed=seed, **kwargs)

    def _ensure_study(self, ctx: RunContext):
        import optuna

        if self._study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            objectives = dict(ctx.objectives) or {"accuracy": "max"}
            self._names = list(objectives)
            self._directions = ["maximize" if d == "max" else "minimize" for d in objectives.values()]
            if self.sampler_name in ("cmaes", "gp") and len(self._directions) > 1 and self.sampler_name == "cmaes":
                raise ValueError("CMA-ES is single-objective; use searcher=optuna_nsga2 for several objectives")
            self._study = optuna.create_study(directions=self._directions, sampler=self._make_sampler(ctx.seed))
        return self._study

    def _sync(self, space: SearchSpace, history: Sequence[Trial]) -> None:
        import optuna
        from optuna.trial import TrialState

        study = self._study
        single = len(self._names) == 1
        for t in history:
            if t.number in self._told:
                continue
            values = [t.value(k) for k in self._names] if t.status == TrialStatus.COMPLETE else None
            ok = values is not None and all(math.isfinite(v) for v in values)
            state = TrialState.COMPLETE if ok else TrialState.FAIL
            # a pruned trial: PRUNED with its intermediate values (TPE ranks it
            # below the complete trials by the last step it reached)
            steps = {int(s): float(v) for s, v in (t.info or {}).get("intermediate", []) or []} if t.status == TrialStatus.PRUNED else {}
            if t.status == TrialStatus.PRUNED and single:
                state = TrialState.PRUNED
            if t.number in self._asked:
                ot = self._asked.pop(t.number)
                if state == TrialState.PRUNED:
                    for s_, v_ in sorted(steps.items()):
                        ot.report(v_, s_)
                study.tell(ot, values if ok else None, state=state)
            else:
                replay = _ReplayTrial(space.flatten(t.config))
                space.suggest(replay)
                pruned_value = [steps[max(steps)]] if state == TrialState.PRUNED and steps else None
                study.add_trial(
                    optuna.trial.create_trial(
                        params=replay.params,
                        distributions=replay.distributions,
                        values=values if ok else pruned_value,
                        intermediate_values=steps if state == TrialState.PRUNED else None,
                        state=state,
                    )
                )
            self._told.add(t.number)

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        study = self._ensure_study(ctx)
        self._sync(space, history)
        step_seed = int(ctx.rng.integers(2**31 - 1))
        study.sampler = self._make_sampler(step_seed)
        out = []
        next_number = (max((t.number for t in history), default=-1) + 1) if history else 0
        if ctx.store is not None:
            next_number = ctx.store.next_number()
        for i in range(n):
            ot = study.ask()
            cfg = space.suggest(ot)
            # the loop numbers candidates in order from the store's next number
            self._asked[next_number + i] = ot
            out.append(Candidate(cfg, origin=self.sampler_name, meta={"optuna_trial": ot.number}))
        return out
