"""The MLflow observer: one MLflow run per hwaml run, one nested run (or one
step of the parent run) per trial, the report's files and deploy artifacts at the end.

Every hook call only queues an event; a background thread talks to MLflow
(:class:`hwaml.background.BackgroundQueue`), so an MLflow server that is
down or slow costs the search nothing but warnings.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from hwaml import RunContext, RunSummary, Trial, hookimpl

from hwaml.background import make_queue
from hwaml.background import finite_metrics as _finite

log = logging.getLogger("hwaml.mlflow")

#: hwaml status -> the MLflow run status of the trial's nested run
RUN_STATUS = {"complete": "FINISHED", "infeasible": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
#: RunSummary.stopped_because -> the MLflow status of the parent run
STOP_STATUS = {"budget": "FINISHED", "searcher finished": "FINISHED", "interrupted": "KILLED"}
TRIAL_MODES = ("nested", "steps")

# MLflow's limits on one log_batch request and on one param value
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS, _MAX_ENTITIES = 1000, 100, 100, 1000
_MAX_PARAM_CHARS, _MAX_TAG_CHARS = 6000, 8000


@dataclass(frozen=True)
class _TrialEvent:
    trial: Trial
    ctx: RunContext
    at_ms: int


@dataclass(frozen=True)
class _FinishEvent:
    summary: RunSummary
    ctx: RunContext
    at_ms: int
    always = True  # handled even while the tracker is backing off: it closes the run


def flatten(value: Any, prefix: str = "", out: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Nested mappings/lists -> ``{"a.b.0.c": leaf}`` (MLflow params are flat)."""
    out = {} if out is None else out
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, (list, tuple)):
        if not value:
            out[prefix] = "[]"
        for i, v in enumerate(value):
            flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    else:
        out[prefix] = value
    return out


