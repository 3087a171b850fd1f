"""The example plugins install and work the way the docs say.

One virtual environment for the module: ``python -m venv`` that sees this
interpreter's packages (through a ``.pth`` file when this is a virtualenv, else
``--system-site-packages``)
(hwaml and its dependencies come from the system site; ``--without-pip`` because
the system's pip is visible through it and bootstrapping a second pip costs
seconds), then ``pip install --no-deps --no-build-isolation --no-index`` of
examples/hwaml-roofline and of a renamed copy of examples/plugin_template —
offline, with the setuptools already installed. Everything after that runs with
the venv's interpreter, as a user of the installed plugins would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOFLINE = ROOT / "examples" / "hwaml-roofline"
TEMPLATE = ROOT / "examples" / "plugin_template"

# The template renamed the way its README says, so a stray "myplugin" left in a
# file name, an entry point or a YAML option breaks this test.
NEW_NAME = "tmplcheck"


def rename_template(src: Path, dest: Path, new: str) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    for path in sorted(dest.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            text = path.read_text()
            if "myplugin" in text:
                path.write_text(text.replace("myplugin", new))
        if "myplugin" in path.name:
            path.rename(path.with_name(path.name.replace("myplugin", new)))
    return dest


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("examples")
    env_dir = base / "venv"
    in_venv = sys.prefix != sys.base_prefix
    # Inside a virtualenv (.venv, CI's) the base interpreter's site-packages must not
    # leak in (they hold whatever the machine had preinstalled): no --system-site-packages.
    flags = [] if in_venv else ["--system-site-packages"]
    subprocess.run([sys.executable, "-m", "venv", *flags, "--without-pip", str(env_dir)], check=True, timeout=60)
    python = env_dir / "bin" / "python"
    if in_venv:
        # This interpreter is itself a virtualenv's (CI's, .venv): a venv made from it
        # sees the *base* interpreter's site-packages, not this one's (where hwaml,
        # setuptools and wheel are). Hand them on with an `import` line in a .pth file,
        # so that their own .pth files (editable installs) are processed too.
        import site

        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
        (Path(purelib) / "_parent_env.pth").write_text("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site.getsitepackages()) + "\n")
    # Build from copies: setuptools writes build/ and *.egg-info next to the sources.
    roofline = base / "hwaml-roofline"
    shutil.copytree(ROOFLINE, roofline, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    template = rename_template(TEMPLATE, base / "template", NEW_NAME)
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check", "-q", str(roofline), str(template)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only our two plugins are imported: the test does not depend on (or pay for)
    # whichever first-party plugins the system site holds.
    env = dict(os.environ, HWAML_LOAD_PLUGINS=f"roofline,{NEW_NAME}", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    return {"python": python, "env": env, "roofline": roofline, "template": template, "base": base}


def run(venv, *args, cwd=None, timeout=120):
    return subprocess.run([str(venv["python"]), *map(str, args)], cwd=cwd or venv["base"], env=venv["env"], capture_output=True, text=True, timeout=timeout)


def test_installed_into_the_venv_not_the_system(venv):
    proc = run(venv, "-c", "import hwaml_roofline, sys; print(hwaml_roofline.__file__); print(sys.prefix)")
    assert proc.returncode == 0, proc.stderr
    module_file, prefix = proc.stdout.split()
    assert Path(module_file).is_relative_to(prefix) and Path(prefix) == venv["python"].parent.parent
    # ... and the system interpreter does not see it
    assert subprocess.run([sys.executable, "-c", "import hwaml_roofline"], capture_output=True, cwd=venv["base"]).returncode != 0


def test_plugins_json_lists_both_examples(venv):
    proc = run(venv, "-m", "hwaml.cli", "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert listing["conflicts"] is None

    roofline = plugins["roofline"]
    assert roofline["status"] == "loaded", roofline["error"]
    assert roofline["distribution"] == "hwaml-roofline"
    assert roofline["module"] == "hwaml_roofline.plugin"
    assert roofline["hooks"] == ["config_search_path", "trial_completed"]
    assert roofline["config_groups"] == ["backend/roofline_a76", "backend/roofline_cortex_m7", "experiment/roofline_m7"]

    mine = plugins[NEW_NAME]
    assert mine["status"] == "loaded", mine["error"]
    assert mine["distribution"] == f"hwaml-{NEW_NAME}"
    assert mine["hooks"] == ["config_search_path"]
    assert mine["config_groups"] == [f"backend/{NEW_NAME}_cost", f"evaluator/{NEW_NAME}_eval", f"searcher/{NEW_NAME}_search"]


def test_roofline_runs_through_hydra_and_writes_jsonl(venv):
    run_dir = venv["base"] / "run_m7"
    proc = run(
        venv,
        "-m", "hwaml.cli", "run",
        "evaluator=analytic", "backend=[roofline_cortex_m7]", "searcher=random",
        "+constraints.roofline_latency_ms=60", "budget.trials=8", f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"8 trials in {run_dir}" in proc.stdout
    lines = [json.loads(line) for line in (run_dir / "roofline_trials.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    assert [line["number"] for line in lines] == list(range(8))
    # the option came through the entry point and its _target_ was instantiated
    hydra_cfg = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "_target_: hwaml_roofline.RooflineCost" in hydra_cfg and "device: cortex_m7" in hydra_cfg
    # the constraint is checked on the roofline metric: random search breaks it sometimes
    for line in lines:
        latency = line["cost"]["roofline_latency_ms"]
        assert line["status"] == ("complete" if latency <= 60 else "infeasible"), line
    assert {line["status"] for line in lines} == {"complete", "infeasible"}


def test_template_runs_through_hydra(venv):
    run_dir = venv["base"] / "run_template"
    proc = run(
        venv,
        "-m", "hwaml.cli", "run",
        f"evaluator={NEW_NAME}_eval", f"backend=[{NEW_NAME}_cost]", f"searcher={NEW_NAME}_search",
        f"+constraints.{NEW_NAME}_params=8", "budget.trials=6", "deploy.enabled=true", f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    best = json.loads((run_dir / "best.json").read_text())
    assert best["objectives"] == {"r2": "max"}  # the evaluator's default_objectives
    assert best["trials"] == 6 and best["best"]["cost"][f"{NEW_NAME}_params"] <= 8
    # the template's searcher and deploy step, renamed like everything else
    assert f"_target_: hwaml_{NEW_NAME}.MySearcher" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert (run_dir / "deploy" / f"{NEW_NAME}_trial{best['best']['number']}.h").is_file()
    # no roofline backend in this run: the roofline observer stays quiet
    assert not (run_dir / "roofline_trials.jsonl").exists()


def test_disabled_plugin_is_named_when_its_option_is_asked_for(venv):
    env = dict(venv["env"], HWAML_DISABLE_PLUGINS="roofline")
    proc = subprocess.run(
        [str(venv["python"]), "-m", "hwaml.cli", "run", "evaluator=analytic", "backend=[roofline_a76]", f"hydra.run.dir={venv['base'] / 'never'}"],
        env=env, capture_output=True, text=True, timeout=120, cwd=venv["base"],
    )
    assert proc.returncode == 2
    assert "backend option 'roofline_a76'" in proc.stderr
    assert "shipped by plugin 'roofline' (hwaml-roofline), which is disabled" in proc.stderr


def test_examples_own_tests_pass_in_the_venv(venv):
    # one pytest process for both examples: interpreter start-up is most of the cost
    proc = run(
        venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-rA",
        venv["template"] / "tests", venv["roofline"] / "tests", timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]  # "== 23 passed in 4.2s =="
    assert re.search(r"\d+ passed", summary) and not re.search(r"failed|error", summary), summary
    passed = proc.stdout.count("PASSED ")
    template = len(re.findall(rf"PASSED \S*test_{NEW_NAME}\.py::", proc.stdout))
    roofline = len(re.findall(r"PASSED \S*test_roofline\.py::", proc.stdout))
    assert template >= 10 and roofline >= 13 and passed == template + roofline, proc.stdout[-3000:]
