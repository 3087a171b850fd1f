"""The docs keep up with the code.

- every hook in hwaml.hookspecs has a ``## name`` section in docs/hooks.md whose
  signature line (`` `name(a, b)` ``) lists exactly the spec's argument names,
  and no section documents a hook that does not exist (as datasette does);
- the example implementations in docs/hooks.md register with pluggy, which
  validates their argument names against the spec;
- every searcher and executor option under hydra_conf/ is mentioned in
  docs/configuration.md;
- the pages docs/index.md links to exist.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import types
from pathlib import Path

import pytest

from hwaml import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS_MD = DOCS / "hooks.md"
CONFIG_MD = DOCS / "configuration.md"


def spec_hooks() -> dict:
    """Hook name -> argument names, from the spec module."""
    out = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(fn, "hwaml_spec"):  # pluggy's HookspecMarker sets <project>_spec
            out[name] = list(inspect.signature(fn).parameters)
    return out


def documented_hooks(text: str) -> dict:
    """``## name`` section -> the argument names of its first `name(...)` code span."""
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    out = {}
    for section in sections:
        title, _, body = section.partition("\n")
        name = title.strip()
        match = re.search(rf"`{re.escape(name)}\(([^)`]*)\)`", body)
        out[name] = None if match is None else [a.strip() for a in match.group(1).split(",") if a.strip()]
    return out


def test_the_spec_module_has_hooks():
    # guards the detection itself: a pluggy change that hid the marker would
    # make every other test here pass vacuously
    assert {"propose", "evaluate", "cost", "search_space", "deploy", "config_search_path", "trial_completed"} <= set(spec_hooks())


@pytest.mark.parametrize("hook", sorted(spec_hooks()))
def test_hook_is_documented_with_its_signature(hook):
    docs = documented_hooks(HOOKS_MD.read_text())
    assert hook in docs, f"docs/hooks.md has no '## {hook}' section"
    assert docs[hook] is not None, f"the '## {hook}' section has no signature line like `{hook}(...)`"
    assert docs[hook] == spec_hooks()[hook], f"docs/hooks.md documents {hook}({', '.join(docs[hook])}), the spec is {hook}({', '.join(spec_hooks()[hook])})"


def test_no_documented_hook_is_unknown():
    known = set(spec_hooks())
    docs = documented_hooks(HOOKS_MD.read_text())
    # sections that are hooks have a signature line; prose sections do not
    stale = sorted(name for name, args in docs.items() if args is not None and name not in known)
    assert not stale, f"docs/hooks.md documents hooks that hookspecs.py does not define: {stale}"


def test_firstresult_hooks_say_so():
    text = HOOKS_MD.read_text()
    sections = {s.partition("\n")[0].strip(): s for s in re.split(r"^## ", text, flags=re.M)[1:]}
    for name in spec_hooks():
        fn = getattr(hookspecs, name)
        firstresult = fn.hwaml_spec.get("firstresult", False)
        says = "First result:" in sections[name]
        assert says == firstresult, f"'## {name}': firstresult={firstresult} but the section {'does' if says else 'does not'} have a 'First result:' line"


def test_hook_examples_register_with_pluggy():
    """Each ```python block in hooks.md defines valid hook implementations."""
    from hwaml.plugins import make_plugin_manager

    blocks = re.findall(r"```python\n(.*?)```", HOOKS_MD.read_text(), flags=re.S)
    implemented = set()
    for i, code in enumerate(blocks):
        namespace: dict = {}
        exec(compile(textwrap.dedent(code), f"docs/hooks.md[python block {i}]", "exec"), namespace)
        module = types.ModuleType(f"docs_block_{i}")  # module-level hook functions
        module.__dict__.update({k: v for k, v in namespace.items() if inspect.isfunction(v) and hasattr(v, "hwaml_impl")})
        classes = [c for c in namespace.values() if inspect.isclass(c) and any(hasattr(m, "hwaml_impl") for m in vars(c).values())]
        pm = make_plugin_manager()
        for obj in [module] + [cls.__new__(cls) for cls in classes]:
            pm.register(obj)  # pluggy.PluginValidationError on an argument name the spec lacks
        pm.check_pending()  # a misspelled hook name
        implemented |= {name for name in spec_hooks() if getattr(pm.hook, name).get_hookimpls()}
    assert implemented == set(spec_hooks()), f"hooks without an example in docs/hooks.md: {sorted(set(spec_hooks()) - implemented)}"


def config_options(group: str) -> list:
    return sorted(p.stem for p in (ROOT / "hydra_conf" / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["searcher", "executor"])
def test_config_options_are_documented(group):
    options = config_options(group)
    assert options, f"hydra_conf/{group}/ has no options"
    text = CONFIG_MD.read_text()
    missing = [o for o in options if not re.search(rf"`{re.escape(o)}`|{group}={re.escape(o)}\b", text)]
    assert not missing, f"docs/configuration.md does not mention {group} option(s) {missing}"


def test_index_links_resolve():
    text = (DOCS / "index.md").read_text()
    links = re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", text)
    assert {"getting-started.md", "configuration.md", "hooks.md", "writing-a-plugin.md", "architecture.md", "benchmarks.md"} <= set(links)
    # benchmarks.md is written by others and may land later; every other link must resolve
    broken = [link for link in links if link != "benchmarks.md" and not (DOCS / link).exists()]
    assert not broken, f"docs/index.md links to missing pages: {broken}"