def trial_params(trial: Trial, ctx: RunContext) -> Dict[str, Any]:
    """The trial's configuration as flat params: the space's own names
    (``blocks.0.kernel``, ``blocks.length``) when the run has a space."""
    if ctx.space is not None:
        try:
            return dict(ctx.space.flatten(trial.config))
        except (KeyError, TypeError, ValueError, IndexError):  # a config the space cannot flatten (enqueued by hand): plain flattening
            pass
    return flatten(dict(trial.config))


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class MlflowObserver:
    """Logs an hwaml run to MLflow (``+observer=mlflow``).

    :param tracking_uri: MLflow tracking URI (``http://host:5000``,
        ``sqlite:///mlflow.db``, ``databricks`` ...). ``None``: ``$MLFLOW_TRACKING_URI``
        if set, else ``sqlite:///mlflow.db`` in the working directory (browse it
        with ``mlflow ui --backend-store-uri sqlite:///mlflow.db``).
    :param experiment: MLflow experiment name (created when missing).
    :param run_name: name of the parent run; ``None``: ``<cfg.name>-<run dir name>``.
    :param trials: ``nested`` (a nested run per trial: params, metrics, cost,
        status, intermediate values as metric steps) or ``steps`` (each trial is a
        step of the parent run's ``trial/<metric>`` series: far fewer requests).
    :param tags: extra tags of the parent run.
    :param log_artifacts: log ``pareto.png``, ``trials.csv``, ``best.json`` and
        deploy artifacts to the parent run at the end.
    :param queue_size: events held while MLflow is slow; more are dropped (counted, warned).
    :param flush_timeout_s: how long the end of the run waits for the queue to drain.
    :param request_timeout_s: per-request HTTP timeout (``MLFLOW_HTTP_REQUEST_TIMEOUT`` unless set).
    :param max_retries: HTTP retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` unless set).
    :param retry_after_s: after an error, events are skipped for this long before MLflow is tried again.
    :param batch_window_s: after a trial arrives, wait this long for more and send them
        together (``trials=steps``: one ``log_batch`` for up to 100 trials): MLflow lags by
        at most this much, and fast searches pay far less per trial.
    :param writer: ``thread`` (a background thread of the search's process) or
        ``process`` (a writer process: the MLflow client's CPU, about 35 us per metric
        for its request encoding, runs on another core; for searches of many
        millisecond trials).
    """

    def __init__(
        self,
        tracking_uri: Optional[str] = None,
        experiment: str = "hwaml",
        run_name: Optional[str] = None,
        trials: str = "nested",
        tags: Optional[Mapping[str, Any]] = None,
        log_artifacts: bool = True,
        queue_size: int = 10000,
        flush_timeout_s: float = 60.0,
        request_timeout_s: float = 10.0,
        max_retries: int = 1,
        retry_after_s: float = 30.0,
        batch_window_s: float = 0.25,
        writer: str = "thread",
    ):
        init = {k: v for k, v in locals().items() if k not in ("self", "writer")}
        if trials not in TRIAL_MODES:
            raise ValueError(f"observer.mlflow.trials must be one of {TRIAL_MODES}, got {trials!r}")
        if not experiment:
            raise ValueError("observer.mlflow.experiment must be a non-empty name")
        self.tracking_uri = tracking_uri
        self.experiment = str(experiment)
        self.run_name = run_name
        self.trials = trials
        self.tags = dict(tags or {})
        self.log_artifacts = bool(log_artifacts)
        self.flush_timeout_s = float(flush_timeout_s)
        self.request_timeout_s = float(request_timeout_s)
        self.max_retries = int(max_retries)
        if float(batch_window_s) < 0:
            raise ValueError(f"observer.mlflow.batch_window_s must be >= 0, got {batch_window_s}")
        self.writer = writer
        self.queue = make_queue(writer, "mlflow observer", self._handle, partial(MlflowObserver, **init), maxsize=queue_size, retry_after_s=retry_after_s, linger_s=batch_window_s, logger=log)
        self._client = None
        self._experiment_id: Optional[str] = None
        self.parent_run_id: Optional[str] = None
        self._best: Dict[str, float] = {}

    # -- hooks (the search's thread: queue only) ------------------------------------------

    @hookimpl
    def trial_completed(self, trial: Trial, ctx: RunContext) -> None:
        self.queue.submit(_TrialEvent(trial, ctx, int(time.time() * 1000)))

    @hookimpl
    def run_finished(self, summary: RunSummary, ctx: RunContext) -> None:
        self.queue.submit(_FinishEvent(summary, ctx, int(time.time() * 1000)))
        self.queue.close(self.flush_timeout_s)
        if self.writer == "process":  # the run was created in the writer process
            self.parent_run_id = self.queue.result.get("parent_run_id", self.parent_run_id)

    def writer_result(self) -> Dict[str, Any]:
        """What a writer process sends back when it closes."""
        return {"parent_run_id": self.parent_run_id}

    # -- the background thread --------------------------------------------------------------

    def resolved_uri(self) -> str:
        if self.tracking_uri:
            return str(self.tracking_uri)
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"

    def client(self):
        if self._client is None:
            # MLflow reads these per request; a user's own settings win
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(math.ceil(self.request_timeout_s)))))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.max_retries))
            # one "View run ... at" line per finished nested run would flood the search's output
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.resolved_uri())
        return self._client

    def _handle(self, batch: List[Any]) -> None:
        ctx = batch[0].ctx
        if self.parent_run_id is None:
            self._start(ctx, batch[0].at_ms)
        trials = [e for e in batch if isinstance(e, _TrialEvent)]
        if trials:
            self._log_trials(trials)
        for e in batch:
            if isinstance(e, _FinishEvent):
                self._finish(e)

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client()
        exp = client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return client.create_experiment(self.experiment)
        except MlflowException:  # created meanwhile by a parallel job of the same sweep
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    def _start(self, ctx: RunContext, at_ms: int) -> None:
        from mlflow.entities import Param

        self._experiment_id = self._experiment()
        run_dir = Path(ctx.run_dir)
        name = self.run_name or f"{_cfg_get(ctx.cfg, 'name', 'run')}-{run_dir.name}"
        tags = {
            "hwaml.run_dir": str(run_dir.resolve()),
            "hwaml.objectives": ",".join(f"{k}:{v}" for k, v in dict(ctx.objectives).items()),
            "mlflow.source.name": "hwaml run",
            **{str(k): str(v) for k, v in self.tags.items()},
        }
        run = self.client().create_run(self._experiment_id, start_time=at_ms, tags=tags, run_name=name)
        self.parent_run_id = run.info.run_id
        params = run_params(ctx)
        self._log_batch(self.parent_run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])

    def _log_trials(self, events: List[_TrialEvent]) -> None:
        from mlflow.entities import Metric, Param

        client = self.client()
        parent_metrics: List[Any] = []
        for e in events:
            t, ctx = e.trial, e.ctx
            values = {**_finite(t.cost), **_finite(t.metrics)}
            values["duration_s"] = float(t.duration_s)
            intermediate = [(int(s), float(v)) for s, v in (t.info or {}).get("intermediate", []) or [] if math.isfinite(float(v))]
            objective = next(iter(ctx.objectives), None)
            # the search as seen from the parent: each objective per trial, and the best so far
            for name, direction in dict(ctx.objectives).items():
                if name in values and t.status == "complete":
                    v = values[name]
                    best = self._best.get(name)
                    if best is None or (v > best if direction == "max" else v < best):
                        self._best[name] = v
                    parent_metrics.append(Metric(f"best/{name}", self._best[name], e.at_ms, t.number))
            if self.trials == "steps":
                parent_metrics.extend(Metric(f"trial/{k}", v, e.at_ms, t.number) for k, v in values.items())
                continue
            tags = {
                "mlflow.parentRunId": self.parent_run_id,
                "hwaml.trial": str(t.number),
                "hwaml.status": t.status,
                "hwaml.origin": t.candidate.origin or "",
            }
            if t.error:
                tags["hwaml.error"] = t.error[-_MAX_TAG_CHARS:]
            start_ms = e.at_ms - int(1000 * float(t.duration_s or 0.0))
            run = client.create_run(self._experiment_id, start_time=start_ms, tags=tags, run_name=f"trial {t.number}")
            metrics = [Metric(k, v, e.at_ms, 0) for k, v in values.items()]
            if objective is not None:
                metrics.extend(Metric(f"intermediate/{objective}", v, e.at_ms, s) for s, v in intermediate)
            params = [Param(k, _param_value(v)) for k, v in trial_params(t, ctx).items()]
            self._log_batch(run.info.run_id, metrics=metrics, params=params)
            client.set_terminated(run.info.run_id, status=RUN_STATUS.get(t.status, "FINISHED"), end_time=e.at_ms)
        if parent_metrics:
            self._log_batch(self.parent_run_id, metrics=parent_metrics)

    def _finish(self, e: _FinishEvent) -> None:
        from mlflow.entities import Metric

        client = self.client()
        s = e.summary
        counts = {f"trials_{k}": float(v) for k, v in dict(s.counts).items()}
        counts["trials"] = float(s.trials)
        self._log_batch(self.parent_run_id, metrics=[Metric(k, v, e.at_ms, 0) for k, v in counts.items()])
        client.set_tag(self.parent_run_id, "hwaml.stopped_because", s.stopped_because or "")
        client.set_tag(self.parent_run_id, "hwaml.best_trial", "" if s.best is None else str(s.best))
        client.set_tag(self.parent_run_id, "hwaml.pareto_front", ",".join(str(n) for n in s.pareto))
        if self.log_artifacts:
            for key, path in dict(s.files).items():
                p = Path(path)
                if not p.exists():
                    log.warning("mlflow observer: %s (%s) does not exist; not logged", key, p)
                    continue
                folder = str(Path(key).parent) if "/" in key else None
                if p.is_dir():
                    client.log_artifacts(self.parent_run_id, str(p), artifact_path=key)
                else:
                    client.log_artifact(self.parent_run_id, str(p), artifact_path=folder)
        client.set_terminated(self.parent_run_id, status=STOP_STATUS.get(s.stopped_because, "FAILED"), end_time=e.at_ms)

    def _log_batch(self, run_id: str, metrics: Sequence[Any] = (), params: Sequence[Any] = (), tags: Sequence[Any] = ()) -> None:
        client = self.client()
        for chunk in _chunks(list(metrics), _MAX_METRICS):
            client.log_batch(run_id, metrics=list(chunk))
        for chunk in _chunks(list(params), _MAX_PARAMS):
            client.log_batch(run_id, params=list(chunk))
        for chunk in _chunks(list(tags), _MAX_TAGS):
            client.log_batch(run_id, tags=list(chunk))


def _param_value(v: Any) -> str:
    s = str(v)
    return s if len(s) <= _MAX_PARAM_CHARS else s[: _MAX_PARAM_CHARS - 3] + "..."


def _cfg_get(cfg: Any, key: str, default: Any) -> Any:
    try:
        value = cfg.get(key) if cfg is not None else None
    except (AttributeError, TypeError):
        return default
    return default if value is None else value


def run_params(ctx: RunContext) -> Dict[str, Any]:
    """The parent run's params: the composed config (components, budget, seed,
    objectives, constraints), without Hydra's own node."""
    cfg = ctx.cfg
    out: Dict[str, Any] = {}
    if cfg is not None:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            container = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        except OmegaConfBaseException:  # an interpolation that only resolves inside Hydra (${hydra:...}): the raw config
            container = OmegaConf.to_container(cfg, resolve=False)
        container.pop("hydra", None)
        out.update(flatten(container))
    out.update({f"objectives.{k}": v for k, v in dict(ctx.objectives).items()})
    out.update(flatten(dict(ctx.constraints), "constraints"))
    out.setdefault("seed", ctx.seed)
    return {k[:250]: v for k, v in out.items()}
