"""The composition matrix: any NN evaluator with any NN backend, any generic
searcher with any evaluator, and a specialised searcher that cannot work with an
evaluator stops at start naming both.

The matrix is declared once here; ``docs/composition.md`` is rendered from it
(``python tests/test_composition.py`` rewrites the page) and a test checks the page
is current, so the table in the docs is what the tests run. A guard test fails
when a shipped evaluator, backend or searcher is missing from the matrix.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "composition.md"

#: image NN evaluators (they answer build_model) and the overrides that shrink them for tests
NN_EVALUATORS: Dict[str, List[str]] = {
    "ofa_digits": ["evaluator.arch=test_tiny", "evaluator.training.epochs={full:2,kernel:1,depth:1,expand:1}", "evaluator.calibration_size=100", "evaluator.progress=false"],
    "tinynas_digits": [
        "evaluator.base_arch=mcunet_test",
        "evaluator.device=stm32f746",
        "evaluator.stage1.widths=[0.5,1.0]",
        "evaluator.stage1.resolutions=[12,16]",
        "evaluator.stage1.samples_per_space=3",
        "evaluator.training.epochs={full:2,kernel:1,depth:1,expand:1}",
        "evaluator.training.calibration_size=100",
        "evaluator.progress=false",
    ],
    "tinyengine_digits": ["evaluator.epochs=1", "evaluator.resolutions=[16]", "evaluator.widths=[0.5]", "evaluator.depths=[4]", "evaluator.calib_samples=32"],
    "tinytl_fashion": [
        "evaluator.arch=test", "evaluator.data.n_train=4", "evaluator.data.n_val=2", "evaluator.data.n_test=2",
        "evaluator.pretrain.n_train=10", "evaluator.pretrain.n_val=5", "evaluator.pretrain.epochs=1", "evaluator.training.epochs=1", "evaluator.progress=false",
    ],
    "apq_digits": [
        "evaluator.arch=test_tiny", "evaluator.data.train_limit=64", "evaluator.data.val_limit=32", "evaluator.qat.max_steps_per_epoch=1",
        "evaluator.qat.calibration_images=16", "evaluator.qat.kl_bins=32", "evaluator.calibration_size=16", "evaluator.progress=false",
        "evaluator.training.epochs={full:1,kernel:1,depth:[1,1],expand:[1,1]}",
    ],
}
#: NN evaluators' epoch fidelity for pruning: the overrides that make them report per epoch, and how many epochs
PRUNING: Dict[str, tuple] = {
    "ofa_digits": (["evaluator.finetune_epochs=2"], 2),
    "tinynas_digits": (["evaluator.finetune.epochs=2"], 2),
    "tinyengine_digits": (["evaluator.epochs=2"], 2),
    "tinytl_fashion": (["evaluator.training.epochs=2"], 2),
    "apq_digits": (["evaluator.qat.epochs=2"], 2),
}
#: NN cost backends (they cost ctx.build_model's network, whichever evaluator built it) and their test overrides
NN_BACKENDS: Dict[str, List[str]] = {
    "mcu64k": [],
    "stm32f412": [],
    "stm32f746": [],
    "stm32h743": [],
    "macs": [],
    "host_cpu_lut": ["backend.host_cpu_lut.measure.repeats=3", "backend.host_cpu_lut.measure.warmup=1", "backend.host_cpu_lut.measure.calibrate=2", "backend.host_cpu_lut.progress=false"],
    "tinytl_memory": [],
    "bitfusion": [],
}
MCU_BACKENDS = ("mcu64k", "stm32f412", "stm32f746", "stm32h743")
#: cells of NN evaluator x NN backend that are refused, with the clear error the run must name
REFUSED: Dict[tuple, str] = {
    # TinyEngine compiles conv/linear modules; a weight-standardised conv (tinytl) and a
    # trainable activation clip (apq) use a parameter directly in the forward pass
    **{("tinytl_fashion", b): "used directly in the forward pass" for b in MCU_BACKENDS},
    **{("apq_digits", b): "used directly in the forward pass" for b in MCU_BACKENDS},
}
#: backends whose macs_m must equal the evaluator's own count (for the evaluators that count MACs themselves)
MACS_BACKENDS = ("mcu64k", "macs")
#: NN evaluators whose build_model gives no MAC count of their own (nothing to compare with)
NO_OWN_MACS = ("tinytl_fashion", "apq_digits")
#: evaluators that build networks the image backends do not take (token ids, point clouds):
#: their test overrides and what every image backend says when given one
MODEL_EVALUATORS: Dict[str, List[str]] = {
    "micronet_pydocs": [
        "evaluator.data.kind=pydoc_topics", "evaluator.data.min_count=2", "evaluator.space.n_layers=[1]", "evaluator.space.d_model=[32]",
        "evaluator.space.cutoffs=[\"300,1200\"]", "evaluator.space.sparsity=[0.5]", "evaluator.space.bits=[9]", "evaluator.model.seq_len=16",
        "evaluator.model.mem_len=16", "evaluator.model.n_cache=32", "evaluator.stages.train.max_train_tokens=3000", "evaluator.stages.prune.max_train_tokens=1500",
        "evaluator.stages.quantize.max_train_tokens=1000", "evaluator.stages.train.warmup_steps=2", "evaluator.stages.max_eval_tokens=500",
        "evaluator.stages.max_test_tokens=500", "evaluator.progress=false", "evaluator.threads=1",
    ],
    "spvnas_lidar": [
        "evaluator.data={train_scans:2,val_scans:1,columns:96,voxel_size:0.8,seed:0}", "evaluator.space={width_multiplier:0.125,granularity:4}",
        "evaluator.supernet_training={epochs:1,batch_size:2,lr:0.05,warmup_epochs:0.0,bn_calibration_scans:1}",
        "evaluator.training.bn_calibration_scans=1", "evaluator.cost_scans=1", "evaluator.progress=false",
    ],
}
#: evaluators whose networks (image-to-image generators) their own backends cost: the
#: image classifiers' backends are not claimed for them (tested in the plugin's tests)
GENERATOR_EVALUATORS: Dict[str, List[str]] = {
    "gan_paired": [
        "evaluator.data.n_train=48", "evaluator.data.n_val=40", "evaluator.data.n_test=16", "evaluator.teacher.ngf=4", "evaluator.teacher.n_blocks=3",
        "evaluator.student.ngf=4", "evaluator.student.n_blocks=3", "evaluator.teacher.layers=[model.9,model.12]", "evaluator.student.layers=[model.9,model.12]",
        "evaluator.training.teacher_epochs=1", "evaluator.training.teacher_decay_epochs=0", "evaluator.training.supernet_epochs=1",
        "evaluator.training.supernet_decay_epochs=0", "evaluator.training.ndf=8",
        "evaluator.metric.training={epochs: 1, n_train: 1000, n_eval: 500, width: 8, feature_dim: 8, batch_size: 100}",
        "evaluator.metric.kid_subsets=3", "evaluator.latency_repeats=3", "evaluator.progress=false",
    ],
}
#: what an image backend says when given a model evaluator's network
IMAGE_BACKEND_REFUSAL = {"macs": "costs image networks", "host_cpu_lut": "costs image networks", "mcu64k": "compiles image networks"}
#: the same evaluator class as a tested one, on other data (files the tests do not have, or another data set)
VARIANTS: Dict[str, str] = {
    "ofa_fashion": "ofa_digits",
    "tinytl_digits": "tinytl_fashion",
    "tinytl_letters": "tinytl_fashion",
    "tinytl_imagefolder": "tinytl_fashion",
    "apq_fashion": "apq_digits",
    "micronet_wikitext": "micronet_pydocs",
    "gan_unpaired": "gan_paired",
}
#: searchers that work with every evaluator
GENERIC_SEARCHERS = ["random", "evolution", "optuna_tpe", "optuna_cmaes", "optuna_nsga2", "optuna_gp", "optuna_qmc"]
#: evaluators whose trials train for seconds: the searcher matrix runs these searchers on them
#: (the others share their propose code paths with these on the same space types)
HEAVY_SEARCHERS = {"gan_paired": ["random", "optuna_tpe"], "micronet_pydocs": ["random", "optuna_tpe"], "spvnas_lidar": ["random", "evolution"], "tinytl_fashion": ["random", "optuna_tpe"], "apq_digits": ["random", "evolution"]}
#: every evaluator, with test overrides (the NN ones above included)
EVALUATORS: Dict[str, List[str]] = {
    "analytic": [],
    **NN_EVALUATORS,
    **MODEL_EVALUATORS,
    **GENERATOR_EVALUATORS,
    "circuit_two_stage_amp": [],
    "circuit_two_stage_tia": [],
    "circuit_three_stage_tia": [],
    "circuit_ldo": [],
    "sparch_design": ["evaluator.workload=[{kind:rmat,scale:7,edge_factor:4,seed:0}]"],
}
#: other backends: each with the evaluators it costs (those marked * cost ctx.build_model's network of that evaluator only)
OTHER_BACKENDS = {
    "analytic_cost": ["analytic"],
    "sparch": ["sparch_design"],
    "sparch_area": ["sparch_design"],
    "micronet_score": ["micronet_pydocs*"],
    "spvnas_macs": ["spvnas_lidar*"],
    "spvnas_latency": ["spvnas_lidar*"],
    "gan_macs": ["gan_paired*", "gan_unpaired*"],
    "gan_latency": ["gan_paired*", "gan_unpaired*"],
}
#: specialised searchers: the evaluators they run with here ("works_with"; "plugin_tests": run
#: in the plugin's own tests, with the cost backend and constraints they need), one they refuse at start
SPECIALISED = {
    "ofa_evolution": {"works_with": ["ofa_digits", "tinynas_digits"], "refuses": "analytic", "needs": "an OFA space"},
    "gcn_rl": {"works_with": ["circuit_two_stage_amp", "circuit_two_stage_tia", "circuit_three_stage_tia", "circuit_ldo"], "refuses": "analytic", "needs": "a circuit graph"},
    "apq_evolution": {"works_with": [], "plugin_tests": ["apq_digits"], "refuses": "analytic", "needs": "the APQ joint space"},
    "amc": {"works_with": [], "plugin_tests": ["apq_digits", "ofa_digits"], "refuses": "analytic", "needs": "channel widths and a latency/energy budget"},
    "haq": {"works_with": [], "plugin_tests": ["apq_digits"], "refuses": "analytic", "needs": "per-layer bit-widths"},
    "nas_amc_haq": {"works_with": [], "plugin_tests": ["apq_digits"], "refuses": "analytic", "needs": "the APQ joint space"},
    # the published evolution's sizes with budget rejection: it works on any space
    "gan_evolution": {"works_with": ["gan_paired", "analytic"], "refuses": None, "needs": "nothing"},
    # 3D-NAS evolution: the spvnas plugin's end-to-end `hwaml run` test runs it (experiment=spvnas_procedural)
    "spvnas_evolution": {"works_with": [], "plugin_tests": ["spvnas_lidar"], "refuses": "analytic", "needs": "the SPVNAS space"},
}


def shipped(group: str) -> Dict[str, str]:
    """Every shipped option of a config group -> its _target_."""
    out, inherits = {}, {}
    for yaml in list(ROOT.glob(f"hydra_conf/{group}/*.yaml")) + list(ROOT.glob(f"plugins/*/src/*/conf/{group}/*.yaml")):
        text = yaml.read_text()
        m = re.search(r"^_target_:\s*(\S+)", text, flags=re.M)
        if m:
            out[yaml.stem] = m.group(1)
        else:  # an option that extends another of its group (defaults: [- other, - _self_])
            d = re.search(r"^defaults:\s*\n\s*-\s*([A-Za-z0-9_]+)\s*$", text, flags=re.M)
            if d:
                inherits[yaml.stem] = d.group(1)
    for name, base in inherits.items():
        if base in out:
            out[name] = out[base]
    return out


def _cls(target: str):
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------
# the docs page
# ---------------------------------------------------------------------------


def render() -> str:
    lines = [
        "# Composition matrix",
        "",
        "Which components run together, as `tests/test_composition.py` runs them (this page is",
        "rendered from that file: `python tests/test_composition.py`; a test fails when it is stale).",
        "Shrunk configurations; the real scale is the same configs without the test overrides.",
        "",
        "## NN evaluators x NN backends",
        "",
        "Each cell: `hwaml run evaluator=E 'backend=[B]' searcher=random` finishes its trials (one per backend",
        "in one multirun; two with `host_cpu_lut`), none failed, and the backend costs the evaluator's network (`build_model`). In the",
        f"cells marked *MACs =*, the backend's `macs_m` equals the evaluator's own count for sampled candidates.",
        "",
        "| evaluator \\ backend | " + " | ".join(f"`{b}`" for b in NN_BACKENDS) + " |",
        "| --- | " + " | ".join("---" for _ in NN_BACKENDS) + " |",
    ]
    for e in NN_EVALUATORS:
        cells = ["refused (named)" if (e, b) in REFUSED else ("runs, MACs =" if b in MACS_BACKENDS and e not in NO_OWN_MACS else "runs") for b in NN_BACKENDS]
        lines.append(f"| `{e}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "*Refused (named)*: every trial fails with the backend's reason and the run exits 1 naming it: "
        + "; ".join(sorted({f"`{e}` on TinyEngine: {why}" for (e, b), why in REFUSED.items()})) + ".",
        "",
        "Test overrides: " + "; ".join(f"`{e}`: {' '.join(f'`{o}`' for o in ov)}" for e, ov in NN_EVALUATORS.items()) + ".",
        "",
        "## Pruning and trackers on every NN evaluator",
        "",
        "`hwaml run evaluator=E searcher=random budget.trials=3 pruner=hyperband '+observer=[mlflow,tensorboard,optuna_journal]'`",
        "for every NN evaluator above: each trial reports validation accuracy per epoch (pruned or complete, never",
        "failed), and MLflow (a parent run and a nested run per trial), TensorBoard (event files) and the Optuna",
        "journal (same states and intermediate values) hold every trial. Epoch overrides: "
        + "; ".join(f"`{e}`: {' '.join(f'`{o}`' for o in ov)}" for e, (ov, _) in PRUNING.items()) + ".",
        "",
        "## Evaluators whose networks are not images",
        "",
        "They answer `build_model` for their own backends; the image backends refuse their networks naming the",
        "input (" + ", ".join(f"`{b}`: *{w}*" for b, w in IMAGE_BACKEND_REFUSAL.items()) + "):",
        "",
        *[f"- `{e}`" for e in MODEL_EVALUATORS],
        "",
        "## Generators",
        "",
        "Image-to-image generators, costed by their own backends (`gan_macs`, `gan_latency`; the plugin's tests",
        "also run `host_cpu_lut`): " + ", ".join(f"`{e}`" for e in GENERATOR_EVALUATORS) + ".",
        "",
        "## Variants",
        "",
        "The same evaluator class as a tested one on other data: "
        + ", ".join(f"`{v}` (as `{of}`)" for v, of in VARIANTS.items()) + ".",
        "",
        "## Searchers x evaluators",
        "",
        "Each *runs* cell: two trials of that searcher on that evaluator through the real loop and store.",
        "A specialised searcher composed with an evaluator that lacks what it needs stops at start with",
        "an error naming both (*refused at start*). *(same code path)*: evaluators whose trials train for",
        "seconds run two searchers here; the others propose through the same space operations.",
        "",
        "| searcher \\ evaluator | " + " | ".join(f"`{e}`" for e in EVALUATORS) + " |",
        "| --- | " + " | ".join("---" for _ in EVALUATORS) + " |",
    ]
    for s in GENERIC_SEARCHERS:
        lines.append(f"| `{s}` | " + " | ".join("runs" if s in HEAVY_SEARCHERS.get(e, GENERIC_SEARCHERS) else "(same code path)" for e in EVALUATORS) + " |")
    for s, spec in SPECIALISED.items():
        cells = [
            "runs" if e in spec["works_with"] else "runs (plugin tests)" if e in spec.get("plugin_tests", []) else ("refused at start" if e == spec["refuses"] else "-")
            for e in EVALUATORS
        ]
        lines.append(f"| `{s}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Other backends",
        "",
        "| backend | costs |",
        "| --- | --- |",
    ]
    for b, evs in OTHER_BACKENDS.items():
        lines.append(f"| `{b}` | {', '.join(f'`{e}`' for e in evs)} |")
    return "\n".join(lines) + "\n"


def test_the_docs_table_is_current():
    assert DOC.is_file() and DOC.read_text() == render(), "docs/composition.md is stale: run `python tests/test_composition.py`"


def test_every_shipped_component_is_in_the_matrix():
    evaluators, backends, searchers = shipped("evaluator"), shipped("backend"), shipped("searcher")
    assert set(evaluators) == set(EVALUATORS) | set(VARIANTS), f"evaluators not in the matrix: {set(evaluators) ^ (set(EVALUATORS) | set(VARIANTS))}"
    assert set(searchers) == set(GENERIC_SEARCHERS) | set(SPECIALISED), f"searchers not in the matrix: {set(searchers) ^ (set(GENERIC_SEARCHERS) | set(SPECIALISED))}"
    assert set(backends) == set(NN_BACKENDS) | set(OTHER_BACKENDS), f"backends not in the matrix: {set(backends) ^ (set(NN_BACKENDS) | set(OTHER_BACKENDS))}"
    for name, target in evaluators.items():
        is_nn = hasattr(_cls(target), "build_model")
        models = set(NN_EVALUATORS) | set(MODEL_EVALUATORS) | set(GENERATOR_EVALUATORS)
        assert is_nn == (name in models or VARIANTS.get(name) in models), f"evaluator {name}: build_model={is_nn} but the matrix says otherwise"
    for name, of in VARIANTS.items():
        assert evaluators[name] == evaluators[of], f"variant {name} ({evaluators[name]}) is not the class of {of} ({evaluators[of]})"
    for name, target in backends.items():
        uses_model = "ctx.build_model" in inspect.getsource(sys.modules[_cls(target).__module__]) or "build_model" in inspect.getsource(_cls(target))
        if name in NN_BACKENDS:
            assert uses_model, f"backend {name} is an NN backend but does not cost ctx.build_model's network"
        else:
            assert uses_model == any(e.endswith("*") for e in OTHER_BACKENDS[name]), f"backend {name}: costs ctx.build_model={uses_model} but OTHER_BACKENDS says otherwise"
    assert set(PRUNING) == set(NN_EVALUATORS)
    assert all(e in NN_EVALUATORS and b in NN_BACKENDS for e, b in REFUSED)


# ---------------------------------------------------------------------------
# NN evaluator x NN backend, through `hwaml run`
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hwaml_cache")


def _shrunk(evaluator: str, cache_dir: Path) -> List[str]:
    """The evaluator's test overrides; tinynas keeps stage 1 and its supernet in the module's cache
    (neither depends on the backend, searcher or pruner), so the matrix trains one per worker."""
    extra = [f"evaluator.state_dir={cache_dir / 'tinynas_state'}"] if evaluator == "tinynas_digits" else []
    return [*NN_EVALUATORS[evaluator], *extra]


def _check_runs(sweep: Path, want: int, trials: int = 2) -> List[dict]:
    stores = sorted(sweep.rglob("trials.sqlite"))
    assert len(stores) == want, f"{len(stores)} runs under {sweep}, expected {want}"
    out = []
    for store in stores:
        con = sqlite3.connect(store)
        rows = con.execute("SELECT status, cost, error FROM trials ORDER BY number").fetchall()
        assert len(rows) == trials, f"{store}: {len(rows)} trials, expected {trials}"
        for status, cost, error in rows:
            assert status in ("complete", "infeasible"), f"{store}: a trial {status}: {(error or '').strip().splitlines()[-1:]}"
            out.append(json.loads(cost))
    return out


@pytest.mark.parametrize("evaluator", list(NN_EVALUATORS))
def test_nn_evaluator_with_every_nn_backend(evaluator, cli, tmp_path, cache_dir):
    env = {"HWAML_CACHE_DIR": str(cache_dir)}
    overrides = _shrunk(evaluator, cache_dir)
    plain = [b for b in NN_BACKENDS if not NN_BACKENDS[b] and (evaluator, b) not in REFUSED]
    sweep = tmp_path / "sweep"
    out = cli(
        "run",
        "--multirun",
        f"evaluator={evaluator}",
        "backend=" + ",".join(f"[{b}]" for b in plain),
        "searcher=random",
        "budget.trials=1",  # one network per backend (the host-LUT run below has two)
        "plots=false",
        f"hydra.sweep.dir={sweep}",
        *overrides,
        env=env,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    costs = _check_runs(sweep, len(plain), trials=1)
    assert all(c for c in costs)
    for b in (b for b in NN_BACKENDS if NN_BACKENDS[b] and (evaluator, b) not in REFUSED):
        run = tmp_path / b
        out = cli("run", f"evaluator={evaluator}", f"backend=[{b}]", "searcher=random", "budget.trials=2", "plots=false", f"hydra.run.dir={run}", *overrides, *NN_BACKENDS[b], env=env, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        assert all(c.get("latency_ms", 0) > 0 for c in _check_runs(run, 1))
    # a refused cell: every trial fails with the backend's clear reason, and the run says so
    refused = [b for b in NN_BACKENDS if (evaluator, b) in REFUSED][:1]  # the MCU profiles share one code path
    for b in refused:
        run = tmp_path / f"refused_{b}"
        out = cli("run", f"evaluator={evaluator}", f"backend=[{b}]", "searcher=random", "budget.trials=1", "plots=false", f"hydra.run.dir={run}", *overrides, env=env, timeout=900)
        assert out.returncode == 1, out.stdout + out.stderr[-3000:]
        assert re.search(REFUSED[(evaluator, b)], out.stderr), out.stderr[-3000:]


@pytest.mark.parametrize("evaluator", list(MODEL_EVALUATORS))
def test_image_backends_refuse_a_model_evaluators_network_naming_it(evaluator, tmp_path, cache_dir, monkeypatch):
    from hydra.utils import instantiate

    from hwaml import Candidate
    from hwaml.testing import compose_config, make_context

    monkeypatch.setenv("HWAML_CACHE_DIR", str(cache_dir))
    cfg = compose_config([f"evaluator={evaluator}", "backend=[" + ",".join(IMAGE_BACKEND_REFUSAL) + "]", *MODEL_EVALUATORS[evaluator], f"+evaluator.checkpoint={tmp_path / 'supernet.pt'}" if evaluator == "spvnas_lidar" else "seed=0"])
    ev = instantiate(cfg.evaluator, _convert_="all")
    backends = {b: instantiate(cfg.backend[b], _convert_="all") for b in IMAGE_BACKEND_REFUSAL}
    ctx = make_context(tmp_path / "run", evaluator=ev, cfg=cfg)
    cand = Candidate(ctx.space.sample(np.random.default_rng(0)))
    for b, why in IMAGE_BACKEND_REFUSAL.items():
        with pytest.raises(Exception, match=why):
            backends[b].cost(candidate=cand, ctx=ctx)


def test_every_nn_evaluator_reports_for_pruning():
    assert set(PRUNING) == set(NN_EVALUATORS), f"NN evaluators without an epoch fidelity in PRUNING: {sorted(set(NN_EVALUATORS) - set(PRUNING))}"


@pytest.fixture(scope="session")
def mlflow_db(tmp_path_factory):
    """One MLflow SQLite store per test process (creating its tables costs seconds)."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.mark.parametrize("evaluator", list(NN_EVALUATORS))
