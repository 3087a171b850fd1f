"""Generic searchers on the circuits, and every config file instantiates."""

from importlib import resources

import pytest
import yaml

from hwaml.builtin.searchers import OptunaSearcher, RandomSearch, RegularizedEvolution
from hwaml.loop import SearchLoop
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator


@pytest.mark.parametrize(
    "searcher",
    [RandomSearch(), RegularizedEvolution(population_size=3, tournament_size=2), OptunaSearcher("tpe")],
    ids=["random", "evolution", "optuna_tpe"],
)
def test_generic_searchers_size_a_circuit(tmp_path, searcher):
    loop = SearchLoop({"searcher": searcher, "evaluator": CircuitEvaluator("two_stage_amp", "sky130")}, tmp_path, {"fom": "max"}, budget_trials=6, seed=1)
    res = loop.run()
    assert len(res.trials) == 6
    assert all(t.status == "complete" for t in res.trials)
    assert res.best is not None and res.best.metrics["sim_failed"] == 0.0 and "gain_db" in res.best.metrics


def _confs(group):
    root = resources.files("hwaml_gcn_rl_circuit.conf").joinpath(group)
    return sorted(p for p in root.iterdir() if p.name.endswith(".yaml"))


@pytest.mark.parametrize("path", _confs("evaluator") + _confs("searcher"), ids=lambda p: p.name)
def test_config_instantiates(path):
    from hydra.utils import instantiate

    obj = instantiate(yaml.safe_load(path.read_text()))
    assert hasattr(obj, "propose") or hasattr(obj, "evaluate")


@pytest.mark.parametrize("path", _confs("experiment"), ids=lambda p: p.name)
def test_experiment_presets_are_global_packages(path):
    text = path.read_text()
    assert "# @package _global_" in text.splitlines()[0] + text.splitlines()[1]
    cfg = yaml.safe_load(text)
    assert cfg["objectives"] == {"fom": "max"}
    assert any("override /evaluator" in str(d) for d in cfg["defaults"])


def test_plugin_entry_point_only_contributes_configs():
    from hwaml_gcn_rl_circuit import plugin

    assert plugin.config_search_path() == ["pkg://hwaml_gcn_rl_circuit.conf"]
    assert not hasattr(plugin, "evaluate") and not hasattr(plugin, "propose")


def test_cli_gcn_rl_with_a_non_circuit_evaluator_stops_at_start(tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "hwaml.cli", "run", "searcher=gcn_rl", "evaluator=analytic", "budget.trials=2", "progress=false", f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot search the space of evaluator" in proc.stderr
    assert "gcn_rl needs a circuit graph in space.meta['graph']" in proc.stderr
    assert not (run_dir / "gcn_rl_agent.pt").exists()


def test_searcher_config_groups_are_checked_key_by_key():
    from hwaml.config import ConfigError, check_component
    from hwaml.testing import compose_config

    cfg = compose_config(["experiment=gcn_rl_transfer_tia", "searcher.init_from=agent.pt"])
    check_component(cfg.searcher, "searcher")
    assert cfg.searcher.exploration.warmup == 10 and cfg.searcher.agent.critics == 5
    bad = compose_config(["searcher=gcn_rl", "evaluator=circuit_ldo", "+searcher.exploration.warmpu=3"])
    with pytest.raises(ConfigError, match="did you mean 'warmup'") as err:
        check_component(bad.searcher, "searcher")
    assert err.value.key == "searcher.exploration.warmpu"
