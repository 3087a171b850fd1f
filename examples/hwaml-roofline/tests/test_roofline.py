"""Tests of hwaml-roofline: the model, the shipped presets, the observer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwaml import BuiltModel, Candidate, EvalResult, Trial, hookimpl
from hwaml.builtin import AnalyticEvaluator, RandomSearch
from hwaml.builtin.analytic import nas_toy_space
from hwaml.loop import SearchLoop
from hwaml.plugins import PluginError, Registry, make_plugin_manager
from hwaml.testing import BackendContract, make_context, run_search

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


class TinyNetEvaluator:
    """An NN evaluator for the tests: the nas_toy space's keys, but its own network
    (a stem convolution whose width follows ``width``, one block per entry, a classifier).

    Its candidates look like nas_toy ones, so the test shows the backend costs the
    evaluator's network (``ctx.build_model``), not a network it rebuilt by its own rules.
    """

    default_objectives = {"accuracy": "max"}

    @hookimpl
    def metric_names(self, ctx):
        return ["accuracy"]

    @hookimpl
    def search_space(self, ctx):
        return nas_toy_space()

    @hookimpl
    def evaluate(self, candidate, ctx):
        return EvalResult({"accuracy": 0.5})

    @hookimpl
    def build_model(self, candidate, trial, ctx):
        import torch

        cfg = candidate.config
        c = max(4, int(16 * cfg["width"]))
        layers = [torch.nn.Conv2d(3, c, 3, stride=2, padding=1), torch.nn.ReLU()]
        for b in cfg["blocks"]:
            layers += [torch.nn.Conv2d(c, c, b["kernel"], padding=b["kernel"] // 2, groups=c), torch.nn.Conv2d(c, c * b["expand"], 1), torch.nn.Conv2d(c * b["expand"], c, 1)]
        layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c, 10)]
        r = 32  # the network's own input size: the candidate's resolution is not used
        h = r // 2
        macs = h * h * 3 * 9 * c + sum(h * h * c * b["kernel"] ** 2 + 2 * h * h * c * c * b["expand"] for b in cfg["blocks"]) + c * 10
        return BuiltModel(module=torch.nn.Sequential(*layers).eval(), input_shape=(3, r, r), macs=float(macs), source="tinynet")


class TestRooflineOnAnEvaluatorsNetwork(BackendContract):
    @pytest.fixture
    def backend(self):
        pytest.importorskip("torch")
        return preset("roofline_a76")

    @pytest.fixture
    def contract_ctx(self, tmp_path):
        return make_context(tmp_path / "run", evaluator=TinyNetEvaluator())

    @pytest.fixture
    def candidates(self):
        return nas_toy_candidates(3)


def test_metric_names_follow_the_prefix(tmp_path):
    ctx = make_context(tmp_path)
    assert preset("roofline_a76").metric_names(ctx) == ["roofline_latency_ms", "roofline_macs_m", "roofline_mbytes"]
    assert RooflineCost("x", 1.0, 1.0, metric_prefix="m7").metric_names(ctx) == ["m7_latency_ms", "m7_macs_m", "m7_mbytes"]


def test_an_nn_evaluators_network_is_what_gets_costed(tmp_path):
    pytest.importorskip("torch")
    ev = TinyNetEvaluator()
    ctx = make_context(tmp_path, evaluator=ev)
    dev = preset("roofline_cortex_m7")
    for cand in nas_toy_candidates(3):
        rep = dev.cost(cand, ctx)
        assert rep.info["workload"] == "network"
        built = ev.build_model(cand, None, ctx)
        assert rep.metrics["roofline_macs_m"] == pytest.approx(built.macs / 1e6)  # the evaluator's own count
        assert rep.metrics["roofline_macs_m"] != pytest.approx(sum(l.macs for l in nas_toy_layers(cand.config)) / 1e6)
    # an explicit workload in the candidate still wins
    explicit = dev.cost(Candidate(nas_toy_candidates(1)[0].config, meta={"macs": 1e6, "bytes": 1.0}), ctx)
    assert explicit.info["workload"] == "explicit" and explicit.metrics["roofline_macs_m"] == 1.0


def test_runs_with_an_nn_evaluator(tmp_path):
    pytest.importorskip("torch")
    res = run_search(
        {"searcher": RandomSearch(), "evaluator": TinyNetEvaluator(), "backend.m7": preset("roofline_cortex_m7")},
        tmp_path / "run",
        trials=2,
        registry=Registry(make_plugin_manager()),
    )
    assert [t.status for t in res.trials] == ["complete", "complete"]
    assert all(t.cost["roofline_macs_m"] > 0 for t in res.trials)


def test_the_analytic_evaluator_builds_no_network_so_nas_toy_configs_are_expanded(tmp_path):
    ctx = make_context(tmp_path, evaluator=AnalyticEvaluator())
    cand = nas_toy_candidates(1)[0]
    rep = preset("roofline_a76").cost(cand, ctx)
    assert rep.info["workload"] == "nas_toy"
    assert rep.metrics["roofline_macs_m"] == pytest.approx(sum(l.macs for l in nas_toy_layers(cand.config)) / 1e6)


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
    # the conflict is a configuration error: the run stops at start (both declare the metric), naming both backends
    try:
        with pytest.raises(PluginError) as err:
            loop.run()
    finally:
        loop.close()
    assert re.search(r"'roofline_(latency_ms|macs_m|[a-z_]+)' is declared by both 'backend\.a' \(\w+\) and 'backend\.b' \(\w+\)", str(err.value)), str(err.value)


def test_observer_ignores_runs_without_a_roofline_backend(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"backend": {"analytic_cost": {"_target_": "hwaml.builtin.AnalyticCost"}}})
    ctx = make_context(tmp_path, cfg=cfg)
    trial = Trial(number=0, candidate=Candidate({"x": 1.0}, number=0), status="complete", metrics={"accuracy": 0.5})
    roofline_plugin.trial_completed(trial, ctx)
    assert not (tmp_path / "roofline_trials.jsonl").exists()
