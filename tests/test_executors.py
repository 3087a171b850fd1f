"""Executors: a local process pool and Ray give the same trials as inline evaluation."""

import pytest
from omegaconf import OmegaConf

from hwaml.builtin import AnalyticCost, AnalyticEvaluator, RegularizedEvolution
from hwaml.executors import LocalExecutor, RayExecutor
from hwaml.loop import SearchLoop


def _cfg():
    return OmegaConf.create(
        {
            "evaluator": {"_target_": "hwaml.builtin.AnalyticEvaluator", "function": "nas_toy", "noise": 0.01},
            "backend": {"cost": {"_target_": "hwaml.builtin.AnalyticCost"}},
            "searcher": {"_target_": "hwaml.builtin.RegularizedEvolution", "population_size": 6, "tournament_size": 2},
        }
    )


def _run(tmp_path, name, executor, batch_size=4):
    loop = SearchLoop(
        {"searcher": RegularizedEvolution(population_size=6, tournament_size=2), "evaluator": AnalyticEvaluator(noise=0.01), "backend.cost": AnalyticCost()},
        tmp_path / name,
        objectives={"accuracy": "max"},
        constraints={"latency_ms": 30},
        budget_trials=16,
        seed=4,
        executor=executor,
        batch_size=batch_size,
        cfg=_cfg(),
    )
    try:
        return loop.run()
    finally:
        loop.close()


def _signature(res):
    return [(t.number, t.status, t.config, dict(t.metrics), dict(t.cost)) for t in res.trials]


def test_process_pool_matches_inline(tmp_path, monkeypatch):
    monkeypatch.setenv("HWAML_LOAD_PLUGINS", "")
    inline = _run(tmp_path, "inline", None)
    pooled = _run(tmp_path, "pool", LocalExecutor(workers=2))
    assert _signature(pooled) == _signature(inline)


def test_ray_matches_inline(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("HWAML_LOAD_PLUGINS", "")
    inline = _run(tmp_path, "inline", None)
    ray_res = _run(tmp_path, "ray", RayExecutor(workers=2, init_kwargs={"num_cpus": 2}))
    assert _signature(ray_res) == _signature(inline)


def test_pool_needs_a_config(tmp_path):
    loop = SearchLoop(
        {"searcher": RegularizedEvolution(), "evaluator": AnalyticEvaluator()},
        tmp_path,
        objectives={"accuracy": "max"},
        budget_trials=2,
        executor=LocalExecutor(workers=2),
    )
    with pytest.raises(RuntimeError, match="cfg="):
        loop.run()
    loop.close()
