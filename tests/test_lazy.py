import sys
import textwrap

from hwaml.lazy import lazy_exports


def test_lazy_exports_import_on_first_use(tmp_path, monkeypatch):
    pkg = tmp_path / "lazypkg_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from hwaml.lazy import lazy_exports
            __getattr__, __dir__, __all__ = lazy_exports(__name__, {"heavy_fn": ".heavy"})
            """
        )
    )
    (pkg / "heavy.py").write_text("def heavy_fn():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazypkg_demo

    assert "lazypkg_demo.heavy" not in sys.modules
    assert lazypkg_demo.__all__ == ["heavy_fn"] and "heavy_fn" in dir(lazypkg_demo)
    assert lazypkg_demo.heavy_fn() == 42
    assert "lazypkg_demo.heavy" in sys.modules
    assert "heavy_fn" in vars(lazypkg_demo)  # cached after the first lookup
    try:
        lazypkg_demo.missing
    except AttributeError as exc:
        assert "missing" in str(exc)
    else:
        raise AssertionError("unknown names must raise AttributeError")


def test_first_party_plugins_do_not_import_torch_at_load(cli):
    out = cli("plugins", "--json", env={"PYTHONPROFILEIMPORTTIME": "1"})
    heavy = [line for line in out.stderr.splitlines() if line.rstrip().endswith((" torch", " scipy"))]
    assert not heavy, "a plugin's entry point imports torch/scipy at load time: " + "; ".join(heavy)
