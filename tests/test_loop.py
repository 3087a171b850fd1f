"""The search loop: constraints, failures, NaN, determinism, budgets, Pareto, rules."""

import math
import sqlite3
import time

import pytest

from hwaml import CostReport, EvalResult, hookimpl
from hwaml.builtin import AnalyticCost, AnalyticEvaluator, OptunaSearcher, RandomSearch, RegularizedEvolution
from hwaml.loop import SearchLoop, pareto_mask
from hwaml.plugins import PluginError
from hwaml.testing import run_search


class CountingEvaluator(AnalyticEvaluator):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    @hookimpl
    def evaluate(self, candidate, ctx):
        self.calls.append(candidate.number)
        return super().evaluate(candidate=candidate, ctx=ctx)


def test_infeasible_candidates_are_recorded_not_evaluated(tmp_path):
    ev = CountingEvaluator()
    res = run_search(
        {"searcher": RandomSearch(), "evaluator": ev, "backend.cost": AnalyticCost()},
        tmp_path,
        trials=40,
        constraints={"latency_ms": 8.0},
    )
    infeasible = [t for t in res.trials if t.status == "infeasible"]
    complete = [t for t in res.trials if t.status == "complete"]
    assert infeasible and complete
    assert all(t.cost["latency_ms"] > 8.0 for t in infeasible)
    assert all(t.cost["latency_ms"] <= 8.0 for t in complete)
    assert sorted(ev.calls) == [t.number for t in complete]
    assert all(t.info["violations"] for t in infeasible)


def test_evolution_rejects_infeasible_children_before_proposing(tmp_path):
    ev = CountingEvaluator()
    res = run_search(
        {"searcher": RegularizedEvolution(population_size=8, tournament_size=3), "evaluator": ev, "backend.cost": AnalyticCost()},
        tmp_path,
        trials=40,
        constraints={"latency_ms": 8.0},
    )
    # with rejection through ctx.cost_fn nearly every proposal is feasible
    assert sum(t.status == "infeasible" for t in res.trials) <= 2
    assert res.best.cost["latency_ms"] <= 8.0


def test_min_and_max_bounds(tmp_path):
    res = run_search(
        {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.cost": AnalyticCost()},
        tmp_path,
        trials=30,
        constraints={"latency_ms": {"min": 3.0, "max": 30.0}},
    )
    for t in res.trials:
        ok = 3.0 <= t.cost["latency_ms"] <= 30.0
        assert (t.status == "complete") == ok


def test_constraint_on_an_evaluated_metric(tmp_path):
    res = run_search(
        {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator()},
        tmp_path,
        trials=30,
        constraints={"accuracy": {"min": 0.8}},
    )
    for t in res.trials:
        assert (t.status == "complete") == (t.metrics["accuracy"] >= 0.8)


def test_exceptions_become_failed_trials_and_the_search_goes_on(tmp_path):
    res = run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(fail_prob=0.3)}, tmp_path, trials=30)
    failed = [t for t in res.trials if t.status == "failed"]
    assert 3 <= len(failed) <= 20
    assert len(res.trials) == 30
    for t in failed:
        assert "Traceback" in t.error and "injected failure" in t.error
    # the traceback is durable
    con = sqlite3.connect(tmp_path / "trials.sqlite")
    stored = con.execute("SELECT error FROM trials WHERE status='failed'").fetchall()
    assert len(stored) == len(failed) and all("RuntimeError" in e for (e,) in stored)


def test_nan_metrics_fail_the_trial_naming_the_metric(tmp_path):
    res = run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(nan_prob=0.5)}, tmp_path, trials=20)
    failed = [t for t in res.trials if t.status == "failed"]
    assert failed
    assert all("accuracy" in t.error and "NaN" in t.error for t in failed)
    assert res.best is not None and math.isfinite(res.best.metrics["accuracy"])


class BrokenCost:
    @hookimpl
    def metric_names(self, ctx):
        return ["latency_ms"]

    @hookimpl
    def cost(self, candidate, ctx):
        raise ValueError("the cost model exploded")


def test_cost_exceptions_are_failed_trials(tmp_path):
    res = run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.bad": BrokenCost()}, tmp_path, trials=5)
    assert all(t.status == "failed" and "the cost model exploded" in t.error for t in res.trials)


def test_same_seed_same_history_different_seed_different(tmp_path):
    def run(d, seed):
        return run_search(
            {"searcher": RegularizedEvolution(population_size=5, tournament_size=2), "evaluator": AnalyticEvaluator(noise=0.01)},
            tmp_path / d,
            trials=25,
            seed=seed,
        )

    a, b, c = run("a", 1), run("b", 1), run("c", 2)
    assert [(t.config, dict(t.metrics)) for t in a.trials] == [(t.config, dict(t.metrics)) for t in b.trials]
    assert [t.config for t in a.trials] != [t.config for t in c.trials]


def test_budget_in_seconds_stops_the_run(tmp_path):
    loop = SearchLoop(
        {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(sleep_s=0.02)},
        tmp_path,
        objectives={"accuracy": "max"},
        budget_seconds=0.5,
    )
    t0 = time.perf_counter()
    res = loop.run()
    loop.close()
    assert time.perf_counter() - t0 < 3.0
    assert 5 <= len(res.trials) <= 30
    assert res.stopped_because == "budget"


