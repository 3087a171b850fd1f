"""The hook contract is documented the way pytest documents its hooks."""

import inspect

import pytest

from hwaml import hookspecs

HOOKS = ["search_space", "propose", "cost", "evaluate", "deploy", "config_search_path", "trial_completed", "metric_names", "build_model", "run_finished"]


def spec(name):
    return getattr(hookspecs, name)


def test_exactly_the_designed_hooks_exist():
    found = sorted(n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "hwaml_spec"))
    assert found == sorted(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_docstring_lists_parameters_return_and_implementer(name):
    f = spec(name)
    doc = inspect.getdoc(f)
    assert doc and len(doc.splitlines()[0]) < 90
    for p in inspect.signature(f).parameters:
        assert f":param {p}:" in doc, f"{name}: parameter {p} undocumented"
    if name != "trial_completed":
        assert ":return:" in doc
    assert "Implemented by:" in doc
    firstresult = f.hwaml_spec["firstresult"]
    assert ("Stops at first non-None result." in doc) == firstresult


@pytest.mark.parametrize("name", HOOKS)
def test_hook_arguments_have_no_defaults(name):
    for p in inspect.signature(spec(name)).parameters.values():
        assert p.default is inspect.Parameter.empty


def test_firstresult_hooks_are_the_exclusive_ones():
    from hwaml.plugins import EXCLUSIVE_HOOKS

    first = {n for n in HOOKS if spec(n).hwaml_spec["firstresult"]}
    assert first == set(EXCLUSIVE_HOOKS)
