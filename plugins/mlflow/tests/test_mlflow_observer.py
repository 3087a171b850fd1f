"""The MLflow observer against a real local tracking server, read back with MlflowClient."""

import logging
import time

import pytest
from mlflow.tracking import MlflowClient

from hwaml import Candidate, RunSummary, Trial
from hwaml.builtin import AnalyticEvaluator, RandomSearch
from hwaml.loop import SearchLoop
from hwaml.testing import make_context
from hwaml_mlflow import MlflowObserver
from hwaml_mlflow.tracker import trial_params


def _children(client, exp_id, parent_id):
    return client.search_runs([exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000)


def test_hwaml_run_logs_a_run_with_a_nested_run_per_trial(mlflow_server, tmp_path, cli):
    run_dir = tmp_path / "r"
    out = cli(
        "run", "evaluator=analytic", "evaluator.fidelity_steps=3", "budget.trials=4", "deploy.enabled=true",
        "backend=[analytic_cost]", "+objectives.accuracy=max", "+objectives.latency_ms=min",
        "+observer=mlflow", f"observer.mlflow.tracking_uri={mlflow_server}", "observer.mlflow.experiment=e2e",
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "View run" not in out.stdout
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("e2e")
    (parent,) = client.search_runs([exp.experiment_id], filter_string=f"tags.`hwaml.run_dir` = '{run_dir.resolve()}'")
    assert parent.info.status == "FINISHED" and parent.info.run_name == "run-r"
    assert parent.data.params["evaluator.fidelity_steps"] == "3" and parent.data.params["budget.trials"] == "4"
    assert parent.data.tags["hwaml.stopped_because"] == "budget"
    assert parent.data.metrics["trials_complete"] == 4
    kids = sorted(_children(client, exp.experiment_id, parent.info.run_id), key=lambda r: int(r.data.tags["hwaml.trial"]))
    assert [int(r.data.tags["hwaml.trial"]) for r in kids] == [0, 1, 2, 3]
    import sqlite3, json

    con = sqlite3.connect(run_dir / "trials.sqlite")
    stored = {n: (json.loads(c), json.loads(m), json.loads(i)) for n, c, m, i in con.execute("SELECT number, config, metrics, info FROM trials")}
    for r in kids:
        n = int(r.data.tags["hwaml.trial"])
        config, metrics, info = stored[n]
        assert r.info.status == "FINISHED" and r.data.tags["hwaml.status"] == "complete"
        assert r.data.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
        assert "latency_ms" in r.data.metrics and "duration_s" in r.data.metrics
        assert r.data.params["resolution"] == str(config["resolution"])
        assert r.data.params["blocks.length"] == str(len(config["blocks"]))
        history = client.get_metric_history(r.info.run_id, "intermediate/accuracy")
        assert len(info["intermediate"]) == 3
        assert [(m.step, round(m.value, 9)) for m in sorted(history, key=lambda m: m.step)] == [(s, round(v, 9)) for s, v in info["intermediate"]]
    best = client.get_metric_history(parent.info.run_id, "best/accuracy")
    assert sorted(m.step for m in best) == [0, 1, 2, 3]
    assert max(m.value for m in best) == pytest.approx(max(m[1]["accuracy"] for m in stored.values()))
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.png", "trials.csv", "best.json", "deploy"} <= top
    deployed = {a.path for a in client.list_artifacts(parent.info.run_id, "deploy/analytic")}
    assert deployed, "the deploy artifacts were not logged"
    local = client.download_artifacts(parent.info.run_id, "best.json", str(tmp_path))
    assert json.loads(open(local).read()) == json.loads((run_dir / "best.json").read_text())


def _trial(number, status, metrics=None, cost=None, error=None, intermediate=None):
    info = {"intermediate": intermediate} if intermediate else {}
    return Trial(number, Candidate({"resolution": 128, "blocks": [{"kernel": 3}]}, number), status, metrics or {}, cost or {}, error, 0.5, info)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_statuses_steps_mode_and_the_parent_status(mlflow_server, tmp_path, writer):
    ctx = make_context(tmp_path, objectives={"accuracy": "max"})
    obs = MlflowObserver(tracking_uri=mlflow_server, experiment="statuses", run_name=f"statuses-{writer}", writer=writer)
    trials = [
        _trial(0, "complete", {"accuracy": 0.5}, {"latency_ms": 3.0}),
        _trial(1, "infeasible", cost={"latency_ms": 99.0}),
        _trial(2, "failed", error="Traceback ...\nValueError: boom"),
        _trial(3, "pruned", {"accuracy": 0.2}, intermediate=[[1, 0.1], [2, 0.2]]),
    ]
    for t in trials:
        obs.trial_completed(t, ctx)
    obs.run_finished(RunSummary(str(tmp_path), 4, {"complete": 1, "infeasible": 1, "failed": 1, "pruned": 1}, 0, (0,), "interrupted", {}), ctx)
    assert obs.queue.handled == 5 and obs.queue.failed == 0
    client = MlflowClient(mlflow_server)
    parent = client.get_run(obs.parent_run_id)
    assert parent.info.status == "KILLED"
    exp_id = parent.info.experiment_id
    kids = {int(r.data.tags["hwaml.trial"]): r for r in _children(client, exp_id, obs.parent_run_id)}
    assert {n: r.info.status for n, r in kids.items()} == {0: "FINISHED", 1: "FINISHED", 2: "FAILED", 3: "KILLED"}
    assert {n: r.data.tags["hwaml.status"] for n, r in kids.items()} == {0: "complete", 1: "infeasible", 2: "failed", 3: "pruned"}
    assert kids[2].data.tags["hwaml.error"].endswith("ValueError: boom")
    assert kids[1].data.metrics["latency_ms"] == 99.0 and "accuracy" not in kids[1].data.metrics
    assert kids[0].data.params == {k: str(v) for k, v in trial_params(trials[0], ctx).items()}
    assert kids[0].data.params["blocks.0.kernel"] == "3"

    steps = MlflowObserver(tracking_uri=mlflow_server, experiment="statuses", run_name=f"steps-{writer}", trials="steps", writer=writer)
    for t in trials:
        steps.trial_completed(t, ctx)
    steps.run_finished(RunSummary(str(tmp_path), 4, {}, 0, (0,), "budget", {}), ctx)
    run = client.get_run(steps.parent_run_id)
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "trial/latency_ms")) == [0, 1]
    assert not _children(client, exp_id, steps.parent_run_id)


