"""The search loop: propose -> record pending -> execute -> record.

One step asks the searcher for up to ``batch_size`` candidates, records them as
pending, runs each through the executor (one trial: :mod:`hwaml.trial`), commits
each finished trial and tells the observers. A step's random generator is derived
from ``(seed, step)``, so the same seed gives the same history, and a resumed run
continues exactly where the killed one stopped.

Before any work the loop checks what the configuration names: every objective and
constraint must be a metric that the evaluator or a backend declares
(``metric_names``).
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .constraints import violations  # noqa: F401 - re-exported for plugin code written against hwaml.loop
from .plugins import PluginError, build_run_manager, check_required, implementers
from .space import SearchSpace, SpaceError
from .store import TrialStore
from .trial import MetricConflict, TrialOutcome, collect_costs, execute_trial, merge_costs, model_builder  # noqa: F401 - re-exported
from .types import Candidate, CostReport, RunContext, Trial, TrialStatus

log = logging.getLogger("hwaml")


class RunError(RuntimeError):
    """A problem with the run itself (not with one trial): stops the run."""


# ---------------------------------------------------------------------------
# ranking helpers
# ---------------------------------------------------------------------------


def objective_matrix(trials: Sequence[Trial], objectives: Mapping[str, str]) -> np.ndarray:
    """Objective values of trials, signed so that larger is always better."""
    rows = []
    for t in trials:
        rows.append([t.value(k) * (1.0 if d == "max" else -1.0) for k, d in objectives.items()])
    return np.asarray(rows, dtype=float).reshape(len(trials), len(objectives))


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Non-dominated rows of a (maximised) value matrix."""
    n = len(values)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        dominated = np.all(values >= values[i], axis=1) & np.any(values > values[i], axis=1)
        if dominated.any():
            mask[i] = False
    return mask


def pareto_front(trials: Sequence[Trial], objectives: Mapping[str, str]) -> List[Trial]:
    ok = [t for t in trials if t.status == TrialStatus.COMPLETE]
    if not ok:
        return []
    mask = pareto_mask(objective_matrix(ok, objectives))
    return [t for t, m in zip(ok, mask) if m]


def best_trial(trials: Sequence[Trial], objectives: Mapping[str, str]) -> Optional[Trial]:
    """The run's best trial: the lexicographic optimum of the complete trials.

    Best on the first objective; ties broken by the second objective, then the
    third ...; remaining ties by the earliest trial. A lexicographic optimum is
    never dominated, so the best trial is always on the Pareto front (what
    ``best.json`` and ``hwaml deploy`` use).
    """
    ok = [t for t in trials if t.status == TrialStatus.COMPLETE]
    if not ok:
        return None
    signs = [(name, 1.0 if d == "max" else -1.0) for name, d in objectives.items()]
    return max(ok, key=lambda t: (*[s * t.value(n) for n, s in signs], -t.number))


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), 0x68776D6C])


# ---------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------


class Progress:
    """The run's bar (through :mod:`hwaml.progress`): trials done, feasible, failed, best so far, ETA."""

    def __init__(self, enabled: bool, total: Optional[int], initial: int, objectives: Mapping[str, str]):
        from .progress import bar, enabled as bars_on

        self.objectives = dict(objectives)
        self.bar = bar(total=total, initial=initial, desc="hwaml", unit="trial", leave=True) if enabled and bars_on() else None

    def update(self, history: Sequence[Trial], n: int = 1) -> None:
        if self.bar is None:
            return
        feasible = sum(t.status == TrialStatus.COMPLETE for t in history)
        failed = sum(t.status == TrialStatus.FAILED for t in history)
        infeasible = sum(t.status == TrialStatus.INFEASIBLE for t in history)
        best = best_trial(history, self.objectives)
        name = next(iter(self.objectives))
        postfix = {"ok": feasible, "infeasible": infeasible, "failed": failed}
        pruned = sum(t.status == TrialStatus.PRUNED for t in history)
        if pruned:
            postfix["pruned"] = pruned
        if best is not None:
            postfix[f"best {name}"] = f"{best.value(name):.4g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


@dataclass
class RunResult:
    run_dir: Path
    trials: List[Trial]
    best: Optional[Trial]
    pareto: List[Trial]
    stopped_because: str


