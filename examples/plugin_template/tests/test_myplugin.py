"""Tests of hwaml-myplugin.

The contract suites from hwaml.testing hold the evaluator, the backend and the
searcher to the same behaviour as every other hwaml component (registration
without running their code, declared metrics, finite results, reproducible and
resumable searches); the tests below them check what is particular to this
plugin, including deploy and that the installed distribution is discovered
through its entry point.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwaml import Candidate, Trial
from hwaml.builtin import RandomSearch
from hwaml.testing import BackendContract, EvaluatorContract, SearcherContract, make_context, run_search

from hwaml_myplugin import MyCost, MyEvaluator, MySearcher

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


class TestMySearcher(SearcherContract):
    # the suite searches hwaml's built-in analytic space; override contract_evaluator to use ours
    @pytest.fixture
    def searcher_factory(self):
        return lambda: _from_yaml(CONF / "searcher" / "myplugin_search.yaml")


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


def test_searcher_climbs_and_skips_infeasible_children(tmp_path):
    res = run_search(
        {"searcher": MySearcher(initial=4), "evaluator": MyEvaluator(), "backend.myplugin_cost": MyCost()},
        tmp_path / "run",
        trials=16,
        constraints={"myplugin_params": 8},
    )
    origins = [t.candidate.origin for t in res.trials]
    assert origins[:4] == ["random"] * 4 and set(origins[4:]) == {"mutation"}
    # the children were costed before they were proposed: none breaks the constraint
    assert all(t.status == "complete" for t in res.trials[4:])
    first = max(t.metrics["r2"] for t in res.trials[:4] if t.ok)
    assert res.best.metrics["r2"] >= first


def test_deploy_writes_a_c_header_from_the_trials_weights(tmp_path):
    ev = MyEvaluator()
    res = run_search({"searcher": RandomSearch(), "evaluator": ev}, tmp_path / "run", trials=4)
    best = res.best
    assert set(best.artifacts) == {"weights"}  # what evaluate listed in EvalResult.artifacts
    out = ev.deploy(trial=best, ctx=make_context(tmp_path / "run"))
    assert out.ok and out.source == "myplugin_eval" and out.metrics["r2"] == best.metrics["r2"]
    header = Path(out.artifacts["header"])
    assert header == tmp_path / "run" / "deploy" / f"myplugin_trial{best.number}.h"
    text = header.read_text()
    assert f"myplugin_trial{best.number}_eval(float x)" in text
    if shutil.which("cc"):  # compile it and compare with numpy's evaluation of the same weights
        main = tmp_path / "main.c"
        main.write_text(f'#include <stdio.h>\n#include "{header}"\nint main(void) {{ printf("%.6f\\n", myplugin_trial{best.number}_eval(0.5f)); return 0; }}\n')
        subprocess.run(["cc", "-o", str(tmp_path / "main"), str(main)], check=True, capture_output=True)
        value = float(subprocess.run([str(tmp_path / "main")], check=True, capture_output=True, text=True).stdout)
        weights = yaml.safe_load(Path(best.artifacts["weights"]).read_text())["weights"]
        assert value == pytest.approx(np.polyval(weights, 0.5), abs=1e-4)
    # a trial without the artifact is reported, not deployed from a guessed file
    bare = Trial(99, Candidate({"degree": 3, "alpha": 1.0}, number=99), "complete", metrics={"r2": 0.5})
    refused = ev.deploy(trial=bare, ctx=make_context(tmp_path / "run"))
    assert not refused.ok and "no 'weights' artifact" in refused.message


def test_a_misspelled_constraint_stops_the_run_at_start(tmp_path):
    from hwaml.config import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'myplugin_params'"):
        run_search({"searcher": RandomSearch(), "evaluator": MyEvaluator(), "backend.myplugin_cost": MyCost()}, tmp_path / "run", trials=2, constraints={"myplugin_param": 6})


def test_installed_plugin_is_discovered():
    """Runs once the distribution is installed (pip install -e .)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from hwaml.plugins import load_plugins

    try:
        distribution("hwaml-myplugin")
    except PackageNotFoundError:
        pytest.skip("hwaml-myplugin is not installed (pip install -e examples/plugin_template)")

    info = load_plugins(refresh=True).info("myplugin")
    assert info.status == "loaded", info.error
    assert info.distribution == "hwaml-myplugin"
    assert set(info.config_groups) == {"evaluator/myplugin_eval", "backend/myplugin_cost", "searcher/myplugin_search"}
    assert "config_search_path" in info.hooks
