"""Backend: hook contract, device profiles and overrides, costing the
evaluator's network (any NN evaluator), deploy of trained and untrained trials,
configs."""

import pytest
import torch

from hwaml import BuiltModel, Candidate, CostReport, EvalResult, SearchSpace, Trial, TrialStatus, hookimpl
from hwaml.space import Categorical
from hwaml.testing import BackendContract, make_context
from hwaml_tinyengine.backend import TinyEngineBackend
from hwaml_tinyengine.device import PROFILES, DeviceProfile, estimate_latency_ms, load_profile
from hwaml_tinyengine.engine import COST_METRICS, plan_model
from hwaml_tinyengine.evaluator import TinyEngineDigits
from hwaml_tinyengine.models import count_macs, mcunet_imagenet_like

SMALL = {"resolution": 16, "width": 0.5, "blocks": [{"kernel": 3, "expand": 3}] * 4}
LARGE = {"resolution": 96, "width": 1.0, "blocks": [{"kernel": 7, "expand": 6}] * 8}


def small_evaluator(**kw):
    """A digits evaluator whose space holds SMALL and LARGE (one quick epoch)."""
    args = dict(epochs=1, resolutions=[16, 96], widths=[0.5, 1.0], kernels=[3, 7], expands=[3, 6], depths=[4, 8], calib_samples=32)
    args.update(kw)
    return TinyEngineDigits(**args)


@pytest.fixture(scope="module")
def evaluator():
    return small_evaluator()


class TestBackendContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return TinyEngineBackend(profile="mcu64k")

    @pytest.fixture
    def contract_ctx(self, tmp_path):
        return make_context(tmp_path / "run", evaluator=small_evaluator())

    @pytest.fixture
    def candidates(self):
        return [Candidate(SMALL, number=0), Candidate(LARGE, number=1)]


# -- profiles ---------------------------------------------------------------------------


def test_all_profiles_load_with_distinct_numbers_and_power():
    profs = {name: load_profile(name) for name in PROFILES}
    assert set(profs) == {"stm32f412", "stm32f746", "stm32h743", "mcu64k"}
    assert profs["mcu64k"].sram_kb == 64
    assert profs["stm32f746"].sram_kb == 320 and profs["stm32h743"].clock_mhz > profs["stm32f746"].clock_mhz
    assert {n: p.power_mw for n, p in profs.items()} == {"mcu64k": 22, "stm32f412": 37, "stm32f746": 330, "stm32h743": 420}
    assert len({(p.sram_kb, p.flash_kb, p.clock_mhz) for p in profs.values()}) == 4
    with pytest.raises(ValueError, match="unknown device profile 'stm32f999'"):
        load_profile("stm32f999")


def test_overrides_are_checked_strictly_and_naming_the_key():
    base = load_profile("stm32f746")
    p = load_profile("stm32f746", {"sram_kb": 256, "power_mw": 100, "cycles_per_mac": {"dwconv": 2.0}, "device": "myboard"})
    assert (p.sram_kb, p.power_mw, p.device) == (256, 100, "myboard")
    assert p.cycles_per_mac == {**base.cycles_per_mac, "dwconv": 2.0}  # the other layer types keep the profile's
    assert p.flash_kb == base.flash_kb and p.clock_mhz == base.clock_mhz
    with pytest.raises(ValueError, match=r"overrides\.sram_kbb: not a field of DeviceProfile; did you mean 'sram_kb'\?"):
        TinyEngineBackend(profile="mcu64k", overrides={"sram_kbb": 128})
    with pytest.raises(ValueError, match=r"overrides\.cycles_per_mac\.dwconvv: not a layer type"):
        TinyEngineBackend(profile="mcu64k", overrides={"cycles_per_mac": {"dwconvv": 1.0}})
    with pytest.raises(ValueError, match=r"overrides\.clock_mhz: expected a number, got str"):
        TinyEngineBackend(profile="mcu64k", overrides={"clock_mhz": "fast"})
    with pytest.raises(ValueError, match="power_mw must be > 0"):
        TinyEngineBackend(profile="mcu64k", overrides={"power_mw": 0})
    with pytest.raises(ValueError, match="cycles_per_mac lacks"):
        DeviceProfile("x", 1, 1, 1, 1, {"conv": 1.0})
    be = TinyEngineBackend(profile="stm32h743", overrides={"sram_kb": 4096})
    assert be.profile.sram_kb == 4096 and be.name == "tinyengine_stm32h743"


