"""The TensorBoard observer: scalars per trial and the HParams view.

Layout of ``log_dir`` (default ``<run dir>/tensorboard``; ``tensorboard --logdir`` it):

- the root run: ``objective/<name>``, ``best/<name>`` (best so far), ``cost/<metric>``
  and ``trial/duration_s`` against the trial number, and at the end the HParams
  experiment (every parameter's domain from the run's space, every metric);
- ``trial_<number>/``, one run per trial: the HParams session (the trial's
  flattened configuration, its status and origin; ended with success or
  failure), its metrics and cost as scalars (what the HParams table shows), and
  ``intermediate/<objective>`` against the step the evaluator reported.

Written as TensorBoard's own protobufs in its event-file format (no TensorFlow, no
torch; :mod:`hwaml_tensorboard.events`); the hook only queues, a background thread writes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hwaml import RunContext, RunSummary, Trial, hookimpl

from hwaml.background import make_queue
from hwaml.background import finite_metrics as _finite
from .events import EventFile

log = logging.getLogger("hwaml.tensorboard")

_PLAIN = (bool, int, float, str)


@dataclass(frozen=True)
class _TrialEvent:
    trial: Trial
    ctx: RunContext
    wall_time: float


@dataclass(frozen=True)
class _FinishEvent:
    summary: RunSummary
    ctx: RunContext
    wall_time: float
    always = True


class _Domains:
    """Records each parameter's domain while ``SearchSpace.suggest`` replays a configuration."""

    def __init__(self, flat: Mapping[str, Any], domains: Dict[str, Any]):
        self.flat = flat
        self.domains = domains

    def suggest_categorical(self, name, choices):
        self.domains[name] = ("discrete", list(choices))
        return self.flat[name]

    def suggest_int(self, name, low, high, step=1, log=False):
        self.domains[name] = ("int", int(low), int(high))
        return self.flat[name]

    def suggest_float(self, name, low, high, log=False, step=None):
        self.domains[name] = ("real", float(low), float(high))
        return self.flat[name]


def _flatten(value: Any, prefix: str, out: Dict[str, Any]) -> Dict[str, Any]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, (list, tuple)):
        out[f"{prefix}.length" if prefix else "length"] = len(value)
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    else:
        out[prefix] = value
    return out


def _hparam_value(v: Any) -> Any:
    if isinstance(v, _PLAIN):
        return v
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return repr(v)


def _scalar_event(tag: str, value: float, step: int, wall_time: float) -> Any:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
    return event_pb2.Event(wall_time=wall_time, step=int(step), summary=summary)


def _hparams_event(tag: str, plugin_data: Any, wall_time: float) -> Any:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import metadata

    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(plugin_data), tensor=metadata.NULL_TENSOR)
    return event_pb2.Event(wall_time=wall_time, step=0, summary=summary)


