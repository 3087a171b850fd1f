import json

import pytest
import torch

from hwaml import Candidate
from hwaml.testing import BackendContract, EvaluatorContract, make_context
from hwaml_tinynas.backend import TinyNASBackend
from hwaml_tinynas.evaluator import TinyNASDigits



def test_search_space_runs_both_stages_and_caches_them(prepared_run, make_evaluator):
    ev, ctx, space = prepared_run
    state = ctx.run_dir / "tinynas"
    for name in ("space_opt.json", "space_opt.csv", "space_opt_samples.csv", "space_opt.png", "arch.json", "supernet.pt", "training.json"):
        assert (state / name).is_file(), name
    chosen = json.loads((state / "space_opt.json").read_text())
    assert space.meta["tinynas"]["width"] == chosen["width"] and space.meta["ofa"]["resolutions"] == [chosen["resolution"]]
    phases = [p["name"] for p in json.loads((state / "training.json").read_text())["phases"]]
    assert phases == ["full", "kernel", "depth_1", "expand_1"]
    # a second evaluator on the same run directory loads instead of re-training
    mtime = (state / "supernet.pt").stat().st_mtime
    again = make_evaluator()
    assert again.search_space(ctx=ctx).describe() == space.describe()
    assert (state / "supernet.pt").stat().st_mtime == mtime
    torch.testing.assert_close(again._net.state_dict()["stem.conv.weight"], ev._net.state_dict()["stem.conv.weight"])


def test_evaluate_scores_and_saves_a_deployable_checkpoint(prepared_run):
    ev, ctx, space = prepared_run
    cand = Candidate(ev._net.max_config(), number=7)
    res = ev.evaluate(candidate=cand, ctx=ctx)
    assert 0.3 < res.metrics["accuracy"] <= 1.0  # trained supernet, far above chance (0.1)
    ckpt = torch.load(res.artifacts["checkpoint"], weights_only=False)
    assert set(ckpt) >= {"state_dict", "calib", "x_test", "y_test", "config"}
    # the backend (fresh object, as in `hwaml deploy`) builds the same model and compiles it
    backend = TinyNASBackend(profile="mcu64k")
    out = backend.deploy(candidate=cand, ctx=ctx)
    assert out.ok, out.message
    assert out.metrics["outputs_matched"] == 1.0
    assert abs(out.metrics["c_accuracy"] - ckpt["float_accuracy"]) < 0.05  # int8 C close to float


def test_evaluator_in_a_fresh_process_loads_the_run_state(prepared_run, make_evaluator, tmp_path):
    ev, ctx, space = prepared_run
    worker = make_evaluator()  # as an executor worker: no search_space call
    cand = Candidate(space.sample(ctx.rng), number=1)
    assert worker.evaluate(candidate=cand, ctx=ctx).metrics["accuracy"] == pytest.approx(ev.evaluate(candidate=cand, ctx=ctx).metrics["accuracy"])
    with pytest.raises(FileNotFoundError, match="space_opt.json"):
        make_evaluator().evaluate(candidate=cand, ctx=make_context(tmp_path))


def test_stage1_uses_the_run_backend_and_tighter_constraints(make_evaluator, tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"backend": {"tinynas_stm32f412": {"_target_": "hwaml_tinynas.backend.TinyNASBackend", "profile": "stm32f412"}}})
    ev = make_evaluator(device=None)
    assert ev.memory_limits(make_context(tmp_path, cfg=cfg, constraints={"peak_sram_kb": 100}))[:2] == (100.0, 1024.0)
    with pytest.raises(ValueError, match="exactly one TinyEngine device"):
        ev.memory_limits(make_context(tmp_path))


def test_backend_reports_memory_latency_energy_and_macs(prepared_run):
    ev, ctx, space = prepared_run
    small = TinyNASBackend(profile="mcu64k", power_mw=20.0)
    big = TinyNASBackend(profile="stm32f746", power_mw=300.0)
    cand = Candidate(ev._net.min_config())
    a, b = small.cost(candidate=cand, ctx=ctx), big.cost(candidate=cand, ctx=ctx)
    assert a.metrics["peak_sram_kb"] == b.metrics["peak_sram_kb"] and a.metrics["macs_m"] > 0
    assert b.metrics["latency_ms"] < a.metrics["latency_ms"]  # faster core
    assert a.metrics["energy_mj"] == pytest.approx(a.metrics["latency_ms"] * 20.0 / 1000)
    tight = TinyNASBackend(profile="mcu64k", sram_kb=a.metrics["peak_sram_kb"] / 2)
    assert tight.cost(candidate=cand, ctx=ctx).feasible is False


def test_backend_without_a_tinynas_run_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="arch.json"):
        TinyNASBackend().cost(candidate=Candidate({"resolution": 16}), ctx=make_context(tmp_path))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="samples_per_space"):
        TinyNASDigits(samples_per_space=0)
    with pytest.raises(ValueError, match="min_fit_fraction"):
        TinyNASDigits(min_fit_fraction=2)
    with pytest.raises(ValueError, match="power_mw"):
        TinyNASBackend(power_mw=0)


class TestTinyNASEvaluatorContract(EvaluatorContract):
    @pytest.fixture
    def evaluator(self, make_evaluator):
        return make_evaluator(epochs={"full": 1, "kernel": 1, "depth": 1, "expand": 1})


class TestTinyNASBackendContract(BackendContract):
    @pytest.fixture
    def backend(self, prepared_run):
        backend = TinyNASBackend(profile="stm32f412")
        backend.set_arch(prepared_run[0].arch.to_dict())
        return backend

    @pytest.fixture
    def candidates(self, prepared_run):
        ev, ctx, space = prepared_run
        return [Candidate(ev._net.min_config()), Candidate(ev._net.max_config())]
