"""Architecture encoding, accuracy predictor, latency look-up table."""

import json

import numpy as np
import pytest

from hwaml_ofa_nas.latency_lut import FORMAT_VERSION, LatencyLUT, LUTError, calibration_configs, covering_configs
from hwaml_ofa_nas.layers import decompose
from hwaml_ofa_nas.predictors import (
    AccuracyPredictor,
    ArchEncoder,
    collect_accuracy_dataset,
    count_macs,
    fit_accuracy_predictor,
    load_accuracy_predictor,
)
from hwaml_ofa_nas.supernet import OFAMobileNetV3, build_subnet, layer_specs, supernet_config



def test_encoder_matches_space_encode_and_round_trips():
    space = OFAMobileNetV3.space_for(supernet_config("tiny_digits"))
    enc = ArchEncoder(space.meta["ofa"])
    assert enc.n_features == space.size
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(20)]
    X = enc.encode_configs(configs)
    np.testing.assert_array_equal(X, np.stack([space.encode(c) for c in configs]))
    g = enc.from_configs(configs)
    assert [enc.to_config(g, i) for i in range(len(configs))] == configs
    with pytest.raises(ValueError, match="lacks"):
        ArchEncoder({"stage_keys": ["a"]})


def test_predictor_held_out_rmse_beats_a_constant(tmp_path, accuracy_fn):
    arch = supernet_config("test_tiny")
    space = OFAMobileNetV3.space_for(arch)
    enc = ArchEncoder(space.meta["ofa"])
    rng = np.random.default_rng(1)
    configs = [space.sample(rng) for _ in range(300)]
    y = np.array([accuracy_fn(arch, c) for c in configs]) + rng.normal(0, 0.002, len(configs))
    model, report = fit_accuracy_predictor(enc.encode_configs(configs), y, hidden=64, epochs=150, val_fraction=0.25, seed=0)
    assert report.n_val == 75 and report.n_train == 225
    assert np.isfinite(report.rmse_val)
    assert report.rmse_val < 0.6 * report.rmse_constant
    path = model.save(tmp_path / "acc.pt", space.meta["ofa"], report)
    loaded, meta = load_accuracy_predictor(path)
    np.testing.assert_allclose(loaded.predict(enc.encode_configs(configs[:5])), model.predict(enc.encode_configs(configs[:5])), rtol=1e-6)
    assert meta["stage_keys"] == arch.stage_names
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        load_accuracy_predictor(tmp_path / "bad.pt")


def test_measured_accuracy_pairs_train_a_predictor(trained_tiny, digits16_small):
    _, net, _ = trained_tiny
    configs, accs = collect_accuracy_dataset(net, digits16_small, 24, np.random.default_rng(0), calibration_size=100, progress=False)
    assert len(configs) == 24 and len({json.dumps(c, sort_keys=True) for c in configs}) == 24
    assert np.all((accs >= 0) & (accs <= 1)) and accs.std() > 0
    enc = ArchEncoder(net.space().meta["ofa"])
    _, report = fit_accuracy_predictor(enc.encode_configs(configs), accs, hidden=32, epochs=50, val_fraction=0.25)
    assert report.n_val == 6 and np.isfinite(report.rmse_val) and np.isfinite(report.rmse_constant)


SMALL = {"kernel_choices": [3, 5], "expand_choices": [3, 4], "depth_choices": [1, 2], "resolutions": [12]}
QUICK = {"warmup": 1, "repeats": 2, "calibrate": 0}


def _layers(arch, cfg):
    r = cfg["resolution"]
    return decompose(build_subnet(arch, cfg).eval(), (3, r, r))


def test_lut_covers_the_space_and_sums_match(tmp_path):
    arch = supernet_config("test_tiny", SMALL)
    # the covering configurations hold every layer shape of the space (layer_specs is OFA's own list)
    shapes = {s.key for c in covering_configs(arch) for s in layer_specs(arch, c)}
    space = OFAMobileNetV3.space_for(arch)
    rng = np.random.default_rng(0)
    assert {s.key for _ in range(30) for s in layer_specs(arch, space.sample(rng))} <= shapes
    lut = LatencyLUT.build(arch, engines=["torch"], measure=QUICK, progress=False)
    assert len(lut) == len({layer.key for c in covering_configs(arch) for layer in _layers(arch, c)})
    for _ in range(10):
        layers = _layers(arch, space.sample(rng))
        assert not lut.missing(layers, ["torch"])
        direct = sum(lut.entries[layer.key]["torch"] for layer in layers)
        assert lut.predict(layers) == pytest.approx(direct)
        assert all(lut.entries[layer.key]["torch"] > 0 for layer in layers)
    for name in ("lut.yaml", "lut.json"):
        lut.save(tmp_path / name)
        again = LatencyLUT.load(tmp_path / name)
        assert again.entries == lut.entries and again.meta["arch_digest"] == arch.digest() and again.meta["format"] == FORMAT_VERSION


def test_lut_calibration_and_onnxruntime_engine():
    arch = supernet_config("test_tiny", {**SMALL, "kernel_choices": [3], "depth_choices": [1]})
    lut = LatencyLUT.build(arch, engines=["torch", "onnxruntime"], measure={**QUICK, "repeats": 3, "calibrate": 3}, progress=False)
    assert set(lut.meta["calibration"]) == {"torch", "onnxruntime"} and lut.meta["calibration"]["torch"]["n"] == 3
    space = OFAMobileNetV3.space_for(arch)
    assert calibration_configs(space, 3)[:2] == [OFAMobileNetV3.extreme_config(arch, "min"), OFAMobileNetV3.extreme_config(arch, "max")]
    cfg = OFAMobileNetV3.extreme_config(arch, "max")
    cal = lut.meta["calibration"]["onnxruntime"]
    raw = lut.predict(_layers(arch, cfg), "onnxruntime", raw=True)
    assert lut.predict(_layers(arch, cfg), "onnxruntime") == pytest.approx(cal["scale"] * raw + cal["offset"])


def test_lut_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta: {}\nentries:\n  a: [1, 2\n")
    with pytest.raises(LUTError, match=r"bad.yaml:\d+"):
        LatencyLUT.load(bad)
    badj = tmp_path / "bad.json"
    badj.write_text('{"entries": {\n "x": }')
    with pytest.raises(LUTError, match=r"bad.json:2"):
        LatencyLUT.load(badj)
    lut = LatencyLUT({"Sequential:nothing": {"torch": 1.0}})
    with pytest.raises(LUTError, match="no entry for layer 'stem'"):
        lut.predict(_layers(supernet_config("test_tiny"), OFAMobileNetV3("test_tiny").max_config()))
    old = tmp_path / "old.yaml"
    old.write_text("meta: {format: 2, arch_digest: x}\nentries: {'stem:12x12x3-8-k3-s2': {torch: 0.1}}\n")
    with pytest.raises(LUTError, match="format-2"):
        LatencyLUT.load(old)
    with pytest.raises(ValueError, match="statistic"):
        LatencyLUT.build("test_tiny", ["torch"], {"statistic": "mean"})
