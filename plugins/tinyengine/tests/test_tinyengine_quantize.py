"""Quantisation: fixed-point requantisation, weight error bounds, BN folding,
int8 outputs close to float."""

import math

import numpy as np
import pytest
import torch

from hwaml_tinyengine.ir import import_model, run_float
from hwaml_tinyengine.quantize import dequantize_output, quantize_graph, quantize_input, quantize_multiplier, requantize, run_int8


@pytest.mark.parametrize("real", [1e-6, 3.7e-4, 0.0123, 0.5, 0.75, 0.999999, 1.0, 1.9, 37.5])
def test_quantize_multiplier_represents_the_real_factor(real):
    q, shift = quantize_multiplier(real)
    assert 2**30 <= q < 2**31
    assert math.isclose(q * 2.0 ** (shift - 31), real, rel_tol=2**-30)


def test_requantize_rounds_to_nearest():
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**20), 2**20, size=5000)
    for real in (0.00123, 0.0457, 0.31, 1.7):
        q, s = quantize_multiplier(real)
        got = requantize(acc, q, s)
        exact = acc * real
        assert np.abs(got - exact).max() <= 0.5 + 1e-6 * np.abs(exact).max() + 1e-9
    # gemmlowp's tie rules: the doubling high multiply rounds halves upward,
    # the rounding right shift rounds halves away from zero
    q, s = quantize_multiplier(0.5)
    assert s == 0 and requantize(np.array([3, -3, 5, -5]), q, s).tolist() == [2, -1, 3, -2]
    q, s = quantize_multiplier(0.25)
    assert s == -1 and requantize(np.array([6, -6, 10, -10]), q, s).tolist() == [2, -2, 3, -3]


def test_batchnorm_is_folded_exactly(mcunet_small):
    g = import_model(mcunet_small, mcunet_small.input_shape)
    assert not any(g.nodes[n]["op"] == "batchnorm" for n in g)
    x = torch.randn(4, *mcunet_small.input_shape)
    with torch.no_grad():
        ref = mcunet_small(x).double()
    assert torch.allclose(run_float(g, x), ref, atol=1e-5)


def test_per_channel_weight_error_is_within_half_a_step(mcunet_small):
    g = import_model(mcunet_small, mcunet_small.input_shape)
    qg = quantize_graph(g, torch.randn(16, *mcunet_small.input_shape))
    for n in qg.graph["order"]:
        d = qg.nodes[n]
        if "w_int8" not in d:
            continue
        w = d["weight"].reshape(d["weight"].shape[0], -1)
        deq = d["w_int8"].reshape(w.shape[0], -1).astype(np.float64) * d["w_scale"][:, None]
        err = np.abs(deq - w).max(axis=1)
        assert np.all(err <= d["w_scale"] / 2 + 1e-12), n
        assert np.abs(d["w_int8"]).max() <= 127
        # per channel: every output channel uses its full range
        assert np.all(np.abs(d["w_int8"].reshape(w.shape[0], -1)).max(axis=1) == 127)


def test_activation_zero_is_exact_and_relu_outputs_clamp(mcunet_small):
    g = import_model(mcunet_small, mcunet_small.input_shape)
    qg = quantize_graph(g, torch.randn(16, *mcunet_small.input_shape))
    for n in qg.graph["order"]:
        d = qg.nodes[n]
        s, zp = d["q"]
        assert -128 <= zp <= 127 and s > 0
        if d["act"] == "relu6":
            assert d["qmin"] == max(-128, zp) and (d["qmax"] - zp) * s <= 6.0 + s


def test_int8_model_tracks_the_float_model(mcunet_small):
    g = import_model(mcunet_small, mcunet_small.input_shape)
    calib = torch.randn(64, *mcunet_small.input_shape, generator=torch.Generator().manual_seed(0))
    qg = quantize_graph(g, calib)
    x = torch.randn(32, *mcunet_small.input_shape, generator=torch.Generator().manual_seed(1))
    y_float = run_float(g, x).numpy()
    y_int8 = dequantize_output(qg, run_int8(qg, quantize_input(qg, x)))
    out_scale = qg.nodes[qg.graph["output"]]["q"][0]
    rel = np.abs(y_int8 - y_float).max() / np.abs(y_float).max()
    assert rel < 0.1, rel
    assert np.abs(y_int8 - y_float).mean() < 8 * out_scale
