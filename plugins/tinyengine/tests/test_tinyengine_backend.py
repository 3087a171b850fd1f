"""Backend and evaluator: hook contracts, device profiles, cost metrics, configs."""

import pytest

from hwaml import Candidate, CostReport
from hwaml.testing import BackendContract, EvaluatorContract, make_context
from hwaml_tinyengine.backend import TinyEngineBackend
from hwaml_tinyengine.device import PROFILES, estimate_latency_ms, load_profile
from hwaml_tinyengine.engine import plan_model
from hwaml_tinyengine.evaluator import TinyEngineDigits
from hwaml_tinyengine.models import mcunet_from_config, mcunet_imagenet_like

SMALL = {"resolution": 16, "width": 0.5, "blocks": [{"kernel": 3, "expand": 3}] * 4}
LARGE = {"resolution": 96, "width": 1.0, "blocks": [{"kernel": 7, "expand": 6}] * 8}


class TestBackendContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return TinyEngineBackend(profile="mcu64k")

    @pytest.fixture
    def candidates(self):
        return [Candidate(SMALL, number=0), Candidate(LARGE, number=1)]


class TestEvaluatorContract(EvaluatorContract):
    n_candidates = 1

    @pytest.fixture
    def evaluator(self):
        return TinyEngineDigits(epochs=1, resolutions=[16], widths=[0.5], depths=[4], calib_samples=32, save_checkpoints=False)


def test_all_profiles_load_with_distinct_numbers():
    profs = {name: load_profile(name) for name in PROFILES}
    assert set(profs) == {"stm32f412", "stm32f746", "stm32h743", "mcu64k"}
    assert profs["mcu64k"].sram_kb == 64
    assert profs["stm32f746"].sram_kb == 320 and profs["stm32h743"].clock_mhz > profs["stm32f746"].clock_mhz
    assert len({(p.sram_kb, p.flash_kb, p.clock_mhz) for p in profs.values()}) == 4
    with pytest.raises(ValueError, match="unknown device profile 'stm32f999'"):
        load_profile("stm32f999")


def test_cost_metrics_and_fit_verdict(tmp_path):
    ctx = make_context(tmp_path)
    small = TinyEngineBackend(profile="mcu64k").cost(candidate=Candidate(SMALL), ctx=ctx)
    assert isinstance(small, CostReport) and small.source == "tinyengine_mcu64k"
    assert set(small.metrics) == {"peak_sram_kb", "flash_kb", "latency_ms", "fits"}
    assert small.metrics["fits"] == 1.0 and small.feasible is True
    large = TinyEngineBackend(profile="mcu64k").cost(candidate=Candidate(LARGE), ctx=ctx)
    assert large.metrics["peak_sram_kb"] > 64 or large.metrics["flash_kb"] > 256
    assert large.metrics["fits"] == 0.0 and large.feasible is False
    assert large.metrics["latency_ms"] > small.metrics["latency_ms"]
    # the same model fits the bigger part
    assert TinyEngineBackend(profile="stm32h743", sram_kb=4096, flash_kb=8192).cost(candidate=Candidate(LARGE), ctx=ctx).feasible


def test_latency_scales_with_clock_and_patch_recomputation():
    model = mcunet_imagenet_like(0.35, 128)
    plan = plan_model(model)
    plain = plan_model(model, patch=False)
    f746, h743 = load_profile("stm32f746"), load_profile("stm32h743")
    assert estimate_latency_ms(plan, f746) / estimate_latency_ms(plan, h743) == pytest.approx(480 / 216)
    assert estimate_latency_ms(plan, f746) > estimate_latency_ms(plain, f746)  # recomputed MACs cost time


def test_backend_arguments_are_checked():
    with pytest.raises(ValueError, match="needs profile"):
        TinyEngineBackend(sram_kb=64)
    with pytest.raises(ValueError, match="model_factory 'nope.missing' cannot be imported"):
        TinyEngineBackend(profile="mcu64k", model_factory="nope.missing")
    with pytest.raises(ValueError, match="cycles_per_mac lacks"):
        TinyEngineBackend(device="x", sram_kb=1, flash_kb=1, clock_mhz=1, cycles_per_mac={"conv": 1.0})
    bad = TinyEngineBackend(profile="mcu64k", model_factory=lambda cfg: "not a model")
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        bad.model_for(Candidate(SMALL))


def test_custom_factory_for_other_plugins(tmp_path):
    calls = []

    def factory(cfg, num_classes):
        calls.append(cfg)
        return mcunet_from_config(cfg, num_classes=num_classes, in_channels=3)

    be = TinyEngineBackend(profile="stm32f412", model_factory=factory, model_kwargs={"num_classes": 7})
    rep = be.cost(candidate=Candidate(SMALL), ctx=make_context(tmp_path))
    assert calls and rep.metrics["peak_sram_kb"] > 0
    assert rep.info["arena_bytes"] == pytest.approx(rep.metrics["peak_sram_kb"] * 1024)


def test_deploy_without_checkpoint_builds_and_matches(tmp_path):
    ctx = make_context(tmp_path)
    res = TinyEngineBackend(profile="mcu64k", deploy_vectors=4).deploy(candidate=Candidate(SMALL, number=3), ctx=ctx)
    assert res.ok, res.message
    assert res.metrics["outputs_matched"] == 1.0 and "untrained" in res.message
    assert (tmp_path / "deploy" / "tinyengine_trial_3" / "model_test").exists()


def test_configs_compose_and_instantiate():
    from hydra.utils import instantiate

    from hwaml.config import check_component
    from hwaml.testing import compose_config

    for name in PROFILES:
        cfg = compose_config(["evaluator=tinyengine_digits", f"backend=[{name}]"])
        check_component(cfg.backend[name], f"backend.{name}")
        be = instantiate(cfg.backend[name], _convert_="all")
        assert be.profile == load_profile(name)
    check_component(cfg.evaluator, "evaluator")
    assert isinstance(instantiate(cfg.evaluator, _convert_="all"), TinyEngineDigits)
    for preset in ("tinyengine_mcu64k", "tinyengine_f746"):
        cfg = compose_config([f"experiment={preset}"])
        assert cfg.name == preset and cfg.evaluator._target_.endswith("TinyEngineDigits")
    assert compose_config(["experiment=tinyengine_mcu64k"]).constraints.peak_sram_kb == 64
