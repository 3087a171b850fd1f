"""Configuration errors name the key, before any work is done."""

import pytest
from omegaconf import OmegaConf

from hwaml.config import ConfigError, check_component


def _no_run_dir(path):
    return not (path / "trials.sqlite").exists()


@pytest.mark.parametrize(
    "override, key",
    [
        ("budgt.trials=3", "budgt"),
        ("budget.trails=3", "trails"),
        ("budget.trials=many", "budget.trials"),
        ("seed=abc", "seed"),
        ("evaluator.fuction=branin", "fuction"),
    ],
)
def test_typos_and_wrong_types_fail_naming_the_key(tmp_path, cli, override, key):
    out = cli("run", "evaluator=analytic", override, f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    assert key in out.stderr + out.stdout
    assert _no_run_dir(tmp_path)


def test_unknown_option_lists_the_available_ones(tmp_path, cli):
    out = cli("run", "evaluator=analytc", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    assert "evaluator/analytc" in out.stderr
    assert "Available options" in out.stderr and "analytic" in out.stderr


def test_missing_evaluator_is_reported(tmp_path, cli):
    out = cli("run", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    assert "evaluator" in out.stderr


def test_typo_inside_a_config_file_names_the_key_and_suggests(tmp_path, cli):
    conf = tmp_path / "conf" / "evaluator"
    conf.mkdir(parents=True)
    (conf / "typo_eval.yaml").write_text("_target_: hwaml.builtin.AnalyticEvaluator\nfuntcion: branin\n")
    run = tmp_path / "run"
    out = cli("run", "evaluator=typo_eval", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"hydra.run.dir={run}")
    assert out.returncode != 0
    text = out.stderr + out.stdout
    assert "evaluator.funtcion" in text and "did you mean 'function'" in text
    assert _no_run_dir(run)


def test_check_component_types_and_required():
    node = OmegaConf.create({"_target_": "hwaml.builtin.RegularizedEvolution", "population_size": "big"})
    with pytest.raises(ConfigError) as err:
        check_component(node, "searcher")
    assert err.value.key == "searcher.population_size"
    with pytest.raises(ConfigError, match="cannot import"):
        check_component(OmegaConf.create({"_target_": "hwaml.nowhere.Thing"}), "backend.x")
    with pytest.raises(ConfigError, match="required"):
        check_component(OmegaConf.create({"_target_": "hwaml.builtin.analytic.branin"}), "evaluator")


def test_bad_objective_direction_and_constraint(tmp_path, cli):
    out = cli("run", "evaluator=analytic", "+objectives.accuracy=maximise", f"hydra.run.dir={tmp_path / 'a'}")
    assert out.returncode != 0 and "objectives.accuracy" in out.stderr
    out = cli("run", "evaluator=analytic", "+constraints.latency_ms={below: 3}", f"hydra.run.dir={tmp_path / 'b'}")
    assert out.returncode != 0 and "constraints.latency_ms.below" in out.stderr


def test_every_shipped_option_composes_and_instantiates():
    """Compose every option of every group (core and installed plugins) and check it."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from hwaml.config import check_component, register_schema
    from hwaml.plugins import load_plugins
    from hwaml.searchpath import register_search_path_plugin

    register_schema()
    register_search_path_plugin()
    owners = load_plugins().option_owners()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="hwaml_conf", version_base="1.3"):
        for (group, option), _ in sorted(owners.items()):
            if group == "experiment":
                cfg = compose("config", overrides=[f"experiment={option}"])
                check_component(cfg.evaluator, "evaluator")
                check_component(cfg.searcher, "searcher")
                for name, node in cfg.backend.items():
                    check_component(node, f"backend.{name}")
            elif group == "backend":
                cfg = compose("config", overrides=["evaluator=analytic", f"backend=[{option}]"])
                assert option in cfg.backend, f"backend/{option}.yaml must start with '# @package backend.{option}'"
                check_component(cfg.backend[option], f"backend.{option}")
            elif group in ("searcher", "evaluator", "executor"):
                overrides = [f"{group}={option}"] + ([] if group == "evaluator" else ["evaluator=analytic"])
                cfg = compose("config", overrides=overrides)
                check_component(cfg[group], group)
    GlobalHydra.instance().clear()
