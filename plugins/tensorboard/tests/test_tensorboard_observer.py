"""The TensorBoard observer, read back with TensorBoard's own EventAccumulator."""

import json
import sqlite3

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from hwaml import Candidate, RunSummary, Trial
from hwaml.builtin import AnalyticEvaluator
from hwaml.testing import make_context
from hwaml_tensorboard import TensorBoardObserver


def _load(path):
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def _hparams(acc, tag):
    return plugin_data_pb2.HParamsPluginData.FromString(acc.PluginTagToContent("hparams")[tag])


def test_hwaml_run_writes_scalars_per_trial_and_the_hparams_view(tmp_path, cli):
    run_dir = tmp_path / "r"
    out = cli(
        "run", "evaluator=analytic", "evaluator.fidelity_steps=3", "budget.trials=5", "backend=[analytic_cost]",
        "+objectives.accuracy=max", "+objectives.latency_ms=min", "+observer=tensorboard", f"hydra.run.dir={run_dir}", "plots=false", cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "tensorboard observer" not in out.stderr + out.stdout  # no warning: everything was written
    con = sqlite3.connect(run_dir / "trials.sqlite")
    stored = {n: (json.loads(c), json.loads(m), json.loads(k), json.loads(i)) for n, c, m, k, i in con.execute("SELECT number, config, metrics, cost, info FROM trials")}
    root = _load(run_dir / "tensorboard")
    acc = root.Scalars("objective/accuracy")
    assert [s.step for s in acc] == sorted(stored)
    assert [s.value for s in acc] == pytest.approx([stored[n][1]["accuracy"] for n in sorted(stored)], rel=1e-6)
    assert [s.value for s in root.Scalars("cost/latency_ms")] == pytest.approx([stored[n][2]["latency_ms"] for n in sorted(stored)], rel=1e-6)
    best = [s.value for s in root.Scalars("best/latency_ms")]
    assert best == pytest.approx(list(np.minimum.accumulate([stored[n][2]["latency_ms"] for n in sorted(stored)])), rel=1e-6)

    exp = _hparams(root, "_hparams_/experiment").experiment
    infos = {h.name: h for h in exp.hparam_infos}
    assert {"resolution", "width", "blocks.length", "lr", "optimizer", "status"} <= set(infos)
    assert infos["width"].domain_interval.max_value > infos["width"].domain_interval.min_value
    from hwaml.builtin.analytic import nas_toy_space

    assert [v.number_value for v in infos["resolution"].domain_discrete.values] == nas_toy_space().describe()["resolution"]["choices"]
    assert {v.string_value for v in infos["optimizer"].domain_discrete.values} == {"sgd", "adam"}
    assert [m.name.tag for m in exp.metric_infos][:2] == ["accuracy", "latency_ms"]

    for n, (config, metrics, cost, info) in stored.items():
        run = _load(run_dir / "tensorboard" / f"trial_{n:05d}")
        start = _hparams(run, "_hparams_/session_start_info").session_start_info
        assert start.hparams["resolution"].number_value == config["resolution"]
        assert start.hparams["blocks.length"].number_value == len(config["blocks"])
        assert start.hparams["status"].string_value == "complete"
        assert _hparams(run, "_hparams_/session_end_info").session_end_info.status == api_pb2.STATUS_SUCCESS
        assert run.Scalars("accuracy")[-1].value == pytest.approx(metrics["accuracy"], rel=1e-6)
        curve = run.Scalars("intermediate/accuracy")
        assert [(s.step, round(s.value, 5)) for s in curve] == [(s, round(v, 5)) for s, v in info["intermediate"]]


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_failed_and_pruned_trials_end_their_sessions_as_failures(tmp_path, writer):
    ctx = make_context(tmp_path, evaluator=AnalyticEvaluator(), objectives={"accuracy": "max"})
    rng = np.random.default_rng(0)
    obs = TensorBoardObserver(log_dir=str(tmp_path / "tb"), writer=writer)
    obs.trial_completed(Trial(0, Candidate(ctx.space.sample(rng), 0), "pruned", {"accuracy": 0.2}, {}, None, 0.1, {"intermediate": [[0, 0.1], [1, 0.2]]}), ctx)
    obs.trial_completed(Trial(1, Candidate(ctx.space.sample(rng), 1), "failed", {}, {}, "ValueError: x", 0.1, {}), ctx)
    obs.run_finished(RunSummary(str(tmp_path), 2, {}, None, (), "budget", {}), ctx)
    assert obs.queue.handled == 3 and obs.queue.failed == 0
    for n, status in ((0, "pruned"), (1, "failed")):
        run = _load(tmp_path / "tb" / f"trial_{n:05d}")
        assert _hparams(run, "_hparams_/session_start_info").session_start_info.hparams["status"].string_value == status
        assert _hparams(run, "_hparams_/session_end_info").session_end_info.status == api_pb2.STATUS_FAILURE
    assert [s.step for s in _load(tmp_path / "tb" / "trial_00000").Scalars("intermediate/accuracy")] == [0, 1]
    root = _load(tmp_path / "tb")
    assert "objective/accuracy" not in root.Tags()["scalars"]  # nothing complete, nothing on the objective curve
    assert [s.step for s in root.Scalars("trial/duration_s")] == [0, 1]


def test_an_unwritable_log_dir_is_a_warning(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ctx = make_context(tmp_path, evaluator=AnalyticEvaluator(), objectives={"accuracy": "max"})
    obs = TensorBoardObserver(log_dir=str(blocker / "tb"))
    obs.trial_completed(Trial(0, Candidate(ctx.space.sample(np.random.default_rng(0)), 0), "complete", {"accuracy": 0.5}, {}, None, 0.1, {}), ctx)
    with caplog.at_level("WARNING", logger="hwaml"):
        obs.run_finished(RunSummary(str(tmp_path), 1, {}, None, (), "budget", {}), ctx)
    assert "tensorboard observer" in caplog.text and "not recorded" in caplog.text


def test_without_trial_runs_only_the_root_scalars_are_written(tmp_path):
    ctx = make_context(tmp_path, evaluator=AnalyticEvaluator(), objectives={"accuracy": "max"})
    rng = np.random.default_rng(0)
    obs = TensorBoardObserver(log_dir=str(tmp_path / "tb"), trial_runs=False)
    for n, acc in enumerate([0.5, 0.4, 0.7]):
        obs.trial_completed(Trial(n, Candidate(ctx.space.sample(rng), n), "complete", {"accuracy": acc}, {}, None, 0.1, {"intermediate": [[0, acc]]}), ctx)
    obs.run_finished(RunSummary(str(tmp_path), 3, {}, None, (), "budget", {}), ctx)
    assert [p.name for p in (tmp_path / "tb").iterdir() if p.is_dir()] == []
    root = _load(tmp_path / "tb")
    assert [s.value for s in root.Scalars("best/accuracy")] == pytest.approx([0.5, 0.5, 0.7])
    with pytest.raises(KeyError):
        root.PluginTagToContent("hparams")