def test_nn_evaluator_with_hyperband_and_every_tracker(evaluator, cli, tmp_path, cache_dir, mlflow_db):
    """``pruner=hyperband +observer=[mlflow,tensorboard,optuna_journal]`` on every NN
    evaluator: trials report each epoch (pruned or complete, never failed) and every
    tracker holds every trial with its curve."""
    import optuna
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hwaml_optuna_dashboard.journal import open_storage

    overrides, epochs = PRUNING[evaluator]
    run = tmp_path / "run"
    out = cli(
        "run", f"evaluator={evaluator}", "searcher=random", "budget.trials=3", "plots=false", "pruner=hyperband",
        "+observer=[mlflow,tensorboard,optuna_journal]", f"observer.mlflow.tracking_uri=sqlite:///{mlflow_db}", f"observer.mlflow.experiment={evaluator}",
        "observer.tensorboard.hparams=false", "name=tracked",
        f"hydra.run.dir={run}", *_shrunk(evaluator, cache_dir), *overrides, env={"HWAML_CACHE_DIR": str(cache_dir)}, timeout=900,
        cwd=tmp_path,  # MLflow's artifact store of a SQLite tracking URI is ./mlruns
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "mlruns").is_dir()  # the artifacts went there, not into the checkout
    con = sqlite3.connect(run / "trials.sqlite")
    rows = con.execute("SELECT status, info, error FROM trials ORDER BY number").fetchall()
    assert len(rows) == 3
    curves = []
    for status, info, error in rows:
        assert status in ("complete", "pruned"), f"a trial {status}: {(error or '').strip().splitlines()[-1:]}"
        curve = json.loads(info)["intermediate"]
        steps = [s for s, _ in curve]
        # a pruned trial stops at a report (Hyperband may stop one at its last epoch's)
        assert steps == list(range(epochs)) if status == "complete" else steps == list(range(len(steps))) and 1 <= len(steps) <= epochs
        curves.append(curve)
    assert rows[0][0] == "complete"  # Hyperband sizes its brackets from the first finished trial
    assert "not recorded" not in out.stderr, out.stderr[-2000:]  # no tracker dropped or lost an event

    study = optuna.load_study(study_name="tracked/run", storage=open_storage(run / "optuna.journal"))
    assert [t.state.name.lower() for t in study.trials] == [r[0] for r in rows]
    assert [sorted(t.intermediate_values.items()) for t in study.trials] == [[(s, pytest.approx(v)) for s, v in c] for c in curves]
    assert study.user_attrs["stopped_because"] == "budget"

    client = MlflowClient(f"sqlite:///{mlflow_db}")
    exp = client.get_experiment_by_name(evaluator)
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3 and len(runs) == 4

    events = sorted((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event files"
    tags = set()
    for e in events:
        acc = EventAccumulator(str(e), size_guidance={"scalars": 0})
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert tags, "TensorBoard event files without scalars"


@pytest.mark.parametrize("evaluator", [e for e in NN_EVALUATORS if e not in NO_OWN_MACS])
def test_backend_macs_equal_the_evaluators_count(evaluator, tmp_path, cache_dir, monkeypatch):
    from hydra.utils import instantiate

    from hwaml import Candidate
    from hwaml.testing import compose_config, make_context

    monkeypatch.setenv("HWAML_CACHE_DIR", str(cache_dir))
    cfg = compose_config([f"evaluator={evaluator}", "backend=[" + ",".join(MACS_BACKENDS) + "]", *_shrunk(evaluator, cache_dir)])
    ev = instantiate(cfg.evaluator, _convert_="all")
    for b in MACS_BACKENDS:
        backend = instantiate(cfg.backend[b], _convert_="all")
        ctx = make_context(tmp_path / "run", evaluator=ev, backends={b: backend}, cfg=cfg)
        rng = np.random.default_rng(3)
        for _ in range(3):
            cand = Candidate(ctx.space.sample(rng))
            own = ctx.build_model(cand).macs
            assert own is not None and own > 0, f"{evaluator}.build_model gives no MAC count"
            got = backend.cost(candidate=cand, ctx=ctx).metrics["macs_m"]
            assert got == pytest.approx(own / 1e6, rel=1e-9), f"{b} counts {got} M MACs, {evaluator} {own / 1e6} M"


# ---------------------------------------------------------------------------
# searchers x evaluators, through the loop
# ---------------------------------------------------------------------------


def _evaluator(name: str, state: Path):
    from hydra.utils import instantiate

    from hwaml.testing import compose_config

    overrides = list(EVALUATORS[name])
    if name == "tinynas_digits":  # one stage 1 and one supernet for every searcher
        overrides.append(f"evaluator.state_dir={state}")
    cfg = compose_config([f"evaluator={name}", *overrides])
    return instantiate(cfg.evaluator, _convert_="all")


def _searcher(name: str):
    from hydra.utils import instantiate

    from hwaml.testing import compose_config

    extra = {"ofa_evolution": ["searcher.population_size=4", "searcher.generations=2", "searcher.warmup_trials=1", "searcher.predictor_epochs=5"]}.get(name, [])
    return instantiate(compose_config([f"searcher={name}", "evaluator=analytic", *extra]).searcher, _convert_="all")


@pytest.mark.parametrize("evaluator", list(EVALUATORS))
def test_every_searcher_runs_with_the_evaluator(evaluator, tmp_path, cache_dir, monkeypatch):
    from hwaml.testing import run_search

    monkeypatch.setenv("HWAML_CACHE_DIR", str(cache_dir))
    ev = _evaluator(evaluator, cache_dir / "tinynas_state")
    searchers = HEAVY_SEARCHERS.get(evaluator, GENERIC_SEARCHERS) + [s for s, spec in SPECIALISED.items() if evaluator in spec["works_with"]]
    for s in searchers:
        res = run_search({"searcher": _searcher(s), "evaluator": ev}, tmp_path / s, trials=2)
        assert len(res.trials) == 2 and all(t.status != "failed" for t in res.trials), f"{s} x {evaluator}: {[t.error for t in res.trials if t.error]}"


@pytest.mark.parametrize("searcher", [s for s, spec in SPECIALISED.items() if spec["refuses"]])
def test_a_specialised_searcher_refuses_an_evaluator_at_start(searcher, cli, tmp_path):
    spec = SPECIALISED[searcher]
    run = tmp_path / "run"
    out = cli("run", f"searcher={searcher}", f"evaluator={spec['refuses']}", "budget.trials=2", f"hydra.run.dir={run}")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "searcher" in out.stderr and "evaluator" in out.stderr and "cannot search the space" in out.stderr
    con = sqlite3.connect(run / "trials.sqlite")
    assert con.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
