"""Plugin discovery: entry points, broken plugins, switches, conflicts, listing."""

import json
import textwrap

import pytest

from hwaml.plugins import PluginError, load_plugins


def make_plugin(root, dist, ep_name, module, body, conf=None):
    """Write an installed-looking distribution (dist-info + module) under root."""
    (root / f"{dist.replace('-', '_')}-1.2.3.dist-info").mkdir(parents=True)
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[hwaml]\n{ep_name} = {module}.plugin\n")
    pkg = root / module
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(textwrap.dedent(body))
    for rel, text in (conf or {}).items():
        p = pkg / "conf" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        for parent in [pkg / "conf", *p.relative_to(pkg / "conf").parents]:
            d = pkg / "conf" / parent if parent != pkg / "conf" else parent
            if d.is_dir():
                (d / "__init__.py").touch()
        p.write_text(text)


GOOD = """
from hwaml import hookimpl

@hookimpl
def config_search_path():
    return ["pkg://{module}.conf"]
"""

EVAL_YAML = "_target_: hwaml.builtin.AnalyticEvaluator\nfunction: branin\n"


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("HWAML_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("HWAML_DISABLE_PLUGINS", raising=False)
    yield root
    import sys

    for name in [m for m in sys.modules if m.startswith("hw_")]:
        del sys.modules[name]
    import hwaml.plugins

    hwaml.plugins._REGISTRY = None  # reload lazily, once sys.path and the environment are restored


def test_broken_plugin_is_reported_and_others_still_load(site):
    make_plugin(site, "hwaml-good", "good", "hw_good", GOOD.format(module="hw_good"), {"evaluator/good_eval.yaml": EVAL_YAML})
    make_plugin(site, "hwaml-broken", "broken", "hw_broken", "import a_module_that_does_not_exist\n")
    reg = load_plugins(refresh=True)
    good, broken = reg.info("good"), reg.info("broken")
    assert good.status == "loaded" and "config_search_path" in good.hooks
    assert good.config_groups == ("evaluator/good_eval",) and good.distribution == "hwaml-good" and good.version == "1.2.3"
    assert broken.status == "failed" and "a_module_that_does_not_exist" in broken.error


def test_broken_plugin_is_fatal_only_when_the_config_needs_it(site, tmp_path, cli):
    make_plugin(site, "hwaml-good", "good", "hw_good", GOOD.format(module="hw_good"), {"evaluator/good_eval.yaml": EVAL_YAML})
    make_plugin(
        site,
        "hwaml-broken",
        "broken",
        "hw_broken",
        "import a_module_that_does_not_exist\n",
        {"evaluator/broken_eval.yaml": EVAL_YAML},
    )
    env = {"PYTHONPATH": str(site)}
    ok = cli("run", "evaluator=good_eval", "budget.trials=3", f"hydra.run.dir={tmp_path / 'ok'}", env=env)
    assert ok.returncode == 0, ok.stderr
    bad = cli("run", "evaluator=broken_eval", "budget.trials=3", f"hydra.run.dir={tmp_path / 'bad'}", env=env)
    assert bad.returncode == 2
    assert "plugin 'broken'" in bad.stderr and "a_module_that_does_not_exist" in bad.stderr


def test_environment_switches(site, monkeypatch):
    make_plugin(site, "hwaml-good", "good", "hw_good", GOOD.format(module="hw_good"))
    make_plugin(site, "hwaml-other", "other", "hw_other", GOOD.format(module="hw_other"))
    monkeypatch.setenv("HWAML_LOAD_PLUGINS", "other")
    reg = load_plugins(refresh=True)
    assert reg.info("other").status == "loaded" and reg.info("good").status == "disabled"
    monkeypatch.setenv("HWAML_LOAD_PLUGINS", "")
    reg = load_plugins(refresh=True)
    assert all(i.status == "disabled" for i in reg.infos)
    monkeypatch.delenv("HWAML_LOAD_PLUGINS")
    monkeypatch.setenv("HWAML_DISABLE_PLUGINS", "good")
    reg = load_plugins(refresh=True)
    assert reg.info("good").status == "disabled" and reg.info("other").status == "loaded"


def test_two_plugins_with_the_same_option_is_an_error_naming_both(site, tmp_path, cli):
    make_plugin(site, "hwaml-a", "alpha", "hw_alpha", GOOD.format(module="hw_alpha"), {"evaluator/same.yaml": EVAL_YAML})
    make_plugin(site, "hwaml-b", "beta", "hw_beta", GOOD.format(module="hw_beta"), {"evaluator/same.yaml": EVAL_YAML})
    reg = load_plugins(refresh=True)
    with pytest.raises(PluginError) as err:
        reg.check_conflicts()
    assert "evaluator/same.yaml" in str(err.value) and "'alpha'" in str(err.value) and "'beta'" in str(err.value)
    out = cli("run", "evaluator=analytic", f"hydra.run.dir={tmp_path / 'r'}", env={"PYTHONPATH": str(site)})
    assert out.returncode == 2 and "'alpha' and 'beta'" in out.stderr


def test_plugin_shipping_a_core_option_conflicts(site):
    make_plugin(site, "hwaml-c", "gamma", "hw_gamma", GOOD.format(module="hw_gamma"), {"searcher/random.yaml": EVAL_YAML})
    with pytest.raises(PluginError, match="hwaml \\(core\\)"):
        load_plugins(refresh=True).check_conflicts()


def test_plugins_json_lists_everything(site, cli):
    make_plugin(site, "hwaml-good", "good", "hw_good", GOOD.format(module="hw_good"), {"evaluator/good_eval.yaml": EVAL_YAML})
    make_plugin(site, "hwaml-broken", "broken", "hw_broken", "raise RuntimeError('boom at import')\n")
    out = cli("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    data = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    assert data["good"]["status"] == "loaded" and data["good"]["config_groups"] == ["evaluator/good_eval"]
    assert data["good"]["hooks"] == ["config_search_path"] and data["good"]["distribution"] == "hwaml-good"
    assert data["broken"]["status"] == "failed" and "boom at import" in data["broken"]["error"]
    text = cli("plugins", env={"PYTHONPATH": str(site)}).stdout
    assert "broken" in text and "boom at import" in text


def test_first_party_plugins_load():
    reg = load_plugins(refresh=True)
    for info in reg.infos:
        assert info.status == "loaded", f"{info.name}: {info.error}"
