"""Issue 11's core contract: static registration, hooks through pluggy, strict
configuration, per-trial limits, feasibility through cost_fn, safe loading."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Optional, Union

import pytest
from omegaconf import OmegaConf

from hwaml import BuiltModel, Candidate, CostReport, EvalResult, hookimpl
from hwaml.builtin import AnalyticCost, AnalyticEvaluator, RandomSearch, RegularizedEvolution
from hwaml.config import ConfigError, as_config, check_component
from hwaml.constraints import is_feasible, violations
from hwaml.loop import RunError, SearchLoop, best_trial
from hwaml.plugins import PluginError, build_run_manager, load_plugins, make_plugin_manager
from hwaml.testing import make_context, run_search
from hwaml.types import Trial, TrialStatus

ROOT = Path(__file__).resolve().parents[1]


class _Empty:
    def __init__(self):
        self.pm = make_plugin_manager()


# -- registration never runs a component's code ---------------------------------


class PropertyTrap(AnalyticEvaluator):
    """An evaluator with a property that raises (what pluggy < 1.7 would run)."""

    ran = []

    @property
    def supernet(self):
        PropertyTrap.ran.append("supernet")
        raise RuntimeError("the supernet is not built yet")


def test_registration_reads_attributes_statically():
    PropertyTrap.ran.clear()
    pm = build_run_manager({"evaluator": PropertyTrap()}, registry=_Empty())
    assert PropertyTrap.ran == []
    assert [i.plugin_name for i in pm.hook.evaluate.get_hookimpls()] == ["evaluator"]


def test_the_contract_suite_refuses_component_properties():
    from hwaml.testing import _assert_registers_statically

    with pytest.raises(AssertionError, match="PropertyTrap.supernet is a property"):
        _assert_registers_statically(PropertyTrap())
    _assert_registers_statically(AnalyticEvaluator())


def test_no_first_party_component_has_a_property():
    """Every class that a shipped config instantiates registers statically."""
    import importlib

    from hwaml.testing import _assert_registers_statically

    targets = set()
    for yaml in list(ROOT.glob("hydra_conf/*/*.yaml")) + list(ROOT.glob("plugins/*/src/*/conf/*/*.yaml")):
        if yaml.parent.name not in ("searcher", "evaluator", "backend"):
            continue
        m = re.search(r"^_target_:\s*(\S+)", yaml.read_text(), flags=re.M)
        if m:
            targets.add(m.group(1))
    assert len(targets) >= 10
    for target in sorted(targets):
        module, _, name = target.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        props = [k for klass in cls.__mro__ for k, v in vars(klass).items() if isinstance(v, property)]
        assert not props, f"{target} has properties {props}: registration or inspection would run them"


# -- hooks go through pluggy: wrappers apply ---------------------------------------


class HalveLatency:
    """A wrapper around every backend's cost: the loop must call cost via pm.hook."""

    @hookimpl(wrapper=True)
    def cost(self, candidate, ctx):
        reports = yield
        return [CostReport({k: v / 2 for k, v in r.metrics.items()}, source=r.source) if r is not None else None for r in reports]


class CountObserverWrapper:
    seen = []

    @hookimpl(wrapper=True)
    def trial_completed(self, trial, ctx):
        CountObserverWrapper.seen.append(trial.number)
        return (yield)


