"""Hydra configs compose and instantiate; the CLI; contract suites of the core."""

import json

import numpy as np
import pytest

from hwaml import Candidate
from hwaml.testing import BackendContract, EvaluatorContract, SearcherContract, make_context
from hwaml_ofa_nas import plugin
from hwaml_ofa_nas.backends import HostCpuLatencyBackend, MacsBackend
from hwaml_ofa_nas.cli import main
from hwaml_ofa_nas.evaluator import OFAEvaluator, TrainingConfig
from hwaml_ofa_nas.evolution import OFAEvolutionSearcher
from hwaml_ofa_nas.latency_lut import LatencyLUT, MeasureConfig
from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config

SMALL = '{"kernel_choices": [3, 5], "expand_choices": [3, 4], "depth_choices": [1, 2], "resolutions": [12]}'


def test_plugin_contributes_its_conf_package():
    assert plugin.config_search_path() == ["pkg://hwaml_ofa_nas.conf"]


def test_configs_compose_and_instantiate():
    from hydra.utils import instantiate

    from hwaml.config import check_component, check_run_config
    from hwaml.testing import compose_config

    cfg = compose_config(["evaluator=ofa_digits", "backend=[host_cpu_lut,macs]", "searcher=ofa_evolution", "evaluator.arch=test_tiny"])
    check_run_config(cfg)
    # the backends cost the evaluator's network: they take no supernet shape of their own
    assert "arch" not in cfg.backend.host_cpu_lut and "arch" not in cfg.backend.macs
    ev = instantiate(cfg.evaluator, _convert_="all")
    assert isinstance(ev, OFAEvaluator) and ev.arch == supernet_config("test_tiny")
    assert isinstance(ev.training, TrainingConfig) and ev.training.epochs["full"] == 15 and ev.training.subnets_per_step == 2
    assert isinstance(instantiate(cfg.backend.macs, _convert_="all"), MacsBackend)
    lut = instantiate(cfg.backend.host_cpu_lut, _convert_="all")
    assert isinstance(lut, HostCpuLatencyBackend) and isinstance(lut.measure, MeasureConfig)
    assert (lut.measure.threads, lut.measure.repeats, lut.measure.calibrate, lut.engines) == (1, 200, 20, ["torch"])
    s = instantiate(cfg.searcher, _convert_="all")
    assert (s.population_size, s.parent_ratio, s.mutation_ratio, s.arch_mutate_prob) == (100, 0.25, 0.5, 0.1)
    exp = compose_config(["experiment=ofa_digits_two_targets"])
    check_run_config(exp)
    assert exp.name == "ofa_digits_two_targets" and "latency_ms" in exp.constraints
    assert exp.searcher._target_.endswith("OFAEvolutionSearcher") and set(exp.backend) == {"host_cpu_lut", "macs"}
    for override, key in (
        ("+evaluator.epochz=3", "evaluator.epochz"),
        ("+evaluator.training.epochz=3", "evaluator.training.epochz"),
        ("+backend.host_cpu_lut.measure.repeatz=3", "backend.host_cpu_lut.measure.repeatz"),
        ("backend.host_cpu_lut.measure.repeats=many", "backend.host_cpu_lut.measure.repeats"),
        ("+backend.macs.arch=test_tiny", "backend.macs.arch"),
    ):
        bad = compose_config(["evaluator=ofa_digits", "backend=[host_cpu_lut,macs]", override])
        node, where = (bad.evaluator, "evaluator") if key.startswith("evaluator") else (bad.backend[key.split(".")[1]], ".".join(key.split(".")[:2]))
        with pytest.raises(Exception, match=key.replace(".", r"\.")):
            check_component(node, where)


