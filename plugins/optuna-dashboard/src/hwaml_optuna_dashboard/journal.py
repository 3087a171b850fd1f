"""Mirror an hwaml run into an Optuna journal file that optuna-dashboard reads.

One Optuna study per hwaml run (``<run dir>/optuna.journal``; the core's own
``pruning.journal`` is a different file): the run's objectives are the study's
directions (several objectives: the dashboard draws the Pareto front), each
trial's parameters carry the distributions of the run's search space, cost
metrics and constraint bounds are user attributes, the constraints are also
Optuna's ``constraints`` system attribute (value <= 0 is satisfied, so the
dashboard shows feasibility), intermediate values are the trial's reports, and
pruned / failed / infeasible trials keep their states.

As for every tracker, the hook only queues the trial; a background thread
writes the journal.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import OrderedDict
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from hwaml import RunContext, RunSummary, Trial, hookimpl
from hwaml.constraints import normalise_constraints

from hwaml.background import make_queue
from hwaml.background import finite_metrics as _finite

log = logging.getLogger("hwaml.optuna_journal")

JOURNAL_NAME = "optuna.journal"
#: Optuna's system attribute for constraint values (<= 0: satisfied), read by its
#: samplers and by optuna-dashboard
CONSTRAINTS_KEY = "constraints"
_PLAIN = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class _TrialEvent:
    trial: Trial
    ctx: RunContext


@dataclass(frozen=True)
class _FinishEvent:
    summary: RunSummary
    ctx: RunContext
    always = True


class _Distributions:
    """Answers ``SearchSpace.suggest``'s ``suggest_*`` calls from a stored
    configuration, recording each parameter's Optuna distribution (the same
    replay the core's Optuna searcher does on resume). Distributions are built
    once per parameter and reused from ``cache`` (trials share them)."""

    def __init__(self, flat: Mapping[str, Any], cache: Dict[Any, Any]):
        self.flat = flat
        self.cache = cache
        self.params: Dict[str, Any] = {}
        self.distributions: Dict[str, Any] = {}
        self.as_text: set = set()  # categorical parameters whose choices Optuna gets as their text

    def _dist(self, key: Any, make: Any) -> Any:
        dist = self.cache.get(key)
        if dist is None:
            dist = self.cache[key] = make()
        return dist

    def suggest_categorical(self, name, choices):
        import optuna.distributions as D

        choices = tuple(choices)
        value = self.flat[name]
        try:
            key = (name, "categorical", choices)
            hash(key)
        except TypeError:  # unhashable choices (lists): keyed by their text
            key = (name, "categorical", repr(choices))
        plain = all(isinstance(c, _PLAIN) for c in choices)
        # Optuna's categorical choices are plain scalars: other choices (tuples, lists) as their text
        dist = self._dist(key, lambda: D.CategoricalDistribution(list(choices) if plain else [repr(c) for c in choices]))
        self.params[name] = value if plain else repr(value)
        if not plain:
            self.as_text.add(name)
        self.distributions[name] = dist
        return value

    def suggest_int(self, name, low, high, step=1, log=False):
        import optuna.distributions as D

        dist = self._dist((name, "int", low, high, step, log), lambda: D.IntDistribution(int(low), int(high), step=int(step), log=bool(log)))
        self.params[name] = self.flat[name]
        self.distributions[name] = dist
        return self.flat[name]

    def suggest_float(self, name, low, high, log=False, step=None):
        import optuna.distributions as D

        dist = self._dist((name, "float", low, high, log, step), lambda: D.FloatDistribution(float(low), float(high), log=bool(log), step=step))
        self.params[name] = self.flat[name]
        self.distributions[name] = dist
        return self.flat[name]


_DIST_CACHE: Dict[Any, Any] = {}
_JSON_CACHE: Dict[int, str] = {}
#: id(space) -> (the space, kept so the id is not reused; parameter name -> (distribution, stored as text?)),
#: for the most recent spaces only (one per run; a long process, a test session, runs many)
_BY_NAME: "OrderedDict[int, Tuple[Any, Dict[str, Tuple[Any, bool]]]]" = OrderedDict()
_BY_NAME_MAX = 8


def params_and_distributions(config: Mapping[str, Any], space: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """A configuration as Optuna params and distributions, from the run's space.

    The first configuration with a parameter replays it through ``space.suggest``
    (define-by-run: which parameters exist depends on earlier choices); a parameter's
    distribution is fixed in a study (Optuna refuses two for one name), so later
    configurations whose names are all known are answered from that record."""
    flat = space.flatten(config)
    entry = _BY_NAME.get(id(space))
    if entry is None or entry[0] is not space:
        entry = _BY_NAME[id(space)] = (space, {})
        while len(_BY_NAME) > _BY_NAME_MAX:
            _BY_NAME.popitem(last=False)
    else:
        _BY_NAME.move_to_end(id(space))
    known = entry[1]
    if flat and all(k in known for k in flat):
        params, dists = {}, {}
        for k, v in flat.items():
            dist, as_text = known[k]
            params[k] = repr(v) if as_text else v
            dists[k] = dist
        return params, dists
    replay = _Distributions(flat, _DIST_CACHE)
    space.suggest(replay)
    for k, dist in replay.distributions.items():
        known[k] = (dist, k in replay.as_text)
    return replay.params, replay.distributions


def constraint_values(values: Mapping[str, float], constraints: Mapping[str, Any]) -> Optional[List[float]]:
    """Optuna's convention: one number per bound, <= 0 when satisfied
    (``metric - max``, ``min - metric``); ``None`` when a bounded metric is missing."""
    out: List[float] = []
    for name, bound in normalise_constraints(constraints).items():
        if name not in values or not math.isfinite(float(values[name])):
            return None
        v = float(values[name])
        if "max" in bound:
            out.append(v - bound["max"])
        if "min" in bound:
            out.append(bound["min"] - v)
    return out


def trial_fields(trial: Trial, ctx: RunContext) -> Dict[str, Any]:
    """What Optuna records of one hwaml trial: state, values, params with their
    distributions, user and system attributes, intermediate values."""
    from optuna.trial import TrialState

    objectives = list(dict(ctx.objectives))
    metrics, cost = _finite(trial.metrics), _finite(trial.cost)
    merged = {**cost, **metrics}
    intermediate = {int(s): float(v) for s, v in (trial.info or {}).get("intermediate", []) or [] if math.isfinite(float(v))}
    values: Optional[List[float]] = None
    if trial.status == "complete" and objectives and all(k in merged for k in objectives):
        state, values = TrialState.COMPLETE, [merged[k] for k in objectives]
    elif trial.status == "pruned":
        state = TrialState.PRUNED
        if len(objectives) == 1 and intermediate:
            values = [intermediate[max(intermediate)]]
    else:
        # infeasible (not evaluated), failed, or complete without an objective's value
        state = TrialState.FAIL
    if ctx.space is not None:
        params, distributions = params_and_distributions(trial.config, ctx.space)
    else:
        params, distributions = {}, {}
    user_attrs: Dict[str, Any] = {
        "hwaml_trial": trial.number,
        "hwaml_status": trial.status,
        "origin": trial.candidate.origin or "",
        "duration_s": float(trial.duration_s),
        **{f"cost.{k}": v for k, v in cost.items()},
        **{f"metric.{k}": v for k, v in metrics.items() if k not in objectives},
    }
    if ctx.space is None:
        user_attrs["config"] = dict(trial.config)
    if trial.error:
        user_attrs["error"] = trial.error.strip().splitlines()[-1][:500] if trial.error.strip() else ""
    system_attrs: Dict[str, Any] = {}
    bounds = normalise_constraints(ctx.constraints)
    if bounds:
        cv = constraint_values(merged, bounds)
        if cv is not None:
            system_attrs[CONSTRAINTS_KEY] = cv
    return dict(state=state, values=values, params=params, distributions=distributions, user_attrs=user_attrs, system_attrs=system_attrs, intermediate_values=intermediate)


def frozen_trial(trial: Trial, ctx: RunContext) -> Any:
    """One hwaml trial as an Optuna ``FrozenTrial`` (what ``study.add_trial`` takes)."""
    import optuna

    return optuna.trial.create_trial(**trial_fields(trial, ctx))


#: Optuna's journal operation code for a new trial (``JournalOperation.CREATE_TRIAL``)
_CREATE_TRIAL = 4


def _distribution_json(dist: Any) -> str:
    from optuna.distributions import distribution_to_json

    text = _JSON_CACHE.get(id(dist))
    if text is None:  # the cached distributions live as long as the module: their ids are stable
        text = _JSON_CACHE[id(dist)] = distribution_to_json(dist)
    return text


def trial_log(trial: Trial, ctx: RunContext, study_id: int, worker_id: str, distributions: bool = True) -> Dict[str, Any]:
    """One hwaml trial as a journal record, the same record ``JournalStorage.create_new_trial``
    writes for ``study.add_trial``: records of a batch of trials are then appended in
    one locked write (one fsync) instead of one write and one re-read of the journal per trial."""
    from datetime import datetime, timedelta, timezone

    f = trial_fields(trial, ctx)
    dists = f["distributions"]
    end = datetime.now(tz=timezone.utc)
    start = end - timedelta(seconds=float(trial.duration_s or 0.0))
    values = f["values"]
    log = {
        "op_code": _CREATE_TRIAL,
        "worker_id": worker_id,
        "study_id": study_id,
        "datetime_start": start.isoformat(timespec="microseconds"),
        "datetime_complete": end.isoformat(timespec="microseconds"),
        "state": int(f["state"]),
        "value": values[0] if values is not None and len(values) == 1 else None,
        "values": values if values is not None and len(values) > 1 else None,
        "params": {k: dists[k].to_internal_repr(v) for k, v in f["params"].items()},
        "user_attrs": f["user_attrs"],
        "system_attrs": f["system_attrs"],
        "intermediate_values": {str(k): v for k, v in f["intermediate_values"].items()},
    }
    if distributions:
        log["distributions"] = {k: _distribution_json(d) for k, d in dists.items()}
    else:  # trial_line serialises them itself
        log["_distributions"] = dists
    return log


_FRAGMENTS: Dict[Tuple[Tuple[str, int], ...], str] = {}


def trial_line(trial: Trial, ctx: RunContext, study_id: int, worker_id: str) -> str:
    """:func:`trial_log` as the JSON line the journal stores. The record's largest part,
    the parameters' distributions (JSON inside JSON), is the same for every trial with
    the same parameters: it is serialised once per set and spliced in."""
    import json

    log = trial_log(trial, ctx, study_id, worker_id, distributions=False)
    dists = log.pop("_distributions")
    key = tuple((k, id(d)) for k, d in dists.items())
    frag = _FRAGMENTS.get(key)
    if frag is None:  # the distributions are the cached, long-lived objects: their ids are stable
        frag = _FRAGMENTS[key] = json.dumps({k: _distribution_json(d) for k, d in dists.items()}, separators=(",", ":"))
    head = json.dumps(log, separators=(",", ":"))
    return head[:-1] + ',"distributions":' + frag + "}"


def append_lines(path: Path | str, lock: Any, lines: List[str]) -> None:
    """Append journal lines as ``JournalFileBackend.append_logs`` does: under the
    journal's file lock, one write, one fsync."""
    import os

    lock.acquire()
    try:
        with open(path, "ab") as f:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()


