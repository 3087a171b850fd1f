"""Tests of hwaml-myplugin.

The contract suites from hwaml.testing hold the evaluator and the backend to
the same behaviour as every other hwaml component; the tests below them check
what is particular to this plugin, including that the installed distribution
is discovered through its entry point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hwaml import Candidate
from hwaml.builtin import RandomSearch
from hwaml.testing import BackendContract, EvaluatorContract, make_context, run_search

from hwaml_myplugin import MyCost, MyEvaluator

CONF = Path(__file__).resolve().parents[1] / "src" / "hwaml_myplugin" / "conf"


def _from_yaml(path: Path):
    """Instantiate a component from its shipped YAML, as Hydra would."""
    from hydra.utils import instantiate

    return instantiate(yaml.safe_load(path.read_text()))


class TestMyEvaluator(EvaluatorContract):
    @pytest.fixture
    def evaluator(self):
        return _from_yaml(CONF / "evaluator" / "myplugin_eval.yaml")


class TestMyCost(BackendContract):
    @pytest.fixture
    def backend(self):
        return _from_yaml(CONF / "backend" / "myplugin_cost.yaml")

    @pytest.fixture
    def candidates(self):
        return [Candidate({"degree": d, "alpha": 1e-3}, number=i) for i, d in enumerate((1, 5, 15))]


def test_backend_file_declares_its_package():
    first = (CONF / "backend" / "myplugin_cost.yaml").read_text().splitlines()[0]
    assert first == "# @package backend.myplugin_cost"


def test_evaluator_prefers_a_moderate_degree(tmp_path):
    ev = MyEvaluator()
    ctx = make_context(tmp_path)
    r2 = {d: ev.evaluate(Candidate({"degree": d, "alpha": 1e-6}), ctx).metrics["r2"] for d in (1, 6)}
    assert r2[6] > 0.9 > r2[1]


def test_cost_grows_with_degree_and_abstains_on_foreign_candidates(tmp_path):
    ctx = make_context(tmp_path)
    cost = MyCost()
    small = cost.cost(Candidate({"degree": 2, "alpha": 1.0}), ctx).metrics
    large = cost.cost(Candidate({"degree": 12, "alpha": 1.0}), ctx).metrics
    assert large["myplugin_latency_us"] > small["myplugin_latency_us"]
    assert large["myplugin_params"] == 13.0
    assert cost.cost(Candidate({"resolution": 96}), ctx) is None


def test_search_respects_a_constraint(tmp_path):
    res = run_search(
        {"searcher": RandomSearch(), "evaluator": MyEvaluator(), "backend.myplugin_cost": MyCost()},
        tmp_path / "run",
        trials=12,
        constraints={"myplugin_params": 6},
    )
    assert len(res.trials) == 12
    assert all(t.status == "infeasible" for t in res.trials if t.config["degree"] > 5)
    assert all(t.status == "complete" for t in res.trials if t.config["degree"] <= 5)
    assert res.best is not None and res.best.config["degree"] <= 5


def test_installed_plugin_is_discovered():
    """Passes once the distribution is installed (pip install -e .)."""
    from hwaml.plugins import load_plugins

    info = load_plugins(refresh=True).info("myplugin")
    assert info.status == "loaded", info.error
    assert info.distribution == "hwaml-myplugin"
    assert set(info.config_groups) == {"evaluator/myplugin_eval", "backend/myplugin_cost"}
    assert "config_search_path" in info.hooks
