"""One trial: cost (every backend, merged) -> constraints -> evaluate -> outcome.

:func:`execute_trial` never raises for a plugin error: an exception inside
``cost`` or ``evaluate``, a NaN metric, an objective nobody reported or a trial
over its time limit becomes a failed trial with the reason stored, and the search
goes on. Only a configuration error (two backends reporting the same metric)
propagates and stops the run. The loop and every executor call it, in the
loop's process or in a worker.
"""

from __future__ import annotations

import json
import signal
from collections import OrderedDict
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from .constraints import normalise_constraints, violations
from .plugins import PluginError, implementers
from .pruning import Reporter, is_pruned_exception
from .store import finite_or_nan_keys
from .types import BuiltModel, Candidate, CostReport, EvalResult, RunContext, Trial, TrialStatus

__all__ = [
    "MetricConflict",
    "TrialTimeout",
    "TrialOutcome",
    "merge_costs",
    "collect_costs",
    "execute_trial",
    "finite_or_nan_keys",
    "apply_thread_limit",
    "model_builder",
    "wire_context",
]


class MetricConflict(PluginError):
    """Two backends report the same cost metric: a configuration error that stops the run."""


class TrialTimeout(Exception):
    """A trial ran past ``budget.trial_timeout_s`` (raised inside it by an alarm)."""


@dataclass(frozen=True)
class TrialOutcome:
    status: str
    metrics: Dict[str, float] = field(default_factory=dict)
    cost: Dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None
    duration_s: float = 0.0
    info: Dict[str, Any] = field(default_factory=dict)


def merge_costs(reports: List[Tuple[str, Optional[CostReport]]]) -> CostReport:
    """Merge cost reports into one; a metric reported twice is an error naming both
    backends. The merged ``feasible`` is ``False`` if any backend said so, ``True``
    if all that had an opinion said so, else ``None``; ``info`` is keyed by source."""
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
    return CostReport(merged, source="+".join(sorted(set(owner.values()))), feasible=feasible, info=info)


_NO_COST = CostReport({}, source="")


def collect_costs(pm: Any, candidate: Candidate, ctx: RunContext) -> CostReport:
    """Call ``cost`` through ``pm.hook`` (so wrapper implementations apply) and merge."""
    hook = pm.hook.cost
    if not hook.get_hookimpls():
        return _NO_COST
    reports = hook(candidate=candidate, ctx=ctx)
    named = []
    for i, rep in enumerate(reports):
        if rep is not None and not isinstance(rep, CostReport):
            raise PluginError(f"a cost implementation ({', '.join(implementers(pm, 'cost'))}) returned {type(rep).__name__}, expected CostReport")
        if rep is not None and not rep.source:
            raise PluginError(f"a cost backend returned a CostReport without source (backends: {', '.join(implementers(pm, 'cost'))}); set source to the backend's name")
        named.append((f"backend#{i}", rep))
    return merge_costs(named)


# ---------------------------------------------------------------------------
# per-trial limits
# ---------------------------------------------------------------------------


class _NoAlarm:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NO_ALARM = _NoAlarm()


def _alarm(seconds: Optional[float]) -> Any:
    """Raise :class:`TrialTimeout` in this thread after ``seconds`` (SIGALRM)."""
    return _timed(seconds) if seconds else _NO_ALARM


