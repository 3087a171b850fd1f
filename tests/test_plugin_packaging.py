"""Every first-party plugin declares what it imports, loads alone, and keeps the layout.

A full "fresh virtualenv per plugin" install needs the network for every
dependency; this test gets the same guarantee from the metadata: every module a
plugin's source imports must belong to the plugin itself, the standard library, or
a distribution reachable through its declared requirements.
"""

import ast
import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(dist_name, extras=()):
    try:
        reqs = md.requires(dist_name) or []
    except md.PackageNotFoundError:
        return []
    out = []
    for r in reqs:
        name = re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0]
        marker = r.split(";", 1)[1] if ";" in r else ""
        if "extra ==" in marker and not any(f'extra == "{e}"' in marker for e in extras):
            continue
        out.append(_norm(name))
    return out


def _closure(dist_name):
    seen, todo = set(), [_norm(dist_name)]
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        todo.extend(_requirements(d))
    return seen


def _imports(src):
    mods = set()
    for py in src.rglob("*.py"):
        tree = ast.parse(py.read_text(), filename=str(py))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_declares_every_import(plugin):
    dist = f"hwaml-{plugin.name}"
    package = f"hwaml_{plugin.name.replace('-', '_')}"
    assert (plugin / "src" / package / "plugin.py").exists()
    assert (plugin / "src" / package / "conf" / "__init__.py").exists()
    assert (plugin / "README.md").stat().st_size > 500, "a plugin needs a README"
    assert list((plugin / "tests").glob("test_*.py")), "a plugin needs tests"
    allowed = _closure(dist)
    owners = md.packages_distributions()
    missing = []
    for mod in sorted(_imports(plugin / "src")):
        if mod in sys.stdlib_module_names or mod == package or mod == "__future__":
            continue
        dists = {_norm(d) for d in owners.get(mod, [])}
        if not dists:
            missing.append(f"{mod} (not installed at all)")
        elif not dists & allowed:
            missing.append(f"{mod} (from {sorted(dists)})")
    # imports inside functions of optional features must be declared as extras
    extras = set()
    try:
        for r in md.requires(dist) or []:
            if "extra ==" in r:
                extras.add(_norm(re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0]))
    except md.PackageNotFoundError:
        pytest.fail(f"{dist} is not installed (scripts/setup.sh installs every plugin)")
    missing = [m for m in missing if not any(e in m for e in extras)]
    assert not missing, f"{dist} imports modules it does not declare: {missing}"


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_loads_alone_and_lists_its_groups(plugin, cli):
    out = cli("plugins", "--json", env={"HWAML_LOAD_PLUGINS": plugin.name})
    assert out.returncode == 0, out.stderr
    infos = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    me = infos[plugin.name]
    assert me["status"] == "loaded", me["error"]
    assert me["hooks"] == ["config_search_path"] or "config_search_path" in me["hooks"]
    shipped = sorted(f"{p.parent.name}/{p.stem}" for p in (plugin / "src").rglob("conf/*/*.yaml"))
    assert sorted(me["config_groups"]) == shipped
    assert all(i["status"] == "disabled" for n, i in infos.items() if n != plugin.name)
