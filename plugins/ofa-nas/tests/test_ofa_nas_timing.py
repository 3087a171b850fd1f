"""Latency measurement (interleaved minimum, calibration fit), the batched
evolution with a vectorised MACs table, and the light package import."""

import subprocess
import sys
import time

import numpy as np
import pytest

from hwaml_ofa_nas.evolution import evolution_search
from hwaml_ofa_nas.latency_lut import LatencyLUT, fit_calibration, time_interleaved
from hwaml_ofa_nas.predictors import ArchEncoder, MacsTable, count_macs, count_params
from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config


def test_interleaved_timing_orders_runners_and_checks_the_statistic():
    calls = []

    def slow():
        calls.append("slow")
        time.sleep(0.002)

    def fast():
        calls.append("fast")

    ms = time_interleaved([slow, fast], warmup=1, repeats=6, rounds=3, statistic="min")
    assert ms.shape == (2,) and ms[0] >= 2.0 and ms[1] < 1.0
    assert calls.count("slow") == calls.count("fast") == 1 + 6
    # the rounds interleave the runners: neither runs all its calls back to back
    timed = calls[2:]
    assert timed[:6] != ["slow"] * 6 and timed[:6] != ["fast"] * 6
    with pytest.raises(ValueError, match="statistic"):
        time_interleaved([fast], statistic="mean")


def test_calibration_fit_is_robust_to_one_disturbed_network():
    x = np.linspace(1.0, 3.0, 12)
    y = 1.2 * x + 0.5
    y[4] *= 3.0  # one measurement caught a busy moment
    cal = fit_calibration(x, y)
    assert cal["scale"] == pytest.approx(1.2, rel=1e-6) and cal["offset"] == pytest.approx(0.5, abs=1e-6)
    flat = fit_calibration([1.0, 1.0, 1.0], [2.0, 2.2, 1.8])  # no spread: a ratio
    assert flat["offset"] == 0.0 and flat["scale"] == pytest.approx(2.0)


def test_onnxruntime_entries_are_net_of_the_call_overhead():
    arch = supernet_config("test_tiny", {"kernel_choices": [3], "expand_choices": [3], "depth_choices": [1], "resolutions": [12]})
    lut = LatencyLUT.build(arch, engines=["torch", "onnxruntime"], measure={"warmup": 1, "repeats": 4, "rounds": 2, "calibrate": 3}, progress=False)
    assert lut.meta["call_overhead_ms"]["onnxruntime"] > 0 and "torch" not in lut.meta["call_overhead_ms"]
    assert all(row["onnxruntime"] > 0 and row["torch"] > 0 for row in lut.entries.values())
    assert set(lut.meta["calibration"]) == {"torch", "onnxruntime"} and lut.meta["calibration"]["torch"]["n"] == 3


@pytest.mark.parametrize("name", ["mobilenetv3_large", "tiny_digits"])
def test_macs_table_equals_the_layer_by_layer_count(name):
    arch = supernet_config(name)
    enc = ArchEncoder(OFAMobileNetV3.space_for(arch).meta["ofa"])
    table = MacsTable(arch, enc)
    g = enc.random_genomes(40, np.random.default_rng(1))
    configs = [enc.to_config(g, i) for i in range(40)]
    assert table.macs(g).tolist() == [count_macs(arch, c) for c in configs]
    assert table.params(g).tolist() == [count_params(arch, c) for c in configs]
    assert table.macs_of(configs[3]) == count_macs(arch, configs[3])


def test_batched_and_per_config_constraints_give_the_same_search():
    arch = supernet_config("tiny_digits")
    enc = ArchEncoder(OFAMobileNetV3.space_for(arch).meta["ofa"])
    table = MacsTable(arch, enc)
    limit = 1.2e6
    w = np.random.default_rng(3).standard_normal(enc.n_features)
    predict = lambda X: X @ w
    checked = []

    def per_config(cfg):
        checked.append(cfg)
        return count_macs(arch, cfg) <= limit

    a = evolution_search(enc, predict, np.random.default_rng(7), per_config, population_size=16, generations=10)
    b = evolution_search(enc, predict, np.random.default_rng(7), population_size=16, generations=10, feasible_batch=lambda g: table.macs(g) <= limit)
    assert a.best_config == b.best_config and a.best_score == b.best_score and a.n_rejected == b.n_rejected > 0
    assert count_macs(arch, a.best_config) <= limit
    # each distinct architecture is costed once
    keys = [repr(c) for c in checked]
    assert len(keys) == len(set(keys)) < a.n_rejected + a.n_predicted


def test_package_import_does_not_load_torch():
    code = "import sys, hwaml_ofa_nas, hwaml_ofa_nas.plugin; assert 'torch' not in sys.modules, 'torch imported'; hwaml_ofa_nas.OFAMobileNetV3; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
