import numpy as np
import pytest
import torch
from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config

from hwaml_apq.network import build_untrained, extract_subnet, quantize_subnet
from hwaml_apq.quantize import ActivationQuantizer, QuantConv2d, calibrate, kl_threshold, quant_layers, quantize_weight
from hwaml_apq.space import extreme_config, joint_space


def test_weights_are_symmetric_linear_with_straight_through_gradients():
    w = torch.randn(64, 8, requires_grad=True)
    for bits in (4, 6, 8):
        q = quantize_weight(w, bits)
        levels = torch.unique(torch.round(q.detach() / (w.detach().abs().max() / (2 ** (bits - 1) - 1))))
        assert levels.numel() <= 2 ** bits - 1 and levels.min() >= -(2 ** (bits - 1) - 1) and levels.max() <= 2 ** (bits - 1) - 1
    quantize_weight(w, 4).sum().backward()
    assert torch.allclose(w.grad, torch.ones_like(w))  # STE: rounding passes the gradient


def test_unsigned_activations_with_trainable_clip_initialised_at_six():
    q = ActivationQuantizer(4)
    assert float(q.alpha.detach()) == 6.0
    x = torch.linspace(-2, 10, 200, requires_grad=True)
    y = q(x)
    y_ = y.detach()
    assert float(y_.min()) == 0.0 and float(y_.max()) == pytest.approx(6.0)
    assert torch.unique(y.detach()).numel() <= 16
    y.sum().backward()
    # clipped inputs train alpha with gradient 1 each (PACT); the rounding residual of the rest adds little
    assert float(q.alpha.grad) == pytest.approx(float((x > 6).sum()), abs=1.0)


def test_kl_threshold_clips_heavy_tails_at_low_bits():
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_cauchy(20000))
    t4 = kl_threshold(x, 4, signed=False, n_bins=256)
    assert 0 < t4 < 0.5 * x.max()
    assert kl_threshold(np.zeros(10), 4, False) > 0


def test_quantized_subnet_calibrates_and_keeps_8_bit_outputs_close():
    arch = supernet_config("test_tiny")
    torch.manual_seed(0)
    net = OFAMobileNetV3(arch).eval()
    space = joint_space(arch)
    res = space.meta["apq"]["resolution"]
    cfg8 = extreme_config(space, "max", bits=8)
    sub = extract_subnet(net, cfg8, res)
    x = torch.randn(16, 3, res, res)
    q8 = quantize_subnet(sub, arch)
    clips = calibrate(q8, x, n_bins=64)
    assert len(clips) == len(quant_layers(q8)) and all(c > 0 for c in clips.values())
    ref, out = sub(x), q8(x)
    assert float((ref - out).abs().max()) < 0.1 * float(ref.abs().max()) + 1e-3
    cfg4 = extreme_config(space, "max", bits=4)
    q4 = quantize_subnet(extract_subnet(net, cfg4, res), arch)
    calibrate(q4, x, n_bins=64)
    bits = {(m.w_bits, m.a_bits) for _, m in quant_layers(q4)}
    assert (4, 4) in bits and (8, 8) in bits  # searched blocks at 4, fixed layers at 8


def test_extracted_width_is_the_first_channels_of_the_supernet():
    arch = supernet_config("test_tiny")
    net = OFAMobileNetV3(arch).eval()
    space = joint_space(arch)
    res = space.meta["apq"]["resolution"]
    cfg = extreme_config(space, "min")
    sub = extract_subnet(net, cfg, res)
    mid = cfg["stage1"]["first"]["width"]
    blk = sub.blocks[0]
    assert blk.inverted_bottleneck.conv.out_channels == mid
    assert torch.equal(blk.inverted_bottleneck.conv.weight, net.blocks[0].inverted_bottleneck.conv.weight[:mid, : blk.in_channels])
    assert build_untrained(arch, cfg, res)(torch.zeros(1, 3, res, res)).shape == (1, arch.n_classes)