class SearchLoop:
    """Runs one search given instantiated components.

    Most users reach it through ``hwaml run``; tests and notebooks can build it
    directly::

        loop = SearchLoop(components={"searcher": RandomSearch(), "evaluator": AnalyticEvaluator()},
                          run_dir=tmp_path, objectives={"accuracy": "max"}, budget_trials=20)
        result = loop.run()
    """

    def __init__(
        self,
        components: Mapping[str, Any],
        run_dir: Path | str,
        objectives: Mapping[str, str],
        constraints: Optional[Mapping[str, Any]] = None,
        budget_trials: Optional[int] = None,
        budget_seconds: Optional[float] = None,
        seed: int = 0,
        resume: bool = False,
        executor: Any = None,
        batch_size: Optional[int] = None,
        progress: bool = False,
        cfg: Any = None,
        synchronous: str = "NORMAL",
        registry: Any = None,
        trial_timeout_s: Optional[float] = None,
        pruner: Any = None,
        enqueue: Optional[Sequence[Mapping[str, Any]]] = None,
    ):
        if budget_trials is None and budget_seconds is None:
            raise RunError("give budget_trials and/or budget_seconds")
        self.components = dict(components)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.objectives = dict(objectives)
        self.constraints = dict(constraints or {})
        self.budget_trials = budget_trials
        self.budget_seconds = budget_seconds
        self.seed = int(seed)
        self.resume = resume
        self.executor = executor
        self.batch_size = batch_size
        self.progress = progress
        self.cfg = cfg
        self.trial_timeout_s = trial_timeout_s
        self.enqueue = [dict(c) for c in (enqueue or [])]
        self.pm = build_run_manager(self.components, registry)
        check_required(self.pm)
        self.store = TrialStore(self.run_dir / TrialStore.FILENAME, synchronous=synchronous)
        self.ctx = RunContext(
            cfg=cfg,
            run_dir=self.run_dir,
            seed=self.seed,
            rng=step_rng(self.seed, 2**31),
            store=self.store,
            logger=log,
            objectives=self.objectives,
            constraints=self.constraints,
        )
        from .pruning import make_pruning

        try:
            pruning = make_pruning(pruner, self.objectives, self.run_dir)
        except (TypeError, ValueError) as exc:
            raise RunError(f"pruner: {exc}") from exc
        self.ctx = replace(self.ctx, pruning=pruning)
        self.ctx = replace(self.ctx, cost_fn=self._cost_of, build_model=model_builder(self.pm, lambda: self.ctx))
        self._cost_cache: "OrderedDict[str, CostReport]" = OrderedDict()

    #: merged costs kept for ``ctx.cost_fn`` (least recently used dropped first)
    COST_CACHE_SIZE = 20000

    def _cost_of(self, candidate: Candidate) -> CostReport:
        """Merged cost of a candidate (memoised: searchers may ask repeatedly)."""
        key = json.dumps(candidate.config, sort_keys=True, default=str)
        hit = self._cost_cache.get(key)
        if hit is not None:
            self._cost_cache.move_to_end(key)
            return hit
        report = collect_costs(self.pm, candidate, self.ctx)
        self._cost_cache[key] = report
        if len(self._cost_cache) > self.COST_CACHE_SIZE:
            self._cost_cache.popitem(last=False)
        return report

    # The searcher gets a fresh context (and rng) for every step.
    def _step_ctx(self, step: int) -> RunContext:
        return replace(self.ctx, rng=step_rng(self.seed, step))

    def check_metrics(self) -> Dict[str, List[str]]:
        """Every objective and constraint must name a metric that a component declares."""
        return check_declared_metrics(self.pm, self.components, self.objectives, self.constraints, self.ctx)

    def _check_store(self) -> None:
        n = self.store.count()
        stored_seed = self.store.get_meta("seed")
        if n and not self.resume:
            raise RunError(
                f"{self.store.path} already holds {n} trials; pass resume=true to continue that run, "
                f"or choose a new run directory (hydra.run.dir=...)"
            )
        if self.resume and stored_seed is not None and int(stored_seed) != self.seed:
            raise RunError(f"cannot resume {self.store.path}: it was run with seed={stored_seed}, this run has seed={self.seed}")
        stored_obj = self.store.get_meta("objectives")
        if self.resume and stored_obj is not None and stored_obj != self.objectives:
            raise RunError(f"cannot resume {self.store.path}: its objectives were {stored_obj}, now {self.objectives}")
        self.store.set_meta("seed", self.seed)
        self.store.set_meta("objectives", self.objectives)
        self.store.set_meta("constraints", self.constraints)
        if self.cfg is not None:
            from omegaconf import OmegaConf
            from omegaconf.errors import OmegaConfBaseException

            try:
                container = OmegaConf.to_container(self.cfg, resolve=True)
                json.dumps(container, allow_nan=True)
            except (OmegaConfBaseException, TypeError, ValueError) as exc:
                raise RunError(f"the run config cannot be stored in {self.store.path} (so the run could not be resumed or deployed): {type(exc).__name__}: {exc}") from exc
            self.store.set_meta("config", container)

    def _budget_left(self, done: int, elapsed: float) -> bool:
        if self.budget_trials is not None and done >= self.budget_trials:
            return False
        if self.budget_seconds is not None and elapsed >= self.budget_seconds:
            return False
        return True

    def _propose(self, space: SearchSpace, history: List[Trial], n: int, step: int) -> List[Candidate]:
        sctx = self._step_ctx(step)
        try:
            proposed = self.pm.hook.propose(space=space, history=list(history), n=n, ctx=sctx)
        except PluginError as exc:
            raise RunError(f"{describe(self.pm, 'propose')} cannot search the space of {describe(self.pm, 'search_space')}: {exc}") from exc
        if not proposed:
            return []
        checked = []
        for c in list(proposed)[:n]:
            if not isinstance(c, Candidate):
                c = Candidate(dict(c))
            try:
                cfg = space.validate(c.config)
            except SpaceError as exc:
                raise RunError(f"searcher {implementers(self.pm, 'propose')} proposed an invalid candidate: {exc}") from exc
            checked.append(Candidate(cfg, None, c.origin, dict(c.meta)))
        return checked

    def run(self) -> RunResult:
        self.check_metrics()
        self._check_store()
        space = self.pm.hook.search_space(ctx=self.ctx)
        if not isinstance(space, SearchSpace):
            raise RunError(f"search_space() returned {type(space).__name__}; the evaluator {implementers(self.pm, 'search_space')} must return a SearchSpace")
        self.ctx = replace(self.ctx, space=space)
        self.store.set_meta("space", space.describe())
        queue = self._warm_start(space)
        history = self.store.finished()
        if self.ctx.pruning is not None:
            from .pruning import rebuild_journal

            rebuild_journal(self.ctx.pruning, history)
        elapsed_before = float(self.store.get_meta("elapsed_s", 0.0))
        t_start = time.perf_counter()
        executor = self.executor
        if executor is None:
            from .executors import InlineExecutor

            executor = InlineExecutor()
        executor.start(self.pm, self.ctx, self.objectives, trial_timeout_s=self.trial_timeout_s)
        self.ctx = replace(self.ctx, threads=executor.threads)
        batch = self.batch_size or max(1, executor.workers)
        bar = Progress(self.progress, self.budget_trials, len(history), self.objectives)
        bar.update(history, 0)
        stopped = "budget"
        try:
            step = self.store.max_step() + 1
            pending = self.store.pending()
            while True:
                elapsed = elapsed_before + time.perf_counter() - t_start
                done = len(history)
                if not pending and not self._budget_left(done, elapsed):
                    stopped = "budget"
                    break
                if pending:
                    cands = pending
                    pending = []
                elif queue:
                    n = batch if self.budget_trials is None else max(1, min(batch, self.budget_trials - done))
                    cands = self.store.add_pending(queue[:n], step)
                    queue = queue[n:]
                    step += 1
                else:
                    n = batch
                    if self.budget_trials is not None:
                        n = max(1, min(n, self.budget_trials - done))
                    checked = self._propose(space, history, n, step)
                    if not checked:
                        stopped = "searcher finished"
                        break
                    cands = self.store.add_pending(checked, step)
                    step += 1
                for cand, outcome in executor.run(cands):
                    trial = Trial(
                        number=cand.number,
                        candidate=cand,
                        status=outcome.status,
                        metrics=outcome.metrics,
                        cost=outcome.cost,
                        error=outcome.error,
                        duration_s=outcome.duration_s,
                        info=outcome.info,
                    )
                    elapsed = elapsed_before + time.perf_counter() - t_start
                    self.store.finish(trial, {"elapsed_s": elapsed})
                    history.append(trial)
                    if trial.status == TrialStatus.FAILED:
                        first = (trial.error or "").strip().splitlines()[-1:] or [""]
                        log.warning("trial %d failed: %s", trial.number, first[0])
                    self._notify(trial)
                    bar.update(history)
                if len(cands) > 1:
                    history.sort(key=lambda t: t.number)
        except KeyboardInterrupt:
            stopped = "interrupted"
            raise
        finally:
            bar.close()
            executor.close()
        best = best_trial(history, self.objectives)
        front = pareto_front(history, self.objectives)
        return RunResult(self.run_dir, history, best, front, stopped)

    def _warm_start(self, space: SearchSpace) -> List[Candidate]:
        """The enqueued configurations not yet run, validated against the space
        before any work (a resumed run skips those its store already holds)."""
        checked = []
        for i, cfg in enumerate(self.enqueue):
            try:
                valid = space.validate(cfg)
            except SpaceError as exc:
                raise RunError(f"enqueue[{i}] is not a point of the search space of {describe(self.pm, 'search_space')}: {exc}") from exc
            checked.append(Candidate(valid, None, "enqueued", {"enqueued": i}))
        done = self.store.count_origin("enqueued")
        return checked[done:]

    def _notify(self, trial: Trial) -> None:
        """``trial_completed`` through ``pm.hook`` (wrappers apply); an observer's
        exception is logged and never fails the run."""
        try:
            self.pm.hook.trial_completed(trial=trial, ctx=self.ctx)
        except Exception:  # noqa: BLE001 - an observer never fails the run
            log.warning("a trial_completed observer (%s) raised:\n%s", ", ".join(implementers(self.pm, "trial_completed")), traceback.format_exc())

    def finish(self, summary: Any) -> None:
        """``run_finished`` through ``pm.hook``: observers log the final files and
        close their runs. An observer's exception is a warning."""
        try:
            self.pm.hook.run_finished(summary=summary, ctx=self.ctx)
        except Exception:  # noqa: BLE001 - an observer never fails the run
            log.warning("a run_finished observer (%s) raised:\n%s", ", ".join(implementers(self.pm, "run_finished")), traceback.format_exc())

    def close(self) -> None:
        self.store.close()


