"""hwaml components: the sparch backends, the sparch_design evaluator, configs, search."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hwaml import Candidate, Trial
from hwaml.builtin import OptunaSearcher, RandomSearch, RegularizedEvolution
from hwaml.testing import BackendContract, EvaluatorContract, make_context, run_search

from hwaml_sparch_sim.arch import ArchConfigError
from hwaml_sparch_sim.components import AREA_METRICS, WORKLOAD_METRICS, SparchAreaBackend, SparchBackend, SparchDesignEvaluator
from hwaml_sparch_sim.matrices import WorkloadSpecError

WORKLOAD = [
    {"kind": "rmat", "scale": 8, "edge_factor": 6, "seed": 0},
    {"kind": "poisson2d", "n": 12},
]
SMALL_SPACE = {
    "merger_width": [4, 16],
    "buffer_lines": [16, 256],
    "line_elems": [16, 48],
    "huffman": [True, False],
    "prefetcher": [True, False],
}


def _evaluator(**kw):
    return SparchDesignEvaluator(workload=WORKLOAD, space=SMALL_SPACE, **kw)


class TestSparchDesignContract(EvaluatorContract):
    @pytest.fixture
    def evaluator(self):
        return _evaluator()


class TestSparchBackendContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return SparchBackend(workload=WORKLOAD)

    @pytest.fixture
    def candidates(self):
        return [Candidate({}), Candidate({"buffer_lines": 32, "merger_width": 8, "unrelated": 1})]


class TestSparchAreaContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return SparchAreaBackend()

    @pytest.fixture
    def candidates(self):
        return [Candidate({"buffer_lines": 64}), Candidate({"merger_width": 32})]


def test_backend_reports_workload_costs(tmp_path):
    backend = SparchBackend(workload=WORKLOAD)
    ctx = make_context(tmp_path)
    rep = backend.cost(candidate=Candidate({}), ctx=ctx)
    m = rep.metrics
    for key in ("dram_bytes", "dram_mb", "cycles", "runtime_ms", "energy_uj", "area_mm2", "dram_reduction"):
        assert key in m and m[key] > 0
    assert m["dram_mb"] == pytest.approx(m["dram_bytes"] / 1e6)
    assert m["dram_reduction"] > 1.5  # SpArch beats the OuterSPACE model on this workload
    assert [r["name"] for r in rep.info["matrices"]] == ["rmat_s8_e6", "poisson2d_12"]
    # candidate keys that are architecture parameters override the defaults
    small = backend.cost(candidate=Candidate({"buffer_lines": 4, "line_elems": 4}), ctx=ctx).metrics
    assert small["dram_bytes"] > m["dram_bytes"] and small["area_mm2"] < m["area_mm2"]


def test_bad_workload_and_arch_fail_at_construction():
    with pytest.raises(WorkloadSpecError) as err:
        SparchBackend(workload=[{"kind": "rmat"}])
    assert err.value.key == "workload[0].scale"
    with pytest.raises(ArchConfigError) as err:
        SparchBackend(workload=WORKLOAD, arch={"bandwith_gbps": 1})
    assert err.value.key == "bandwith_gbps"
    with pytest.raises(ArchConfigError) as err:
        SparchDesignEvaluator(workload=WORKLOAD, space={"merge_ways": [16, 48]})
    assert err.value.key == "merge_ways"


def test_evaluate_rejects_keys_outside_the_architecture(tmp_path):
    ev = _evaluator()
    with pytest.raises(ArchConfigError):
        ev.evaluate(candidate=Candidate({"merger_width": 4, "colour": "red"}), ctx=make_context(tmp_path))


def test_search_through_the_loop_under_an_area_constraint(tmp_path):
    limit = 20.0  # splits the small space: designs with the 16-wide merger are over 21 mm^2
    # random search proposes blindly: the cheap area backend prunes before simulation
    comps = {"searcher": RandomSearch(), "evaluator": _evaluator(), "backend.sparch_area": SparchAreaBackend()}
    res = run_search(comps, tmp_path / "rand", trials=10, objectives={"runtime_ms": "min"}, constraints={"area_mm2": limit})
    assert {t.status for t in res.trials} == {"complete", "infeasible"}
    for t in res.trials:
        assert (t.cost["area_mm2"] <= limit) == (t.status == "complete")
        if t.status == "infeasible":
            assert not t.metrics  # never simulated
    assert res.best.metrics["runtime_ms"] == min(t.metrics["runtime_ms"] for t in res.trials if t.ok)
    # evolution asks the backends first and proposes only designs that fit
    comps = {"searcher": RegularizedEvolution(), "evaluator": _evaluator(), "backend.sparch_area": SparchAreaBackend()}
    res = run_search(comps, tmp_path / "evo", trials=10, objectives={"runtime_ms": "min"}, constraints={"area_mm2": limit})
    assert len(res.trials) == 10 and all(t.ok and t.cost["area_mm2"] <= limit for t in res.trials)


def test_multi_objective_evolution_breeds_within_the_budget(tmp_path):
    comps = {"searcher": RegularizedEvolution(population_size=4, tournament_size=2, mutation_prob=0.5), "evaluator": _evaluator(), "backend.sparch_area": SparchAreaBackend()}
    objectives = {"runtime_ms": "min", "area_mm2": "min", "energy_uj": "min"}
    res = run_search(comps, tmp_path / "moo", trials=10, objectives=objectives, constraints={"area_mm2": 30})
    origins = [t.candidate.origin for t in res.trials]
    assert origins[:4] == ["random"] * 4 and "mutation" in origins[4:]
    assert all(t.ok for t in res.trials)


@pytest.mark.parametrize("searcher", [RandomSearch(), OptunaSearcher(sampler="tpe")])
def test_other_searchers_minimise_dram(tmp_path, searcher):
    res = run_search({"searcher": searcher, "evaluator": _evaluator()}, tmp_path / "s", trials=6, objectives={"dram_mb": "min"})
    assert len(res.trials) == 6 and all(t.ok for t in res.trials)
    assert res.best.metrics["dram_mb"] == min(t.metrics["dram_mb"] for t in res.trials)


def test_deploy_writes_report_and_plot(tmp_path):
    ev = _evaluator()
    ctx = make_context(tmp_path)
    cand = Candidate({"merger_width": 16, "buffer_lines": 256, "line_elems": 48, "huffman": True, "prefetcher": True}, number=3)
    trial = Trial(3, cand, "complete", metrics=dict(ev.evaluate(candidate=cand, ctx=ctx).metrics))
    out = ev.deploy(trial=trial, ctx=ctx)
    assert out.ok and "less than OuterSPACE" in out.message and out.source == "sparch_design"
    assert out.artifacts["report"] == str(tmp_path / "deploy" / "sparch_design_trial_3.json")
    assert out.metrics["runtime_ms"] == pytest.approx(trial.metrics["runtime_ms"])  # the same design, simulated again
    report = json.loads(open(out.artifacts["report"]).read())
    assert report["candidate"]["buffer_lines"] == 256
    assert [m["name"] for m in report["matrices"]] == ["rmat_s8_e6", "poisson2d_12"]
    assert all(m["dram_reduction"] > 1 for m in report["matrices"])
    # the matrix statistics and the bound each pass hit are reported with every result
    for m in report["matrices"]:
        assert m["matrix_stats"]["nnz"] > 0 and "bw90" in m["matrix_stats"] and m["matrix_stats"]["prod_per_out"] >= 1
        assert sum(m["bound_passes"].values()) == m["sparch"]["passes"] and m["bound"] in m["bound_passes"]
    assert "bound:" in out.message
    assert sum(report["area_mm2"].values()) == pytest.approx(out.metrics["area_mm2"])
    with open(out.artifacts["plot"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_workers_receive_specs_not_matrices():
    import pickle

    ev = _evaluator()
    ops = ev.operands()  # load the matrices
    assert ev.operands() is ops  # loaded once, then cached
    clone = pickle.loads(pickle.dumps(ev))
    assert clone._operands is None and clone.workload_specs == ev.workload_specs
    assert [o.name for o in clone.operands()] == [o.name for o in ops]


def test_registering_loads_nothing():
    from hwaml.plugins import build_run_manager, make_plugin_manager, Registry

    ev, backend = _evaluator(), SparchBackend(workload=WORKLOAD)
    build_run_manager({"evaluator": ev, "backend.sparch": backend, "backend.sparch_area": SparchAreaBackend()}, registry=Registry(make_plugin_manager()))
    assert ev._operands is None and backend._operands is None  # the workload loads at the first simulation


def test_declared_metrics(tmp_path):
    ctx = make_context(tmp_path)
    assert _evaluator().metric_names(ctx=ctx) == list(WORKLOAD_METRICS) == SparchBackend(workload=WORKLOAD).metric_names(ctx=ctx)
    assert SparchAreaBackend().metric_names(ctx=ctx) == list(AREA_METRICS)
    m = _evaluator().evaluate(candidate=Candidate({"merger_width": 4, "buffer_lines": 16, "line_elems": 16, "huffman": False, "prefetcher": False}), ctx=ctx).metrics
    assert set(m) == set(WORKLOAD_METRICS)


def test_misspelled_constraint_stops_the_run_before_any_simulation(tmp_path):
    from hwaml.config import ConfigError

    ev = _evaluator()
    with pytest.raises(ConfigError, match="area_mm"):
        run_search({"searcher": RandomSearch(), "evaluator": ev, "backend.sparch_area": SparchAreaBackend()}, tmp_path / "r", trials=2, objectives={"runtime_ms": "min"}, constraints={"area_mm": 20})
    assert ev._operands is None


def test_configs_compose_and_instantiate():
    from hydra.utils import instantiate

    from hwaml.config import check_component
    from hwaml.testing import compose_config

    cfg = compose_config(["experiment=sparch_dse"])
    assert cfg.name == "sparch_dse" and cfg.constraints.area_mm2 == 30
    assert dict(cfg.objectives) == {"runtime_ms": "min", "area_mm2": "min", "energy_uj": "min"}
    # the paper's design fits under the cap; the evolution acts within the budget
    from hwaml_sparch_sim.arch import SparchConfig

    assert SparchConfig().area_mm2() <= cfg.constraints.area_mm2
    assert cfg.searcher.population_size < cfg.budget.trials
    check_component(cfg.evaluator, "evaluator")
    check_component(cfg.backend.sparch_area, "backend.sparch_area")
    ev = instantiate(cfg.evaluator, _convert_="all")
    assert isinstance(ev, SparchDesignEvaluator)
    cfg = compose_config(["evaluator=sparch_design", "backend=[sparch]"])
    check_component(cfg.backend.sparch, "backend.sparch")
    backend = instantiate(cfg.backend.sparch, _convert_="all")
    assert backend.base.merge_ways == 64 and backend.base.buffer_lines == 1024


def test_cli_runs_the_dse_preset(tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "hwaml.cli", "run", "experiment=sparch_dse", "budget.trials=4", "progress=false", "deploy.enabled=true", f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 trials" in proc.stdout
    assert list((run_dir / "deploy").glob("sparch_design_trial_*.json"))