def test_cost_and_trial_completed_wrappers_apply(tmp_path):
    plain = run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.c": AnalyticCost()}, tmp_path / "a", trials=5, registry=_Empty())
    CountObserverWrapper.seen.clear()
    wrapped = run_search(
        {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.c": AnalyticCost(), "wrap": HalveLatency(), "obs": CountObserverWrapper()},
        tmp_path / "b",
        trials=5,
        registry=_Empty(),
    )
    for a, b in zip(plain.trials, wrapped.trials):
        assert b.cost["latency_ms"] == pytest.approx(a.cost["latency_ms"] / 2)
    assert CountObserverWrapper.seen == [0, 1, 2, 3, 4]


# -- strict configuration ------------------------------------------------------------


class Typed:
    def __init__(self, max_params: Optional[int] = None, mode: Union[int, str] = 1, scale: float = 1.0):
        self.max_params = max_params


def test_optional_and_union_annotations_are_type_checked():
    check_component(OmegaConf.create({"_target_": f"{__name__}.Typed", "max_params": 5, "mode": "a"}), "evaluator")
    check_component(OmegaConf.create({"_target_": f"{__name__}.Typed", "max_params": None}), "evaluator")
    with pytest.raises(ConfigError) as err:
        check_component(OmegaConf.create({"_target_": f"{__name__}.Typed", "max_params": "big"}), "evaluator")
    assert err.value.key == "evaluator.max_params" and "Optional[int]" in str(err.value) and "'big'" in str(err.value)
    with pytest.raises(ConfigError, match="evaluator.mode"):
        check_component(OmegaConf.create({"_target_": f"{__name__}.Typed", "mode": [1]}), "evaluator")
    with pytest.raises(ConfigError, match="evaluator.scale"):
        check_component(OmegaConf.create({"_target_": f"{__name__}.Typed", "scale": None}), "evaluator")


def test_an_import_error_inside_a_component_module_is_shown_as_itself(tmp_path, monkeypatch):
    pkg = tmp_path / "brokenpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "comp.py").write_text("import not_installed_dependency_xyz\nclass C:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        check_component(OmegaConf.create({"_target_": "brokenpkg.comp.C"}), "backend.b")
    assert "ModuleNotFoundError" in str(err.value) and "not_installed_dependency_xyz" in str(err.value)
    with pytest.raises(ConfigError, match="cannot import 'brokenpkg.nowhere.C'"):
        check_component(OmegaConf.create({"_target_": "brokenpkg.nowhere.C"}), "backend.b")


def test_unknown_plugin_switch_names_are_named(monkeypatch):
    monkeypatch.setenv("HWAML_DISABLE_PLUGINS", "tinyengine,no_such_plugin")
    monkeypatch.delenv("HWAML_LOAD_PLUGINS", raising=False)
    reg = load_plugins(refresh=True)
    with pytest.raises(PluginError, match="HWAML_DISABLE_PLUGINS=no_such_plugin"):
        reg.check_switches()
    monkeypatch.delenv("HWAML_DISABLE_PLUGINS")
    load_plugins(refresh=True).check_switches()


def test_unknown_plugin_switch_stops_hwaml_run(cli):
    out = cli("run", "experiment=quickstart", env={"HWAML_LOAD_PLUGINS": "tinyengin"})
    assert out.returncode == 2 and "HWAML_LOAD_PLUGINS=tinyengin" in out.stderr and "tinyengine" in out.stderr


def test_misspelled_constraint_stops_hwaml_run_before_any_work(cli, tmp_path):
    out = cli("run", "experiment=quickstart", "+constraints.latency_mss=3", f"hydra.run.dir={tmp_path}", env={"HWAML_LOAD_PLUGINS": ""})
    assert out.returncode == 2
    assert "constraints.latency_mss" in out.stderr and "did you mean 'latency_ms'" in out.stderr
    assert not (tmp_path / "trials.sqlite").exists() or sqlite3.connect(tmp_path / "trials.sqlite").execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0


from dataclasses import dataclass, field


@dataclass
class Inner:
    epochs: int = 1
    lr: float = 0.1


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_config_dataclasses_are_strict_and_nested():
    got = as_config(Outer, {"name": "y", "inner": {"epochs": 3}}, "evaluator.training")
    assert got == Outer("y", Inner(3, 0.1))
    assert as_config(Outer, None) == Outer()
    with pytest.raises(ConfigError) as err:
        as_config(Outer, {"inner": {"epoch": 3}}, "evaluator.training")
    assert err.value.key == "evaluator.training.inner.epoch" and "did you mean 'epochs'" in str(err.value)
    with pytest.raises(ConfigError, match="evaluator.training.inner.lr"):
        as_config(Outer, {"inner": {"lr": "fast"}}, "evaluator.training")


class GroupedComponent:
    def __init__(self, training: Optional[Inner] = None):
        self.training = as_config(Inner, training, "training")


def test_check_component_looks_inside_dataclass_parameters():
    check_component(OmegaConf.create({"_target_": f"{__name__}.GroupedComponent", "training": {"epochs": 2}}), "evaluator")
    with pytest.raises(ConfigError) as err:
        check_component(OmegaConf.create({"_target_": f"{__name__}.GroupedComponent", "training": {"epochz": 2}}), "evaluator")
    assert err.value.key == "evaluator.training.epochz"


class Unstorable:
    pass


def test_a_config_that_cannot_be_stored_fails_the_run(tmp_path):
    cfg = OmegaConf.create({"seed": 0, "x": "${oc.env:HWAML_SURELY_UNSET_VARIABLE}"})
    loop = SearchLoop({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator()}, tmp_path, {"accuracy": "max"}, budget_trials=2, cfg=cfg, registry=_Empty())
    try:
        with pytest.raises(RunError, match="cannot be stored"):
            loop.run()
    finally:
        loop.close()


# -- per-trial limits ------------------------------------------------------------------


def test_a_trial_over_its_timeout_is_failed_with_the_reason(tmp_path):
    loop = SearchLoop(
        {"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(sleep_s=2.0)},
        tmp_path,
        {"accuracy": "max"},
        budget_trials=2,
        trial_timeout_s=0.2,
        registry=_Empty(),
    )
    try:
        res = loop.run()
    finally:
        loop.close()
    assert [t.status for t in res.trials] == ["failed", "failed"]
    assert all("TrialTimeout" in t.error and "trial_timeout_s=0.2" in t.error for t in res.trials)
    assert all(t.duration_s < 1.5 for t in res.trials)


PROBE = """
import os
from hwaml import EvalResult, hookimpl
from hwaml.builtin import AnalyticEvaluator


class ThreadProbe(AnalyticEvaluator):
    @hookimpl
    def metric_names(self, ctx):
        return ["accuracy", "omp_threads", "ctx_threads"]

    @hookimpl
    def evaluate(self, candidate, ctx):
        res = super().evaluate(candidate=candidate, ctx=ctx)
        return EvalResult({**res.metrics, "omp_threads": float(os.environ.get("OMP_NUM_THREADS", "0")), "ctx_threads": float(ctx.threads or 0)})
"""


def test_pool_workers_get_their_share_of_the_cores_and_a_timeout(cli, tmp_path):
    import json
    import os

    (tmp_path / "threadprobe.py").write_text(PROBE)
    run = tmp_path / "run"
    out = cli(
        "run",
        "evaluator=analytic",
        "evaluator._target_=threadprobe.ThreadProbe",
        "executor.workers=2",
        "budget.trials=4",
        "budget.trial_timeout_s=30",
        f"hydra.run.dir={run}",
        env={"HWAML_LOAD_PLUGINS": "", "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    rows = sqlite3.connect(run / "trials.sqlite").execute("SELECT metrics FROM trials").fetchall()
    want = max(1, (os.cpu_count() or 1) // 2)
    assert len(rows) == 4
    for (m,) in rows:
        m = json.loads(m)
        assert m["omp_threads"] == want and m["ctx_threads"] == want


# -- feasibility, abstention, best ---------------------------------------------------------


class Refuses:
    @hookimpl
    def metric_names(self, ctx):
        return ["fits"]

    @hookimpl
    def cost(self, candidate, ctx):
        return CostReport({"fits": 0.0}, source="refuses", feasible=candidate.config["resolution"] == 96)


def test_cost_fn_carries_the_backends_feasible_verdict(tmp_path):
    ctx = make_context(tmp_path, backends={"r": Refuses(), "c": AnalyticCost()})
    cfg = AnalyticEvaluator().search_space(ctx=ctx).sample(__import__("numpy").random.default_rng(0))
    small, big = dict(cfg, resolution=96), dict(cfg, resolution=192)
    assert ctx.cost_fn(Candidate(small)).feasible is True and is_feasible(ctx.cost_fn(Candidate(small)), {})
    assert ctx.cost_fn(Candidate(big)).feasible is False and not is_feasible(ctx.cost_fn(Candidate(big)), {})
    # evolution uses it to reject children the backends refuse, even without a numeric constraint
    res = run_search({"searcher": RegularizedEvolution(population_size=4, tournament_size=2), "evaluator": AnalyticEvaluator(), "backend.r": Refuses()}, tmp_path / "run", trials=20, registry=_Empty())
    assert sum(t.status == TrialStatus.INFEASIBLE for t in res.trials[4:]) <= 2


def test_violations_reads_raw_and_normalised_bounds():
    assert violations({"a": 3.0}, {"a": 2}) == ["a=3 > 2"]
    assert violations({"a": 3.0}, {"a": {"min": 4.0}}) == ["a=3 < 4"]
    assert violations({}, {"a": 2}, only_present=False) == ["a is not reported"]


def test_analytic_cost_abstains_on_what_it_does_not_understand(tmp_path):
    ctx = make_context(tmp_path)
    assert AnalyticCost().cost(candidate=Candidate({"x": 1.0, "y": 2.0}), ctx=ctx) is None
    res = run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator("branin"), "backend.c": AnalyticCost()}, tmp_path / "r", trials=3, registry=_Empty())
    assert all(t.status == "complete" and t.cost == {} for t in res.trials)


def _trial(n, acc, lat):
    return Trial(n, Candidate({}), TrialStatus.COMPLETE, metrics={"accuracy": acc}, cost={"latency_ms": lat})


def test_the_best_trial_is_always_pareto_optimal():
    from hwaml.loop import pareto_front

    objectives = {"accuracy": "max", "latency_ms": "min"}
    trials = [_trial(0, 0.9, 5.0), _trial(1, 0.9, 3.0), _trial(2, 0.8, 1.0), _trial(3, 0.9, 3.0)]
    best = best_trial(trials, objectives)
    assert best.number == 1  # same accuracy as 0, less latency; 3 ties it and is later
    assert best.number in [t.number for t in pareto_front(trials, objectives)]


# -- models through the contract ---------------------------------------------------------


class NeedsModel:
    @hookimpl
    def metric_names(self, ctx):
        return ["n"]

    @hookimpl
    def cost(self, candidate, ctx):
        if ctx.build_model is None:
            raise PluginError("needs_model costs networks: the run's evaluator builds none")
        return CostReport({"n": float(ctx.build_model(candidate).input_shape[0])}, source="needs_model")


def test_build_model_is_none_when_the_evaluator_builds_no_network(tmp_path):
    res = run_search({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "backend.m": NeedsModel()}, tmp_path, trials=2, registry=_Empty())
    assert all(t.status == "failed" and "builds none" in t.error for t in res.trials)
    assert make_context(tmp_path / "c", evaluator=AnalyticEvaluator()).build_model is None


class BuildsModel(AnalyticEvaluator):
    built = []

    @hookimpl
    def build_model(self, candidate, trial, ctx):
        BuildsModel.built.append(candidate.config["resolution"])
        assert ctx.space is not None
        return BuiltModel(module=None, input_shape=(3, candidate.config["resolution"], candidate.config["resolution"]))


def test_backends_get_the_evaluators_model_memoised_per_config(tmp_path):
    BuildsModel.built.clear()
    res = run_search({"searcher": RandomSearch(), "evaluator": BuildsModel(), "backend.m": NeedsModel()}, tmp_path, trials=6, registry=_Empty())
    assert all(t.status == "complete" and t.cost["n"] == 3.0 for t in res.trials)
    assert len(BuildsModel.built) == len({str(t.config) for t in res.trials})


# -- safe loading ----------------------------------------------------------------------------


def test_every_torch_load_in_the_code_is_weights_only():
    offenders = []
    for path in list(ROOT.glob("core/**/*.py")) + list(ROOT.glob("plugins/*/src/**/*.py")) + list(ROOT.glob("examples/**/src/**/*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not offenders, offenders


def test_torch_refuses_a_crafted_pickle_under_weights_only(tmp_path):
    import pickle

    import torch

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Exploit()}, f)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()