def open_backend(path: Path | str, lock: Any = None) -> Any:
    """Optuna's journal file backend on ``path`` with ``lock`` (default: a new
    ``JournalFileOpenLock``, which works on every file system)."""
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    return JournalFileBackend(str(path), lock_obj=lock if lock is not None else JournalFileOpenLock(str(path)))


def open_storage(path: Path | str) -> Any:
    """An Optuna JournalStorage on ``path`` (a file lock makes concurrent readers safe)."""
    from optuna.storages import JournalStorage

    return JournalStorage(open_backend(path))


class OptunaJournalObserver:
    """Mirrors the run's trials into ``<run dir>/optuna.journal`` (``+observer=optuna_journal``);
    watch it live with ``hwaml dashboard RUN_DIR``.

    :param path: journal file; relative paths are inside the run directory.
    :param study_name: ``None``: ``<cfg.name>/<run dir name>``.
    :param queue_size: trials held while the writer is behind; more are dropped (counted, warned).
    :param flush_timeout_s: how long the end of the run waits for the queue to drain.
    :param batch_window_s: after a trial arrives, wait this long for more and write them
        together (one locked append and one fsync for up to 500 trials): the dashboard
        lags by at most this much, and fast searches pay far less per trial.
    :param writer: ``thread`` (a background thread of the search's process) or ``process``
        (a writer process: the records are built and written on another core).
    """

    def __init__(self, path: str = JOURNAL_NAME, study_name: Optional[str] = None, queue_size: int = 10000, flush_timeout_s: float = 30.0, retry_after_s: float = 5.0, batch_window_s: float = 0.25, writer: str = "thread"):
        init = {k: v for k, v in locals().items() if k not in ("self", "writer")}
        if Path(path).name == "pruning.journal":
            raise ValueError("observer.optuna_journal.path: pruning.journal is the core's pruner journal; choose another file (default optuna.journal)")
        self.path = str(path)
        self.study_name = study_name
        self.flush_timeout_s = float(flush_timeout_s)
        if float(batch_window_s) < 0:
            raise ValueError(f"observer.optuna_journal.batch_window_s must be >= 0, got {batch_window_s}")
        self.queue = make_queue(writer, "optuna journal observer", self._handle, partial(OptunaJournalObserver, **init), maxsize=queue_size, batch_size=500, retry_after_s=retry_after_s, linger_s=batch_window_s, logger=log)
        self._study = None
        self._backend = None
        self._worker_id = f"hwaml-{uuid.uuid4()}"

    def journal_path(self, ctx: RunContext) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else Path(ctx.run_dir) / p

    def resolved_study_name(self, ctx: RunContext) -> str:
        if self.study_name:
            return str(self.study_name)
        name = "run"
        if ctx.cfg is not None:
            try:
                name = str(ctx.cfg.get("name") or "run")
            except (AttributeError, TypeError):
                pass
        return f"{name}/{Path(ctx.run_dir).name}"

    @hookimpl
    def trial_completed(self, trial: Trial, ctx: RunContext) -> None:
        self.queue.submit(_TrialEvent(trial, ctx))

    @hookimpl
    def run_finished(self, summary: RunSummary, ctx: RunContext) -> None:
        self.queue.submit(_FinishEvent(summary, ctx))
        self.queue.close(self.flush_timeout_s)

    # -- the background thread --------------------------------------------------------------

    def study(self, ctx: RunContext) -> Any:
        if self._study is None:
            import optuna
            from optuna.storages import JournalStorage

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            path = self.journal_path(ctx)
            path.parent.mkdir(parents=True, exist_ok=True)
            objectives = dict(ctx.objectives) or {"value": "max"}
            directions = ["maximize" if d == "max" else "minimize" for d in objectives.values()]
            from optuna.storages.journal import JournalFileOpenLock

            self._path, self._lock_obj = str(path), JournalFileOpenLock(str(path))  # the backend's and our appends' lock
            self._backend = open_backend(path, self._lock_obj)
            storage = JournalStorage(self._backend)
            study = optuna.create_study(storage=storage, study_name=self.resolved_study_name(ctx), directions=directions, load_if_exists=True)
            self._study_id = storage.get_study_id_from_name(study.study_name)
            with warnings.catch_warnings():  # experimental since Optuna 3.2 (and still the way to name objectives)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(objectives))  # the dashboard labels its axes with them
            study.set_user_attr("hwaml_run_dir", str(Path(ctx.run_dir).resolve()))
            study.set_user_attr("objectives", dict(objectives))
            study.set_user_attr("constraints", normalise_constraints(ctx.constraints))
            self._study = study
        return self._study

    def _handle(self, batch: List[Any]) -> None:
        study = self.study(batch[0].ctx)
        lines = [trial_line(e.trial, e.ctx, self._study_id, self._worker_id) for e in batch if isinstance(e, _TrialEvent)]
        if lines:
            append_lines(self._path, self._lock_obj, lines)
        for e in batch:
            if isinstance(e, _FinishEvent):
                s = e.summary
                study.set_user_attr("stopped_because", s.stopped_because or "")
                study.set_user_attr("counts", dict(s.counts))
                study.set_user_attr("best_trial", s.best)
                study.set_user_attr("pareto_front", list(s.pareto))
