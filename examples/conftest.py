"""Lets ``python -m pytest examples`` run in the monorepo without installing the examples.

The examples are third-party-style distributions; hwaml's own suite installs them into a
fresh virtual environment (tests/test_examples.py) and runs their tests there. Run here
directly, their sources are put on ``sys.path`` when the packages are not installed, and
the tests that need the installed distribution (entry-point discovery) skip.
"""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for package, src in (("hwaml_myplugin", HERE / "plugin_template" / "src"), ("hwaml_roofline", HERE / "hwaml-roofline" / "src")):
    if importlib.util.find_spec(package) is None:
        sys.path.insert(0, str(src))
