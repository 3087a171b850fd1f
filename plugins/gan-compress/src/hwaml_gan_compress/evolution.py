"""``searcher=gan_evolution``: the evolutionary search of GAN Compression's
once-for-all generator.

Generational, as published (mit-han-lab/gan-compression ``evolution_search``):
a first population of ``population_size`` random configurations within the
budget; then each generation keeps the ``parents`` best configurations evaluated
so far and breeds ``mutations`` children (each number re-drawn with probability
``mutation_prob``) and ``crossovers`` children (each number from one of two
parents); a child over the budget (costed by the run's backends through
``ctx.cost_fn`` against ``constraints``) or already seen is rejected and drawn
again. Defaults: 100 / 25 / 50 / 50 / 0.2. It works on any space (the space's own
``sample`` / ``mutate`` / ``crossover``), ranked by the run's first objective.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence, Set

from hwaml import Candidate, RunContext, SearchSpace, Trial, TrialStatus, hookimpl
from hwaml.constraints import is_feasible

__all__ = ["GanEvolutionSearcher"]


def _key(config: Any) -> str:
    return json.dumps(config, sort_keys=True, default=str)


class GanEvolutionSearcher:
    """GAN Compression's evolution: population, top parents, mutations and crossovers, budget rejection.

    :param population_size: random configurations of the first generation (100).
    :param parents: best configurations kept as parents each generation (25).
    :param mutations: mutated children per generation (50).
    :param crossovers: crossover children per generation (50).
    :param mutation_prob: probability that a mutation re-draws each number (0.2; the paper uses 0.2-0.4).
    :param max_rejections: draws per child before the search gives up on finding a new feasible one.
    """

    def __init__(self, population_size: int = 100, parents: int = 25, mutations: int = 50, crossovers: int = 50, mutation_prob: float = 0.2, max_rejections: int = 500):
        if min(population_size, parents) < 1 or min(mutations, crossovers) < 0 or mutations + crossovers < 1:
            raise ValueError(f"gan_evolution: population_size={population_size}, parents={parents} must be >= 1 and mutations + crossovers >= 1")
        if not 0 < mutation_prob <= 1:
            raise ValueError(f"gan_evolution: mutation_prob={mutation_prob} must be in (0, 1]")
        self.population_size, self.parents = population_size, parents
        self.mutations, self.crossovers = mutations, crossovers
        self.mutation_prob, self.max_rejections = mutation_prob, max_rejections
        self._queue: List[Candidate] = []

    def _feasible(self, config: Dict[str, Any], ctx: RunContext) -> bool:
        if ctx.cost_fn is None or not ctx.constraints:
            return True
        return is_feasible(ctx.cost_fn(Candidate(config)), ctx.constraints)

    def _draw(self, make, ctx: RunContext, seen: Set[str]) -> Dict[str, Any] | None:
        for _ in range(self.max_rejections):
            cfg = make()
            key = _key(cfg)
            if key in seen:
                continue
            seen.add(key)  # a rejected config is not drawn again either
            if self._feasible(cfg, ctx):
                return cfg
        return None

    def _generation(self, space: SearchSpace, history: Sequence[Trial], ctx: RunContext) -> List[Candidate]:
        rng = ctx.rng
        seen = {_key(dict(t.candidate.config)) for t in history}
        objective, direction = next(iter((ctx.objectives or {"fid": "min"}).items()))
        done = [t for t in history if t.status == TrialStatus.COMPLETE]
        out: List[Candidate] = []
        if not done:
            for _ in range(self.population_size):
                cfg = self._draw(lambda: space.sample(rng), ctx, seen)
                if cfg is None:
                    break
                out.append(Candidate(cfg, origin="random"))
            return out
        ranked = sorted(done, key=lambda t: t.value(objective), reverse=direction == "max")
        parents = [dict(t.candidate.config) for t in ranked[: self.parents]]
        numbers = [t.number for t in ranked[: self.parents]]
        for kind, count in (("mutation", self.mutations), ("crossover", self.crossovers)):
            for _ in range(count):
                if kind == "mutation":
                    i = int(rng.integers(len(parents)))
                    cfg = self._draw(lambda: space.mutate(parents[i], rng, self.mutation_prob), ctx, seen)
                    meta = {"parents": [numbers[i]]}
                else:
                    i, j = (int(v) for v in rng.integers(len(parents), size=2))
                    cfg = self._draw(lambda: space.crossover(parents[i], parents[j], rng), ctx, seen)
                    meta = {"parents": [numbers[i], numbers[j]]}
                if cfg is not None:
                    out.append(Candidate(cfg, origin=kind, meta=meta))
        return out

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        if not self._queue:
            self._queue = self._generation(space, history, ctx)
        out, self._queue = self._queue[:n], self._queue[n:]
        return out