def test_latency_scales_with_clock_and_patch_recomputation():
    model = mcunet_imagenet_like(0.35, 128)
    plan = plan_model(model)
    plain = plan_model(model, patch=False)
    f746, h743 = load_profile("stm32f746"), load_profile("stm32h743")
    assert estimate_latency_ms(plan, f746) / estimate_latency_ms(plan, h743) == pytest.approx(480 / 216)
    assert estimate_latency_ms(plan, f746) > estimate_latency_ms(plain, f746)  # recomputed MACs cost time


# -- cost: the evaluator's network ---------------------------------------------------------


def test_cost_metrics_fit_verdict_energy_and_macs(tmp_path, evaluator):
    ctx = make_context(tmp_path, evaluator=evaluator)
    be = TinyEngineBackend(profile="mcu64k")
    small = be.cost(candidate=Candidate(SMALL), ctx=ctx)
    assert isinstance(small, CostReport) and small.source == "tinyengine_mcu64k"
    assert set(small.metrics) == set(COST_METRICS) == set(be.metric_names(ctx=ctx))
    assert small.metrics["fits"] == 1.0 and small.feasible is True
    assert small.metrics["energy_mj"] == pytest.approx(small.metrics["latency_ms"] * 22 / 1000)
    # the backend's MACs are the evaluator's own count of the same network
    built = ctx.build_model(Candidate(SMALL))
    assert small.metrics["macs_m"] == pytest.approx(built.macs / 1e6) and built.macs > 0
    large = be.cost(candidate=Candidate(LARGE), ctx=ctx)
    assert large.metrics["peak_sram_kb"] > 64 or large.metrics["flash_kb"] > 256
    assert large.metrics["fits"] == 0.0 and large.feasible is False
    assert large.metrics["latency_ms"] > small.metrics["latency_ms"]
    # the same model fits a bigger part
    assert TinyEngineBackend(profile="stm32h743", overrides={"sram_kb": 4096, "flash_kb": 8192}).cost(candidate=Candidate(LARGE), ctx=ctx).feasible
    # ctx.cost_fn merges the backend's report and carries its verdict
    ctx2 = make_context(tmp_path / "b", evaluator=evaluator, backends={"mcu64k": be})
    assert ctx2.cost_fn(Candidate(LARGE)).feasible is False


def test_plans_are_cached_per_configuration(tmp_path, evaluator):
    ctx = make_context(tmp_path, evaluator=evaluator)
    be = TinyEngineBackend(profile="stm32f412")
    a, _ = be.plan_for(Candidate(SMALL), ctx)
    b, _ = be.plan_for(Candidate(dict(SMALL), number=7), ctx)
    assert a is b and len(be._plans) == 1
    rep = be.cost(candidate=Candidate(SMALL), ctx=ctx)
    assert rep.info["arena_bytes"] == pytest.approx(rep.metrics["peak_sram_kb"] * 1024)


class BranchyEvaluator:
    """Another NN evaluator (not tinyengine's): its network is conftest's BranchyNet."""

    def __init__(self, net):
        self.net = net

    @hookimpl
    def search_space(self, ctx):
        return SearchSpace([Categorical("width", [1])])

    @hookimpl
    def metric_names(self, ctx):
        return ["accuracy"]

    @hookimpl
    def evaluate(self, candidate, ctx):
        return EvalResult({"accuracy": 0.5})

    @hookimpl
    def build_model(self, candidate, trial, ctx):
        return BuiltModel(self.net, self.net.input_shape, macs=float(count_macs(self.net, self.net.input_shape)), source="branchy")


def test_costs_whatever_network_the_evaluator_builds(tmp_path, branchy):
    ctx = make_context(tmp_path, evaluator=BranchyEvaluator(branchy))
    rep = TinyEngineBackend(profile="stm32f746").cost(candidate=Candidate({"width": 1}), ctx=ctx)
    assert rep.info["model_source"] == "branchy"
    assert rep.metrics["macs_m"] == pytest.approx(count_macs(branchy, branchy.input_shape) / 1e6)
    assert rep.metrics["macs_m"] == pytest.approx(plan_model(branchy).base_macs / 1e6)


def test_cost_without_an_nn_evaluator_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="ctx.build_model is None: it is not an NN evaluator"):
        TinyEngineBackend(profile="mcu64k").cost(candidate=Candidate(SMALL), ctx=make_context(tmp_path))


# -- deploy ---------------------------------------------------------------------------------


def finished_trial(evaluator, ctx, number, config=SMALL):
    res = evaluator.evaluate(candidate=Candidate(config, number=number), ctx=ctx)
    return Trial(number, Candidate(config, number=number), TrialStatus.COMPLETE, metrics=dict(res.metrics), info={"artifacts": dict(res.artifacts)})


