"""TinyNAS composed with TinyEngine's own backends: they cost and deploy the
network the tinynas evaluator builds (``ctx.build_model``)."""

import pytest

from hwaml import Candidate, Trial, TrialStatus
from hwaml.testing import BackendContract, make_context
from hwaml_tinyengine.backend import TinyEngineBackend
from hwaml_tinyengine.engine import plan_model

COSTS = {"peak_sram_kb", "flash_kb", "latency_ms", "fits", "macs_m", "energy_mj"}


def _wired(prepared_run, **backends):
    ev, ctx, space = prepared_run
    return make_context(ctx.run_dir, evaluator=ev, backends=backends)


def test_tinyengine_costs_the_evaluators_network(prepared_run):
    ev, _, space = prepared_run
    cand = Candidate(ev.supernet().min_config())
    small = _wired(prepared_run, mcu64k=TinyEngineBackend(profile="mcu64k"))
    big = _wired(prepared_run, stm32f746=TinyEngineBackend(profile="stm32f746"))
    a, b = small.cost_fn(cand), big.cost_fn(cand)
    assert COSTS <= set(a.metrics) and COSTS <= set(b.metrics)
    built = small.build_model(cand)
    plan = plan_model(built.module, built.input_shape)
    assert a.metrics["peak_sram_kb"] == pytest.approx(plan.peak_sram_kb) == pytest.approx(b.metrics["peak_sram_kb"])
    # the backend's MACs are the evaluator's own count, for any candidate
    for cfg in (ev.supernet().min_config(), ev.supernet().max_config(), space.sample(small.rng)):
        assert small.cost_fn(Candidate(cfg)).metrics["macs_m"] * 1e6 == pytest.approx(small.build_model(Candidate(cfg)).macs)
    assert b.metrics["latency_ms"] < a.metrics["latency_ms"]  # faster core
    assert a.metrics["energy_mj"] > 0
    tight = _wired(prepared_run, tight=TinyEngineBackend(profile="mcu64k", overrides={"sram_kb": a.metrics["peak_sram_kb"] / 2}))
    assert tight.cost_fn(cand).feasible is False


def test_tinyengine_deploys_the_trials_trained_checkpoint(prepared_run):
    ev, ctx, space = prepared_run
    cand = Candidate(ev.supernet().max_config(), number=11)
    res = ev.evaluate(candidate=cand, ctx=ctx)
    trial = Trial(11, cand, TrialStatus.COMPLETE, dict(res.metrics), info={"artifacts": dict(res.artifacts)})
    # a fresh backend, as in `hwaml deploy`
    wired = _wired(prepared_run, mcu64k=TinyEngineBackend(profile="mcu64k"))
    out = TinyEngineBackend(profile="mcu64k").deploy(trial=trial, ctx=wired)
    assert out.ok, out.message
    assert out.metrics["outputs_matched"] == 1.0
    assert abs(out.metrics["c_accuracy"] - res.metrics["test_accuracy"]) < 0.05  # int8 C close to float


class TestTinyEngineOnTinyNASContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return TinyEngineBackend(profile="stm32f412")

    @pytest.fixture
    def contract_ctx(self, prepared_run):
        return _wired(prepared_run)

    @pytest.fixture
    def candidates(self, prepared_run):
        ev, ctx, space = prepared_run
        return [Candidate(ev.supernet().min_config()), Candidate(ev.supernet().max_config())]