def test_multi_objective_pareto_front(tmp_path):
    res = run_search(
        {"searcher": OptunaSearcher("nsga2"), "evaluator": AnalyticEvaluator("zdt1", dims=4)},
        tmp_path,
        trials=40,
    )
    front = res.pareto
    assert front
    ok = [t for t in res.trials if t.status == "complete"]
    for p in front:  # nobody dominates a front member
        for q in ok:
            assert not (q.metrics["f1"] <= p.metrics["f1"] and q.metrics["f2"] <= p.metrics["f2"] and (q.metrics["f1"], q.metrics["f2"]) != (p.metrics["f1"], p.metrics["f2"]))
    for q in ok:  # everyone off the front is dominated by a member
        if q in front:
            continue
        assert any(p.metrics["f1"] <= q.metrics["f1"] and p.metrics["f2"] <= q.metrics["f2"] for p in front)


def test_pareto_mask_small_example():
    import numpy as np

    vals = np.array([[1, 1], [2, 0], [0, 2], [0.5, 0.5], [2, 0]])
    assert pareto_mask(vals).tolist() == [True, True, True, False, True]


class OtherCost:
    @hookimpl
    def metric_names(self, ctx):
        return ["latency_ms"]

    @hookimpl
    def cost(self, candidate, ctx):
        return CostReport({"latency_ms": 1.0}, source="other")


def test_a_metric_from_two_backends_stops_the_run_naming_both(tmp_path):
    with pytest.raises(PluginError) as err:
        run_search(
            {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.a": AnalyticCost(), "backend.b": OtherCost()},
            tmp_path,
            trials=20,
        )
    msg = str(err.value)
    assert "'latency_ms'" in msg and "'backend.a' (AnalyticCost)" in msg and "'backend.b' (OtherCost)" in msg
    con = sqlite3.connect(tmp_path / "trials.sqlite")
    assert con.execute("SELECT COUNT(*) FROM trials WHERE status != 'pending'").fetchone()[0] == 0


def test_two_evaluators_is_an_error_naming_both(tmp_path):
    with pytest.raises(PluginError, match="'evaluator'.*'evaluator2'|'evaluator2'.*'evaluator'"):
        SearchLoop(
            {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "evaluator2": AnalyticEvaluator()},
            tmp_path,
            objectives={"accuracy": "max"},
            budget_trials=1,
        )


def test_missing_searcher_names_what_is_missing(tmp_path):
    with pytest.raises(PluginError, match="propose.*searcher"):
        SearchLoop({"evaluator": AnalyticEvaluator()}, tmp_path, objectives={"accuracy": "max"}, budget_trials=1)


def test_an_undeclared_objective_stops_the_run_before_any_trial(tmp_path):
    from hwaml.config import ConfigError

    with pytest.raises(ConfigError) as err:
        run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator()}, tmp_path, trials=2, objectives={"acc": "max"})
    assert err.value.key == "objectives.acc" and "did you mean 'accuracy'" in str(err.value)
    assert not (tmp_path / "trials.sqlite").exists() or sqlite3.connect(tmp_path / "trials.sqlite").execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0


def test_an_undeclared_constraint_stops_the_run_naming_the_known_metrics(tmp_path):
    from hwaml.config import ConfigError

    with pytest.raises(ConfigError) as err:
        run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.c": AnalyticCost()}, tmp_path, trials=2, constraints={"latency_mss": 3})
    msg = str(err.value)
    assert err.value.key == "constraints.latency_mss" and "latency_ms" in msg and "params_k" in msg and "accuracy" in msg


def test_a_declared_objective_nobody_reports_fails_trials_with_a_clear_message(tmp_path):
    class Declares(AnalyticEvaluator):
        @hookimpl
        def metric_names(self, ctx):
            return ["accuracy", "acc"]

    res = run_search({"searcher": RandomSearch(), "evaluator": Declares()}, tmp_path, trials=2, objectives={"acc": "max"})
    assert all(t.status == "failed" and "['acc'] not reported" in t.error for t in res.trials)


def test_a_component_that_declares_no_metrics_is_refused(tmp_path):
    class Silent:
        @hookimpl
        def cost(self, candidate, ctx):
            return CostReport({"x": 1.0}, source="silent")

    with pytest.raises(PluginError, match="backend.s .*does not declare its metrics"):
        run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.s": Silent()}, tmp_path, trials=2)


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator()}, tmp_path, trials=3)
    with pytest.raises(Exception, match="resume=true"):
        run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator()}, tmp_path, trials=3)


def test_observers_see_every_trial_and_cannot_break_the_run(tmp_path):
    seen = []

    class Observer:
        @hookimpl
        def trial_completed(self, trial, ctx):
            seen.append(trial.number)
            raise RuntimeError("observer bug")

    res = run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "observer": Observer()}, tmp_path, trials=6)
    assert seen == list(range(6)) and len(res.trials) == 6


def test_invalid_proposal_is_a_run_error_naming_the_key(tmp_path):
    class BadSearcher:
        @hookimpl
        def propose(self, space, history, n, ctx):
            cfg = space.sample(ctx.rng)
            cfg["widht"] = cfg.pop("width")
            return [cfg]

    with pytest.raises(Exception, match="widht"):
        run_search({"searcher": BadSearcher(), "evaluator": AnalyticEvaluator()}, tmp_path, trials=2)


def test_searcher_returning_nothing_ends_the_run(tmp_path):
    class Finite:
        @hookimpl
        def propose(self, space, history, n, ctx):
            return [] if len(history) >= 3 else [space.sample(ctx.rng)]

    res = run_search({"searcher": Finite(), "evaluator": AnalyticEvaluator()}, tmp_path, trials=50)
    assert len(res.trials) == 3 and res.stopped_because == "searcher finished"