@contextmanager
def _timed(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        raise PluginError("budget.trial_timeout_s needs trials in a process's main thread (the inline, local or ray executors); this one runs elsewhere")

    def fire(signum: int, frame: Any) -> None:
        raise TrialTimeout(f"trial exceeded budget.trial_timeout_s={seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def apply_thread_limit(threads: Optional[int]) -> None:
    """Limit this process's thread pools to ``threads``: the environment (for
    libraries imported later), BLAS/OpenMP pools already loaded (threadpoolctl)
    and torch's intra-op threads. Executor workers call it once at start, so that
    ``workers x threads`` does not oversubscribe the cores."""
    if not threads:
        return
    import os
    import sys

    n = int(threads)
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------
# one trial
# ---------------------------------------------------------------------------


def _numeric(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: float(v) if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) else v for k, v in metrics.items()}


def execute_trial(pm: Any, candidate: Candidate, ctx: RunContext, objectives: Mapping[str, str], timeout_s: Optional[float] = None) -> TrialOutcome:
    """Cost, constraint check and evaluation of one candidate."""
    t0 = time.perf_counter()
    constraints = normalise_constraints(ctx.constraints)
    cost: Dict[str, float] = {}
    metrics: Dict[str, Any] = {}
    info: Dict[str, Any] = {}
    # ctx.report / ctx.should_prune of this trial (hwaml.pruning)
    reporter = Reporter(candidate.number, ctx.pruning)
    ctx = replace(ctx, report=reporter.report, should_prune=reporter.should_prune)

    def out(status: str, error: Optional[str] = None) -> TrialOutcome:
        if reporter.history:
            info["intermediate"] = [[s, v] for s, v in reporter.history]
        watched = ctx.pruning.metric if ctx.pruning is not None else None
        value = metrics.get(watched) if watched else None
        try:
            reporter.finish(status, float(value) if isinstance(value, (int, float)) else None)
        except Exception:  # noqa: BLE001 - the pruning journal is advisory; the trial's record is the store
            info["pruning_error"] = traceback.format_exc(limit=2)
        return TrialOutcome(status, metrics, cost, error, time.perf_counter() - t0, info)

    try:
        with _alarm(timeout_s):
            report = collect_costs(pm, candidate, ctx)
            cost = dict(report.metrics)
            if report.info:
                info["cost"] = dict(report.info)
            bad = finite_or_nan_keys(cost)
            if bad:
                return out(TrialStatus.FAILED, f"cost metric(s) {bad} are NaN or infinite")
            broken = violations(cost, constraints)
            if report.feasible is False:
                broken.append("a backend reports the candidate does not fit")
            if broken:
                info["violations"] = broken
                return out(TrialStatus.INFEASIBLE)
            result = pm.hook.evaluate(candidate=candidate, ctx=ctx)
            if result is None:
                raise PluginError(f"no evaluator answered evaluate() (implementations: {implementers(pm, 'evaluate')})")
            if not isinstance(result, EvalResult):
                raise PluginError(f"evaluate returned {type(result).__name__}, expected EvalResult")
            metrics = _numeric(result.metrics)
            if result.info:
                info["eval"] = dict(result.info)
            if result.artifacts:
                info["artifacts"] = {str(k): str(v) for k, v in result.artifacts.items()}
        bad = finite_or_nan_keys(metrics)
        if bad:
            return out(TrialStatus.FAILED, f"metric(s) {bad} are NaN or infinite")
        everything = {**cost, **metrics}
        missing = [o for o in objectives if o not in everything]
        if missing:
            return out(TrialStatus.FAILED, f"objective(s) {missing} not reported (evaluator gave {sorted(metrics)}, backends gave {sorted(cost)})")
        late = violations(metrics, {k: v for k, v in constraints.items() if k not in cost})
        if late:
            info["violations"] = late
            return out(TrialStatus.INFEASIBLE)
        return out(TrialStatus.COMPLETE)
    except MetricConflict:
        raise
    except Exception as exc:  # noqa: BLE001 - sorted below: pruned, timed out or failed
        if is_pruned_exception(exc):
            info["pruned"] = str(exc) or type(exc).__name__
            if reporter.history:
                name = ctx.pruning.metric if ctx.pruning is not None else next(iter(objectives), None)
                if name is not None:
                    metrics[name] = reporter.last_value
            return out(TrialStatus.PRUNED)
        if isinstance(exc, TrialTimeout):
            return out(TrialStatus.FAILED, f"TrialTimeout: {exc}")
        return out(TrialStatus.FAILED, traceback.format_exc())


def model_builder(pm: Any, get_ctx: Any, cache_size: int = 64) -> Optional[Any]:
    """``build_model(candidate, trial=None) -> BuiltModel`` for ``ctx.build_model``,
    or ``None`` when no component of the run implements ``build_model`` (the
    evaluator is not an NN evaluator: NN backends then say so).

    Calls the ``build_model`` hook (the evaluator's); networks for costing
    (``trial=None``) are memoised per configuration, since several backends and
    the searcher's feasibility checks ask for the same candidate.
    """
    if not pm.hook.build_model.get_hookimpls():
        return None
    cache: "OrderedDict[str, BuiltModel]" = OrderedDict()

    def build(candidate: Candidate, trial: Optional[Trial] = None) -> BuiltModel:
        key = json.dumps(candidate.config, sort_keys=True, default=str)
        if trial is None and key in cache:
            cache.move_to_end(key)
            return cache[key]
        model = pm.hook.build_model(candidate=candidate, trial=trial, ctx=get_ctx())
        if not isinstance(model, BuiltModel):
            raise PluginError(f"build_model of {implementers(pm, 'build_model')} returned {type(model).__name__}, expected hwaml.BuiltModel")
        if trial is None:
            cache[key] = model
            if len(cache) > cache_size:
                cache.popitem(last=False)
        return model

    return build


def wire_context(pm: Any, ctx: RunContext, with_space: bool = False) -> RunContext:
    """``ctx`` with ``cost_fn`` (merged cost through ``pm``) and ``build_model`` bound,
    both seeing the returned context; with ``with_space`` the evaluator's
    ``search_space`` is asked first and put in ``ctx.space``. The executors'
    workers, ``hwaml deploy`` and :func:`hwaml.testing.make_context` wire their
    contexts this way (the loop memoises ``cost_fn`` itself)."""
    from dataclasses import replace

    holder: dict = {}
    wired = replace(ctx, cost_fn=lambda c: collect_costs(pm, c, holder["ctx"]), build_model=model_builder(pm, lambda: holder["ctx"]))
    holder["ctx"] = wired
    if with_space and pm.hook.search_space.get_hookimpls():
        wired = replace(wired, space=pm.hook.search_space(ctx=wired))
        holder["ctx"] = wired
    return wired
