"""The search loop: propose -> cost -> constraint check -> evaluate -> record.

One step asks the searcher for up to ``batch_size`` candidates, records them as
pending, runs each (cost on every backend, constraints, evaluation) through the
executor, commits each finished trial and tells the observers. A step's random
generator is derived from ``(seed, step)``, so the same seed gives the same
history, and a resumed run continues exactly where the killed one stopped.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .config import normalise_constraints
from .plugins import PluginError, build_run_manager, check_required, implementers
from .space import SearchSpace, SpaceError
from .store import TrialStore, finite_or_nan_keys
from .types import Candidate, CostReport, EvalResult, RunContext, Trial, TrialStatus

log = logging.getLogger("hwaml")


class RunError(RuntimeError):
    """A problem with the run itself (not with one trial): stops the run."""


class MetricConflict(PluginError):
    """Two backends report the same cost metric: a configuration error that stops the run."""


# ---------------------------------------------------------------------------
# one trial
# ---------------------------------------------------------------------------


def merge_costs(reports: Sequence[Tuple[str, Optional[CostReport]]]) -> Tuple[Dict[str, float], Optional[bool], Dict[str, Any]]:
    """Merge cost reports; a metric reported twice is an error naming both backends."""
    merged: Dict[str, float] = {}
    owner: Dict[str, str] = {}
    feasible: Optional[bool] = None
    info: Dict[str, Any] = {}
    for name, rep in reports:
        if rep is None:
            continue
        src = rep.source or name
        for k, v in rep.metrics.items():
            if k in merged:
                raise MetricConflict(f"cost metric {k!r} is reported by both {owner[k]!r} and {src!r}; drop one backend")
            merged[k] = float(v)
            owner[k] = src
        if rep.feasible is not None:
            feasible = rep.feasible if feasible is None else (feasible and rep.feasible)
        if rep.info:
            info[src] = dict(rep.info)
    return merged, feasible, info


def collect_costs(pm: Any, candidate: Candidate, ctx: RunContext) -> Tuple[Dict[str, float], Optional[bool], Dict[str, Any]]:
    """Call ``cost`` on every implementation, keeping who said what."""
    reports = []
    for impl in reversed(pm.hook.cost.get_hookimpls()):
        rep = impl.function(*[{"candidate": candidate, "ctx": ctx}[a] for a in impl.argnames])
        if rep is not None and not isinstance(rep, CostReport):
            raise PluginError(f"{impl.plugin_name}.cost returned {type(rep).__name__}, expected CostReport")
        reports.append((impl.plugin_name, rep))
    return merge_costs(reports)


def violations(values: Mapping[str, float], constraints: Mapping[str, Mapping[str, float]], only_present: bool = True) -> List[str]:
    """Human-readable violated constraints (``"peak_sram_kb=300 > 256"``)."""
    out = []
    for name, bound in constraints.items():
        if name not in values:
            if only_present:
                continue
            out.append(f"{name} is not reported")
            continue
        v = float(values[name])
        if "max" in bound and not v <= bound["max"]:
            out.append(f"{name}={v:g} > {bound['max']:g}")
        if "min" in bound and not v >= bound["min"]:
            out.append(f"{name}={v:g} < {bound['min']:g}")
    return out


@dataclass(frozen=True)
class TrialOutcome:
    status: str
    metrics: Dict[str, float] = field(default_factory=dict)
    cost: Dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None
    duration_s: float = 0.0
    info: Dict[str, Any] = field(default_factory=dict)


def execute_trial(pm: Any, candidate: Candidate, ctx: RunContext, objectives: Mapping[str, str]) -> TrialOutcome:
    """Cost, constraint check and evaluation of one candidate; never raises for
    a plugin error (it becomes a failed trial with the traceback)."""
    t0 = time.perf_counter()
    constraints = normalise_constraints(ctx.constraints)
    cost: Dict[str, float] = {}
    info: Dict[str, Any] = {}
    try:
        cost, feasible, cinfo = collect_costs(pm, candidate, ctx)
        if cinfo:
            info["cost"] = cinfo
        bad = finite_or_nan_keys(cost)
        if bad:
            return TrialOutcome(TrialStatus.FAILED, {}, cost, f"cost metric(s) {bad} are NaN or infinite", time.perf_counter() - t0, info)
        broken = violations(cost, constraints)
        if feasible is False:
            broken.append("a backend reports the candidate does not fit")
        if broken:
            info["violations"] = broken
            return TrialOutcome(TrialStatus.INFEASIBLE, {}, cost, None, time.perf_counter() - t0, info)
        result = pm.hook.evaluate(candidate=candidate, ctx=ctx)
        if result is None:
            raise PluginError(f"no evaluator answered evaluate() (implementations: {implementers(pm, 'evaluate')})")
        if not isinstance(result, EvalResult):
            raise PluginError(f"evaluate returned {type(result).__name__}, expected EvalResult")
        metrics = {k: float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v for k, v in result.metrics.items()}
        if result.info:
            info["eval"] = dict(result.info)
        if result.artifacts:
            info["artifacts"] = dict(result.artifacts)
        bad = finite_or_nan_keys(metrics)
        if bad:
            return TrialOutcome(TrialStatus.FAILED, metrics, cost, f"metric(s) {bad} are NaN or infinite", time.perf_counter() - t0, info)
        everything = {**cost, **metrics}
        missing = [o for o in objectives if o not in everything]
        if missing:
            return TrialOutcome(
                TrialStatus.FAILED,
                metrics,
                cost,
                f"objective(s) {missing} not reported (evaluator gave {sorted(metrics)}, backends gave {sorted(cost)})",
                time.perf_counter() - t0,
                info,
            )
        late = violations(metrics, {k: v for k, v in constraints.items() if k not in cost})
        if late:
            info["violations"] = late
            return TrialOutcome(TrialStatus.INFEASIBLE, metrics, cost, None, time.perf_counter() - t0, info)
        return TrialOutcome(TrialStatus.COMPLETE, metrics, cost, None, time.perf_counter() - t0, info)
    except MetricConflict:
        raise
    except Exception:  # noqa: BLE001 - a plugin failure is a failed trial, the search goes on
        return TrialOutcome(TrialStatus.FAILED, {}, cost, traceback.format_exc(), time.perf_counter() - t0, info)


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
    """Best complete trial on the first objective (ties: the earliest)."""
    ok = [t for t in trials if t.status == TrialStatus.COMPLETE]
    if not ok:
        return None
    name, direction = next(iter(objectives.items()))
    sign = 1.0 if direction == "max" else -1.0
    return max(ok, key=lambda t: (sign * t.value(name), -t.number))


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), 0x68776D6C])


# ---------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------


class Progress:
    """A tqdm bar: trials done, feasible, failed, best so far, ETA."""

    def __init__(self, enabled: bool, total: Optional[int], initial: int, objectives: Mapping[str, str]):
        self.objectives = dict(objectives)
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="hwaml", unit="trial", dynamic_ncols=True, leave=True)

    def update(self, history: Sequence[Trial], n: int = 1) -> None:
        if self.bar is None:
            return
        feasible = sum(t.status == TrialStatus.COMPLETE for t in history)
        failed = sum(t.status == TrialStatus.FAILED for t in history)
        infeasible = sum(t.status == TrialStatus.INFEASIBLE for t in history)
        best = best_trial(history, self.objectives)
        name = next(iter(self.objectives))
        postfix = {"ok": feasible, "infeasible": infeasible, "failed": failed}
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
        self.ctx = replace(self.ctx, cost_fn=self._cost_of)
        self._cost_cache: Dict[str, Dict[str, float]] = {}

    def _cost_of(self, candidate: Candidate) -> Dict[str, float]:
        """Merged cost of a candidate (memoised: searchers may ask repeatedly)."""
        import json

        key = json.dumps(candidate.config, sort_keys=True, default=str)
        if key not in self._cost_cache:
            if len(self._cost_cache) > 10000:
                self._cost_cache.clear()
            self._cost_cache[key] = collect_costs(self.pm, candidate, self.ctx)[0]
        return self._cost_cache[key]

    # The searcher gets a fresh context (and rng) for every step.
    def _step_ctx(self, step: int) -> RunContext:
        return replace(self.ctx, rng=step_rng(self.seed, step))

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
            try:
                from omegaconf import OmegaConf

                self.store.set_meta("config", OmegaConf.to_container(self.cfg, resolve=True))
            except Exception:  # noqa: BLE001 - a config that does not serialise is not fatal
                pass

    def _budget_left(self, done: int, elapsed: float) -> bool:
        if self.budget_trials is not None and done >= self.budget_trials:
            return False
        if self.budget_seconds is not None and elapsed >= self.budget_seconds:
            return False
        return True

    def run(self) -> RunResult:
        self._check_store()
        space = self.pm.hook.search_space(ctx=self.ctx)
        if not isinstance(space, SearchSpace):
            raise RunError(f"search_space() returned {type(space).__name__}; the evaluator {implementers(self.pm, 'search_space')} must return a SearchSpace")
        self.store.set_meta("space", space.describe())
        history = self.store.finished()
        elapsed_before = float(self.store.get_meta("elapsed_s", 0.0))
        t_start = time.perf_counter()
        executor = self.executor
        if executor is None:
            from .executors import InlineExecutor

            executor = InlineExecutor()
        executor.start(self.pm, self.ctx, self.objectives)
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
                else:
                    n = batch
                    if self.budget_trials is not None:
                        n = max(1, min(n, self.budget_trials - done))
                    sctx = self._step_ctx(step)
                    proposed = self.pm.hook.propose(space=space, history=list(history), n=n, ctx=sctx)
                    if not proposed:
                        stopped = "searcher finished"
                        break
                    proposed = list(proposed)[:n]
                    checked = []
                    for c in proposed:
                        if not isinstance(c, Candidate):
                            c = Candidate(dict(c))
                        try:
                            cfg = space.validate(c.config)
                        except SpaceError as exc:
                            raise RunError(f"searcher {implementers(self.pm, 'propose')} proposed an invalid candidate: {exc}") from exc
                        checked.append(Candidate(cfg, None, c.origin, dict(c.meta)))
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

    def _notify(self, trial: Trial) -> None:
        for impl in self.pm.hook.trial_completed.get_hookimpls():
            try:
                impl.function(*[{"trial": trial, "ctx": self.ctx}[a] for a in impl.argnames])
            except Exception:  # noqa: BLE001 - an observer never fails the run
                log.warning("trial_completed observer %s raised:\n%s", impl.plugin_name, traceback.format_exc())

    def close(self) -> None:
        self.store.close()