def test_config_groups_are_strict_when_constructed_directly():
    from hwaml.config import ConfigError

    with pytest.raises(ConfigError, match=r"training\.epochz"):
        OFAEvaluator(training={"epochz": 3})
    with pytest.raises(ConfigError, match=r"measure\.repeatz"):
        HostCpuLatencyBackend(measure={"repeatz": 3})
    with pytest.raises(ValueError, match="statistic"):
        HostCpuLatencyBackend(measure={"statistic": "mean"})
    assert OFAEvaluator(training=TrainingConfig(batch_size=8)).training.batch_size == 8


def test_cli_lut_build_and_check(tmp_path, capsys):
    out = tmp_path / "lut.json"
    assert main(["--quiet", "lut", "build", "--arch", "test_tiny", "--arch-overrides", SMALL, "--out", str(out), "--engines", "torch", "--repeats", "3", "--warmup", "1", "--calibrate", "3"]) == 0
    text = capsys.readouterr().out
    assert "smallest sub-network ms" in text and out.is_file()
    lut = LatencyLUT.load(out)
    assert lut.meta["engines"] == ["torch"] and "calibration" in lut.meta
    assert main(["--quiet", "lut", "check", "--lut", str(out), "--n", "3", "--engines", "torch", "--repeats", "3", "--warmup", "1"]) == 0
    assert "% within 10%" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="arch-overrides"):
        main(["lut", "build", "--arch-overrides", "{bad json"])


def test_cli_export_and_predictor(trained_tiny, tmp_path, capsys):
    path, net, _ = trained_tiny
    cfg = OFAMobileNetV3.extreme_config(net.arch, "min")
    assert main(["--quiet", "export", "--supernet", str(path), "--config", json.dumps(cfg), "--out", str(tmp_path / "dep")]) == 0
    assert (tmp_path / "dep" / "subnet.onnx").is_file() and (tmp_path / "dep" / "subnet.json").is_file()
    assert main(["--quiet", "predictor", "train", "--supernet", str(path), "--n", "10", "--epochs", "5", "--out", str(tmp_path / "acc.pt")]) == 0
    assert "RMSE held-out" in capsys.readouterr().out


class TestOFAEvaluatorContract(EvaluatorContract):
    @pytest.fixture
    def evaluator(self, tiny_evaluator):
        return tiny_evaluator


@pytest.fixture
def tiny_evaluator(trained_tiny):
    return OFAEvaluator("test_tiny", checkpoint=str(trained_tiny[0]), train_if_missing=False, calibration_size=100, progress=False)


def _cands(evaluator, n=3, seed=0):
    rng = np.random.default_rng(seed)
    space = OFAMobileNetV3.space_for(evaluator.arch)
    return [Candidate(space.sample(rng), number=i) for i in range(n)]


class TestMacsContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return MacsBackend()

    @pytest.fixture
    def contract_ctx(self, tmp_path, tiny_evaluator):
        # an NN backend costs the evaluator's network: the context is wired as a run's
        return make_context(tmp_path / "run", evaluator=tiny_evaluator)

    @pytest.fixture
    def candidates(self, tiny_evaluator):
        return _cands(tiny_evaluator)


class TestHostCpuLutContract(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        return HostCpuLatencyBackend(lut_path=str(tmp_path / "lut.yaml"), measure={"repeats": 2, "warmup": 1, "calibrate": 0}, progress=False)

    @pytest.fixture
    def contract_ctx(self, tmp_path, tiny_evaluator):
        return make_context(tmp_path / "run", evaluator=tiny_evaluator)

    @pytest.fixture
    def candidates(self, tiny_evaluator):
        return _cands(tiny_evaluator)


class TestOFAEvolutionContract(SearcherContract):
    trials = 8

    @pytest.fixture
    def searcher_factory(self):
        return lambda: OFAEvolutionSearcher(population_size=8, generations=3, warmup_trials=3, predictor_hidden=16, predictor_epochs=10)

    @pytest.fixture
    def contract_evaluator(self, synthetic_evaluator):
        return synthetic_evaluator("test_tiny")
