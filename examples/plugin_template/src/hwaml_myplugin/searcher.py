"""The searcher: which candidates to try next.

This example is hill climbing: ``initial`` random samples, then mutations of the
best complete trial so far (by the run's first objective). Before proposing a
child it asks the run's cost backends (``ctx.cost_fn``) and redraws children
that break a constraint, so cheap cost models prune expensive evaluations.

Two rules make a searcher reproducible and resumable: draw every random number
from ``ctx.rng`` (the loop re-seeds it for every step) and rebuild any state
from ``history`` (this one keeps none). A searcher that needs more than the
generic space (say, a graph in ``space.meta["graph"]``) checks for it in
``propose`` and raises ``hwaml.plugins.PluginError`` naming what it needs; the
run then stops at start, naming the searcher and the evaluator.
"""

from __future__ import annotations

import math
from typing import List, Sequence

from hwaml import Candidate, RunContext, SearchSpace, Trial, TrialStatus, hookimpl
from hwaml.constraints import is_feasible


class MySearcher:
    """Random samples first, then mutations of the best trial found so far.

    Every constructor argument is a key of ``conf/searcher/myplugin_search.yaml``.
    """

    def __init__(self, initial: int = 5, mutation_rate: float = 0.3, max_tries: int = 20):
        if initial < 1 or max_tries < 1:
            raise ValueError("initial and max_tries must be >= 1")
        if not 0.0 < mutation_rate <= 1.0:
            raise ValueError(f"mutation_rate must be in (0, 1], got {mutation_rate}")
        self.initial = initial
        self.mutation_rate = mutation_rate
        self.max_tries = max_tries

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        objective, direction = next(iter(ctx.objectives.items()))
        sign = 1.0 if direction == "max" else -1.0
        scored = [t for t in history if t.status == TrialStatus.COMPLETE and math.isfinite(t.value(objective))]
        if len(history) < self.initial or not scored:
            return [Candidate(space.sample(ctx.rng), origin="random") for _ in range(n)]
        best = max(scored, key=lambda t: sign * t.value(objective))
        return [Candidate(self._child(space, best.config, ctx), origin="mutation", meta={"parent": best.number}) for _ in range(n)]

    def _child(self, space: SearchSpace, parent, ctx: RunContext):
        for _ in range(self.max_tries):
            child = space.mutate(parent, ctx.rng, self.mutation_rate)
            # ctx.cost_fn merges every backend's CostReport; None outside a run
            if ctx.cost_fn is None or is_feasible(ctx.cost_fn(Candidate(child)), ctx.constraints):
                return child
        return child  # every try broke a constraint: the loop records this one as infeasible