# ---------------------------------------------------------------------------
# contract helpers shared by the loop, the executors' workers and deploy
# ---------------------------------------------------------------------------


def describe(pm: Any, hook: str) -> str:
    """``searcher (module.Class)`` for the component(s) implementing ``hook``."""
    parts = []
    for impl in getattr(pm.hook, hook).get_hookimpls():
        obj = impl.plugin
        what = obj.__name__ if inspect.ismodule(obj) else f"{type(obj).__module__}.{type(obj).__name__}"
        parts.append(f"{impl.plugin_name} ({what})")
    return " and ".join(parts) or f"(no {hook} implementation)"


def check_declared_metrics(pm: Any, components: Mapping[str, Any], objectives: Mapping[str, str], constraints: Mapping[str, Any], ctx: RunContext) -> Dict[str, List[str]]:
    """Collect every evaluator's and backend's ``metric_names`` and check that the
    objectives and constraints name only those; returns ``{component: names}``.

    Raises :class:`hwaml.config.ConfigError` naming the key and the known metrics,
    or :class:`PluginError` for an evaluator/backend that declares nothing.
    """
    declared: Dict[str, List[str]] = {}
    for name, obj in components.items():
        if obj is None or not (name == "evaluator" or name.startswith("backend")):
            continue
        impl = [h for h in pm.get_hookcallers(obj) or [] if h.name == "metric_names"]
        if not impl:
            raise PluginError(f"{name} ({type(obj).__module__}.{type(obj).__name__}) does not declare its metrics: implement the metric_names(ctx) hook")
        names = [i.function(*[{"ctx": ctx}[a] for a in i.argnames]) for i in impl[0].get_hookimpls() if i.plugin is obj]
        declared[name] = sorted(str(n) for n in (names[0] or []))
    owners: Dict[str, str] = {}
    for comp, names in declared.items():
        if not comp.startswith("backend"):
            continue
        for n in names:
            if n in owners:
                raise MetricConflict(
                    f"cost metric {n!r} is declared by both {owners[n]!r} ({type(components[owners[n]]).__name__}) and {comp!r} ({type(components[comp]).__name__}); drop one backend"
                )
            owners[n] = comp
    known = sorted({n for names in declared.values() for n in names})
    for key, names in (("objectives", list(objectives)), ("constraints", list(constraints))):
        for metric in names:
            if metric not in known:
                import difflib

                from .config import ConfigError  # imports Hydra: only on the error path

                close = difflib.get_close_matches(metric, known, n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                who = "; ".join(f"{c}: {', '.join(n) or '-'}" for c, n in declared.items())
                raise ConfigError(f"{key}.{metric}", f"no component of this run reports {metric!r}{hint} (known metrics: {who})")
    return declared