def _search(tmp_path, observer, trials=6):
    loop = SearchLoop({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "observer.mlflow": observer}, tmp_path, objectives={"accuracy": "max"}, budget_trials=trials)
    t0 = time.monotonic()
    try:
        res = loop.run()
    finally:
        loop.close()
    searched = time.monotonic() - t0
    t0 = time.monotonic()
    loop.finish(RunSummary(str(tmp_path), len(res.trials), {"complete": len(res.trials)}, None, (), "budget", {}))
    return res, searched, time.monotonic() - t0


def test_an_unreachable_tracker_is_a_warning_and_the_search_completes(tmp_path, closed_port_uri, caplog):
    obs = MlflowObserver(tracking_uri=closed_port_uri, max_retries=0, request_timeout_s=2, flush_timeout_s=20)
    with caplog.at_level(logging.WARNING, logger="hwaml"):
        res, searched, finished = _search(tmp_path, obs)
    assert len(res.trials) == 6 and all(t.ok for t in res.trials)
    text = caplog.text
    assert "mlflow observer" in text and "not recorded" in text
    assert obs.parent_run_id is None and obs.queue.handled == 0
    assert obs.queue.failed + obs.queue.dropped_down == 7


def test_a_hanging_tracker_never_stalls_the_search(tmp_path, silent_server, caplog):
    # a server that accepts and never answers; a queue of 2 so that events overflow
    obs = MlflowObserver(tracking_uri=silent_server, max_retries=0, request_timeout_s=30, flush_timeout_s=1.5, queue_size=2)
    with caplog.at_level(logging.WARNING, logger="hwaml"):
        res, searched, finished = _search(tmp_path, obs, trials=8)
    assert len(res.trials) == 8 and all(t.ok for t in res.trials)
    assert finished < 5, f"run_finished waited {finished:.1f} s (flush timeout 1.5 s)"
    assert searched < 20
    assert obs.queue.dropped_full >= 5
    assert "queue full" in caplog.text and "still busy" in caplog.text


def test_bad_options_name_the_key():
    with pytest.raises(ValueError, match="observer.mlflow.trials"):
        MlflowObserver(trials="per-epoch")
    with pytest.raises(TypeError, match="tracking_url"):
        MlflowObserver(tracking_url="http://x")
