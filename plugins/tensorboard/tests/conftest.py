import os
import subprocess
import sys

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def run_cli(*args, cwd=None, env=None, timeout=300):
    """The hwaml CLI in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "hwaml.cli", *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
