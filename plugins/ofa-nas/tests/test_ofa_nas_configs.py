"""Hydra configs compose and instantiate; the CLI; contract suites of the core."""

import json

import numpy as np
import pytest

from hwaml import Candidate
from hwaml.testing import BackendContract, EvaluatorContract, SearcherContract
from hwaml_ofa_nas import plugin
from hwaml_ofa_nas.backends import HostCpuLatencyBackend, MacsBackend
from hwaml_ofa_nas.cli import main
from hwaml_ofa_nas.evaluator import OFAEvaluator
from hwaml_ofa_nas.evolution import OFAEvolutionSearcher
from hwaml_ofa_nas.latency_lut import LatencyLUT
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
    assert cfg.backend.host_cpu_lut.arch == "test_tiny"  # follows the evaluator
    ev = instantiate(cfg.evaluator, _convert_="all")
    assert isinstance(ev, OFAEvaluator) and ev.arch == supernet_config("test_tiny")
    assert isinstance(instantiate(cfg.backend.macs, _convert_="all"), MacsBackend)
    assert isinstance(instantiate(cfg.backend.host_cpu_lut, _convert_="all"), HostCpuLatencyBackend)
    s = instantiate(cfg.searcher, _convert_="all")
    assert (s.population_size, s.parent_ratio, s.mutation_ratio, s.arch_mutate_prob) == (100, 0.25, 0.5, 0.1)
    exp = compose_config(["experiment=ofa_digits_two_targets"])
    check_run_config(exp)
    assert exp.name == "ofa_digits_two_targets" and "latency_ms" in exp.constraints
    assert exp.searcher._target_.endswith("OFAEvolutionSearcher") and set(exp.backend) == {"host_cpu_lut", "macs"}
    bad = compose_config(["evaluator=ofa_digits", "+evaluator.epochz=3"])
    with pytest.raises(Exception, match="evaluator.epochz"):
        check_component(bad.evaluator, "evaluator")


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
    def evaluator(self, trained_tiny):
        return OFAEvaluator("test_tiny", checkpoint=str(trained_tiny[0]), train_if_missing=False, calibration_size=100, progress=False)


def _cands():
    rng = np.random.default_rng(0)
    space = OFAMobileNetV3.space_for(supernet_config("test_tiny", json.loads(SMALL)))
    return [Candidate(space.sample(rng), number=i) for i in range(3)]


class TestMacsContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return MacsBackend("test_tiny", json.loads(SMALL))

    @pytest.fixture
    def candidates(self):
        return _cands()


class TestHostCpuLutContract(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        return HostCpuLatencyBackend("test_tiny", json.loads(SMALL), lut_path=str(tmp_path / "lut.yaml"), engines=["torch"], repeats=2, warmup=1, calibrate=0, progress=False)

    @pytest.fixture
    def candidates(self):
        return _cands()


class TestOFAEvolutionContract(SearcherContract):
    trials = 8

    @pytest.fixture
    def searcher_factory(self):
        return lambda: OFAEvolutionSearcher(population_size=8, generations=3, warmup_trials=3, predictor_hidden=16, predictor_epochs=10)

    @pytest.fixture
    def contract_evaluator(self, synthetic_evaluator):
        return synthetic_evaluator("test_tiny")
