"""Tests of hwaml-roofline: the model, the shipped presets, the observer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwaml import Candidate, Trial
from hwaml.builtin import AnalyticEvaluator, RandomSearch
from hwaml.builtin.analytic import nas_toy_space
from hwaml.loop import SearchLoop
from hwaml.plugins import PluginError, Registry, make_plugin_manager
from hwaml.testing import BackendContract, make_context

from hwaml_roofline import Layer, RooflineCost, nas_toy_layers
from hwaml_roofline import plugin as roofline_plugin

CONF = Path(__file__).resolve().parents[1] / "src" / "hwaml_roofline" / "conf"
PRESETS = sorted(p.stem for p in (CONF / "backend").glob("*.yaml"))


def preset(name: str) -> RooflineCost:
    from hydra.utils import instantiate

    return instantiate(yaml.safe_load((CONF / "backend" / f"{name}.yaml").read_text()))


def nas_toy_candidates(n: int = 4):
    rng = np.random.default_rng(0)
    return [Candidate(nas_toy_space().sample(rng), number=i) for i in range(n)]


@pytest.mark.parametrize("name", PRESETS)
class TestRooflinePresets(BackendContract):
    @pytest.fixture
    def backend(self, name):
        return preset(name)

    @pytest.fixture
    def candidates(self):
        return nas_toy_candidates()


def test_presets_place_themselves_under_backend():
    assert PRESETS == ["roofline_a76", "roofline_cortex_m7"]
    for name in PRESETS:
        first = (CONF / "backend" / f"{name}.yaml").read_text().splitlines()[0]
        assert first == f"# @package backend.{name}"


def test_latency_is_the_slower_roof():
    dev = RooflineCost("toy", peak_gmacs=1.0, bandwidth_gbs=2.0)  # ridge point: 0.5 MAC/byte
    compute_bound = dev.estimate([Layer("conv", macs=1e9, bytes=1e6)])
    memory_bound = dev.estimate([Layer("copy", macs=1e6, bytes=4e9)])
    assert compute_bound["latency_ms"] == pytest.approx(1000.0)  # 1e9 MAC at 1 GMAC/s
    assert memory_bound["latency_ms"] == pytest.approx(2000.0)  # 4 GB at 2 GB/s
    assert compute_bound["compute_bound"] == ["conv"] and memory_bound["compute_bound"] == []


def test_layers_follow_the_architecture():
    cfg = {"resolution": 96, "width": 1.0, "blocks": [{"kernel": 3, "expand": 6}, {"kernel": 5, "expand": 4}]}
    layers = nas_toy_layers(cfg)
    assert [l.name for l in layers] == ["stem"] + [f"block{i}.{p}" for i in range(2) for p in ("expand", "depthwise", "project")]
    assert layers[0].macs == 48 * 48 * 3 * 9 * 16  # 3x3 stride-2 stem to 16 channels
    assert layers[2].macs == 24 * 24 * 96 * 9  # 3x3 depthwise on 16*6 channels after stride 2
    bigger = nas_toy_layers({**cfg, "resolution": 192})
    assert sum(l.macs for l in bigger) == pytest.approx(4 * sum(l.macs for l in layers), rel=0.02)


def test_depthwise_is_memory_bound_on_a76_but_not_on_m7(tmp_path):
    ctx = make_context(tmp_path)
    cand = Candidate({"resolution": 128, "width": 1.0, "blocks": [{"kernel": 3, "expand": 6}] * 2})
    a76 = preset("roofline_a76").cost(cand, ctx).info["compute_bound_layers"]
    m7 = preset("roofline_cortex_m7").cost(cand, ctx).info["compute_bound_layers"]
    assert "block0.depthwise" not in a76 and "block0.expand" in a76
    assert "block0.depthwise" in m7


def test_explicit_workloads_and_abstaining(tmp_path):
    ctx = make_context(tmp_path)
    dev = RooflineCost("toy", peak_gmacs=1.0, bandwidth_gbs=1.0)
    total = dev.cost(Candidate({"x": 1}, meta={"macs": 2e6, "bytes": 1e6}), ctx)
    assert total.metrics["roofline_latency_ms"] == pytest.approx(2.0)
    layered = dev.cost(Candidate({"layers": [{"macs": 1e6, "bytes": 3e6}, {"macs": 1e6, "bytes": 1e3}]}), ctx)
    assert layered.metrics["roofline_latency_ms"] == pytest.approx(3.0 + 1.0)
    assert dev.cost(Candidate({"x": 1.0, "y": 2.0}), ctx) is None


def test_bad_device_is_rejected():
    with pytest.raises(ValueError, match="must be > 0"):
        RooflineCost("broken", peak_gmacs=0.0, bandwidth_gbs=1.0)


def _loop(run_dir, components, **kw):
    # An empty registry: the test registers the plugin module itself, whether
    # or not the distribution is installed in this environment.
    return SearchLoop(components=components, run_dir=run_dir, objectives={"accuracy": "max"}, registry=Registry(make_plugin_manager()), **kw)


def test_constraint_prunes_and_observer_writes_jsonl(tmp_path):
    loop = _loop(
        tmp_path,
        {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.m7": preset("roofline_cortex_m7"), "plugin:roofline": roofline_plugin},
        constraints={"roofline_latency_ms": 60},
        budget_trials=10,
    )
    try:
        result = loop.run()
    finally:
        loop.close()
    lines = [json.loads(l) for l in (tmp_path / "roofline_trials.jsonl").read_text().splitlines()]
    assert [l["number"] for l in lines] == list(range(10))
    statuses = {l["status"] for l in lines}
    assert statuses == {"complete", "infeasible"}, statuses
    for line, trial in zip(lines, result.trials):
        assert line["status"] == trial.status
        assert (line["cost"]["roofline_latency_ms"] <= 60) == (trial.status == "complete")


def test_two_presets_with_one_prefix_conflict(tmp_path):
    from hwaml.plugins import PluginError

    loop = _loop(
        tmp_path,
        {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.a": preset("roofline_a76"), "backend.b": preset("roofline_cortex_m7")},
        budget_trials=5,
    )
    # the conflict is a configuration error: the run stops, naming both backends
    try:
        with pytest.raises(PluginError) as err:
            loop.run()
    finally:
        loop.close()
    assert re.search(r"'roofline_latency_ms' is reported by both 'roofline:(a76|cortex_m7)' and 'roofline:(a76|cortex_m7)'", str(err.value))


def test_observer_ignores_runs_without_a_roofline_backend(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"backend": {"analytic_cost": {"_target_": "hwaml.builtin.AnalyticCost"}}})
    ctx = make_context(tmp_path, cfg=cfg)
    trial = Trial(number=0, candidate=Candidate({"x": 1.0}, number=0), status="complete", metrics={"accuracy": 0.5})
    roofline_plugin.trial_completed(trial, ctx)
    assert not (tmp_path / "roofline_trials.jsonl").exists()