class TensorBoardObserver:
    """Writes an hwaml run as TensorBoard event files (``+observer=tensorboard``).

    :param log_dir: where; relative paths are inside the run directory.
    :param hparams: write the HParams view (sessions per trial, experiment at the end).
    :param trial_runs: write a run per trial (``trial_<number>/``: its metrics, its
        intermediate curve, its HParams session). ``False``: only the root run's
        scalars against the trial number (no folder and file per trial: the cheap
        mode for searches of thousands of millisecond trials; no HParams view).
    :param queue_size: events held while the writer is behind; more are dropped (counted, warned).
    :param flush_timeout_s: how long the end of the run waits for the queue to drain.
    :param writer: ``thread`` (a background thread of the search's process) or ``process``
        (a writer process: the event records are built and written on another core).
    """

    def __init__(self, log_dir: str = "tensorboard", hparams: bool = True, trial_runs: bool = True, queue_size: int = 10000, flush_timeout_s: float = 30.0, retry_after_s: float = 5.0, writer: str = "thread"):
        init = {k: v for k, v in locals().items() if k not in ("self", "writer")}
        self.log_dir = str(log_dir)
        self.trial_runs = bool(trial_runs)
        self.hparams = bool(hparams) and self.trial_runs  # sessions live in the per-trial runs
        self.flush_timeout_s = float(flush_timeout_s)
        self.queue = make_queue(writer, "tensorboard observer", self._handle, partial(TensorBoardObserver, **init), maxsize=queue_size, retry_after_s=retry_after_s, logger=log)
        self._root = None
        self._best: Dict[str, float] = {}
        self._domains: Dict[str, Any] = {}
        self._metrics: Dict[str, None] = {}

    def resolved_log_dir(self, ctx: RunContext) -> Path:
        p = Path(self.log_dir)
        return p if p.is_absolute() else Path(ctx.run_dir) / p

    @hookimpl
    def trial_completed(self, trial: Trial, ctx: RunContext) -> None:
        self.queue.submit(_TrialEvent(trial, ctx, time.time()))

    @hookimpl
    def run_finished(self, summary: RunSummary, ctx: RunContext) -> None:
        self.queue.submit(_FinishEvent(summary, ctx, time.time()))
        self.queue.close(self.flush_timeout_s)

    # -- the background thread --------------------------------------------------------------

    def _writer(self, path: Path) -> EventFile:
        return EventFile(path)

    def _handle(self, batch: List[Any]) -> None:
        if self._root is None:
            self._root = self._writer(self.resolved_log_dir(batch[0].ctx))
        finished = False
        for e in batch:
            if isinstance(e, _TrialEvent):
                self._trial(e)
            else:
                self._finish(e)
                finished = True
        if finished:
            self._root.close()
        else:
            self._root.flush()

    def _trial_hparams(self, trial: Trial, ctx: RunContext) -> Dict[str, Any]:
        config = dict(trial.config)
        if ctx.space is not None:
            try:
                flat = ctx.space.flatten(config)
                ctx.space.suggest(_Domains(flat, self._domains))
            except (KeyError, TypeError, ValueError, IndexError):  # a configuration outside the space (edited by hand): plain flattening
                flat = _flatten(config, "", {})
        else:
            flat = _flatten(config, "", {})
        out = {k: _hparam_value(v) for k, v in flat.items()}
        out["status"] = trial.status
        out["origin"] = trial.candidate.origin or ""
        return out

    def _trial(self, e: _TrialEvent) -> None:
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        t, ctx, now = e.trial, e.ctx, e.wall_time
        metrics, cost = _finite(t.metrics), _finite(t.cost)
        values = {**cost, **metrics, "duration_s": float(t.duration_s)}
        root = self._root
        for name, direction in dict(ctx.objectives).items():
            if t.status == "complete" and name in values:
                v = values[name]
                root.write(_scalar_event(f"objective/{name}", v, t.number, now))
                best = self._best.get(name)
                if best is None or (v > best if direction == "max" else v < best):
                    self._best[name] = v
                root.write(_scalar_event(f"best/{name}", self._best[name], t.number, now))
        for k, v in cost.items():
            root.write(_scalar_event(f"cost/{k}", v, t.number, now))
        root.write(_scalar_event("trial/duration_s", float(t.duration_s), t.number, now))
        if not self.trial_runs:
            return

        run = self._writer(self.resolved_log_dir(ctx) / f"trial_{t.number:05d}")
        try:
            start = now - float(t.duration_s or 0.0)
            if self.hparams:
                hp = self._trial_hparams(t, ctx)
                info = plugin_data_pb2.SessionStartInfo(group_name=f"trial_{t.number:05d}", start_time_secs=start)
                for k, v in hp.items():
                    if isinstance(v, bool):
                        info.hparams[k].bool_value = v
                    elif isinstance(v, (int, float)):
                        info.hparams[k].number_value = float(v)
                    else:
                        info.hparams[k].string_value = str(v)
                run.write(_hparams_event(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info), start))
            objective = next(iter(ctx.objectives), None)
            if objective is not None:
                for step, v in (t.info or {}).get("intermediate", []) or []:
                    if math.isfinite(float(v)):
                        run.write(_scalar_event(f"intermediate/{objective}", float(v), int(step), now))
            for k, v in values.items():
                self._metrics[k] = None
                run.write(_scalar_event(k, v, 0, now))
            if self.hparams:
                status = api_pb2.STATUS_SUCCESS if t.status == "complete" else api_pb2.STATUS_FAILURE
                end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=now)
                run.write(_hparams_event(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end), now))
        finally:
            run.close()

    def _finish(self, e: _FinishEvent) -> None:
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        if not self.hparams:
            return
        exp = api_pb2.Experiment(name=str(Path(e.ctx.run_dir).name), time_created_secs=e.wall_time)
        domains = dict(self._domains)
        for name in sorted(domains):
            kind = domains[name]
            info = exp.hparam_infos.add(name=name)
            if kind[0] == "discrete":
                choices = [_hparam_value(c) for c in kind[1]]
                if all(isinstance(c, bool) for c in choices):
                    info.type = api_pb2.DATA_TYPE_BOOL
                    info.domain_discrete.extend([bool(c) for c in choices])
                elif all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
                    info.type = api_pb2.DATA_TYPE_FLOAT64
                    info.domain_discrete.extend([float(c) for c in choices])
                else:
                    info.type = api_pb2.DATA_TYPE_STRING
                    info.domain_discrete.extend([str(c) for c in choices])
            else:
                info.type = api_pb2.DATA_TYPE_FLOAT64
                info.domain_interval.min_value, info.domain_interval.max_value = float(kind[1]), float(kind[2])
        statuses = ["complete", "infeasible", "failed", "pruned"]
        status = exp.hparam_infos.add(name="status", type=api_pb2.DATA_TYPE_STRING)
        status.domain_discrete.extend(statuses)
        exp.hparam_infos.add(name="origin", type=api_pb2.DATA_TYPE_STRING)
        objectives = list(dict(e.ctx.objectives))
        for name in objectives + [m for m in self._metrics if m not in objectives]:
            exp.metric_infos.add(name=api_pb2.MetricName(tag=name), display_name=name)
        self._root.write(_hparams_event(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=exp), e.wall_time))