def test_deploy_without_a_checkpoint_fails_and_allow_untrained_reports_not_ok(tmp_path):
    ev = small_evaluator(save_checkpoints=False)
    ctx = make_context(tmp_path, evaluator=ev)
    trial = finished_trial(ev, ctx, 3)
    assert trial.artifacts == {}
    with pytest.raises(RuntimeError, match="cannot deploy trial 3: trial 3 has no trained checkpoint .*allow_untrained=true"):
        TinyEngineBackend(profile="mcu64k").deploy(trial=trial, ctx=ctx)
    assert not (tmp_path / "deploy").exists()
    res = TinyEngineBackend(profile="mcu64k", allow_untrained=True, deploy_vectors=4).deploy(trial=trial, ctx=ctx)
    assert res.ok is False and res.source == "tinyengine_mcu64k"
    assert "no trained checkpoint" in res.message and f"run seed {ctx.seed}" in res.message
    assert res.metrics["outputs_matched"] == 1.0  # the C code still matches the Python reference
    assert (tmp_path / "deploy" / "tinyengine_trial_3" / "model_test").exists()


def test_deploy_from_a_relative_run_dir_compiles_bit_exactly_host_and_firmware_in_qemu(tmp_path, monkeypatch):
    # a relative run directory (as `hwaml deploy runs/...` gives) used to crash: the
    # harness was started by a relative path with its cwd set to the project
    monkeypatch.chdir(tmp_path)
    ev = small_evaluator(epochs=2)
    ctx = make_context("runs/r1", evaluator=ev)
    assert not ctx.run_dir.is_absolute()
    trial = finished_trial(ev, ctx, 0)
    res = TinyEngineBackend(profile="stm32f746", deploy_vectors=4).deploy(trial=trial, ctx=ctx)
    assert res.ok, res.message
    # the firmware (Cortex-M7 flags, QEMU mps2-an500) ran the vectors bit-exactly
    m = res.metrics
    assert m["fw_outputs_matched"] == 1.0 and "firmware (cortex-m7, QEMU mps2-an500): matched 4/4" in res.message
    assert m["fw_arena_bytes"] >= m["arena_bytes"] and m["fw_arena_bytes"] - m["arena_bytes"] < 8  # the planned arena, aligned
    assert m["fw_rodata_bytes"] > 0 and m["fw_text_bytes"] > 0 and 0 < m["stack_bytes"] < 1024
    assert m["instructions_per_inference"] > m["macs_m"] * 1e6 * 0.3  # counted, not a constant
    # the search-time estimates against the real firmware
    assert abs(m["flash_estimate_error"]) < 0.15 and m["fw_model_flash_bytes"] < m["fw_flash_bytes"]
    assert 0.5 < m["predicted_instructions"] / m["instructions_per_inference"] < 1.5
    assert (tmp_path / "runs/r1/deploy/tinyengine_trial_0/firmware.elf").is_file()
    assert res.source == "tinyengine_stm32f746"
    assert res.metrics["outputs_matched"] == 1.0 and "match the Python int8 reference" in res.message
    # the C binary runs the whole test split bit-exactly: its accuracy is the evaluator's int8 accuracy
    assert res.metrics["c_accuracy"] == pytest.approx(trial.metrics["int8_accuracy"])
    assert res.metrics["float_accuracy"] == pytest.approx(trial.metrics["float_accuracy"])
    assert {"model.c", "model.h", "weights.h", "te_runtime.h", "Makefile", "project"} <= set(res.artifacts)
    assert set(COST_METRICS) <= set(res.metrics)


# -- configs -------------------------------------------------------------------------------


def test_configs_compose_and_instantiate():
    from hydra.utils import instantiate

    from hwaml.config import check_component
    from hwaml.testing import compose_config

    for name in PROFILES:
        cfg = compose_config(["evaluator=tinyengine_digits", f"backend=[{name}]"])
        check_component(cfg.backend[name], f"backend.{name}")
        be = instantiate(cfg.backend[name], _convert_="all")
        assert be.profile == load_profile(name) and be.allow_untrained is False
    check_component(cfg.evaluator, "evaluator")
    assert isinstance(instantiate(cfg.evaluator, _convert_="all"), TinyEngineDigits)
    cfg = compose_config(["evaluator=tinyengine_digits", "backend=[stm32f746]", "+backend.stm32f746.overrides.sram_kb=128", "backend.stm32f746.allow_untrained=true"])
    be = instantiate(cfg.backend.stm32f746, _convert_="all")
    assert be.profile.sram_kb == 128 and be.allow_untrained is True
    for preset in ("tinyengine_mcu64k", "tinyengine_f746"):
        cfg = compose_config([f"experiment={preset}"])
        assert cfg.name == preset and cfg.evaluator._target_.endswith("TinyEngineDigits")
    assert compose_config(["experiment=tinyengine_mcu64k"]).constraints.peak_sram_kb == 64
