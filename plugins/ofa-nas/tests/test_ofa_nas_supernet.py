"""Elastic modules, supernet, sub-network extraction, MACs/parameter counts."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwaml import SpaceError
from hwaml_ofa_nas.elastic import ElasticDepthwiseConv2d, ElasticMBConv, make_divisible
from hwaml_ofa_nas.layers import module_macs, module_params
from hwaml_ofa_nas.predictors import count_macs, count_params
from hwaml_ofa_nas.supernet import OFAMobileNetV3, PRESETS, build_subnet, supernet_config


def _randomise(net):
    """Non-trivial BN statistics and kernel transforms, so equality means something."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
        for p in net.kernel_transforms():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("arch", ["test_tiny", "tiny_digits"])
def test_extracted_subnet_equals_supernet(arch):
    net = OFAMobileNetV3(arch)
    _randomise(net)
    net.eval()
    rng = np.random.default_rng(1)
    for _ in range(6):
        cfg = net.sample_active_subnet(rng)
        sub = net.get_active_subnet().eval()
        assert not any("Elastic" in type(m).__name__ for m in sub.modules())
        x = torch.randn(3, 3, cfg["resolution"], cfg["resolution"])
        with torch.no_grad():
            torch.testing.assert_close(sub(x), net(x), rtol=1e-5, atol=1e-5)
        assert sub.config == cfg


def test_depth_keeps_the_first_blocks_and_sample_restricts_choices():
    net = OFAMobileNetV3("test_tiny")
    rng = np.random.default_rng(0)
    cfg = net.sample_active_subnet(rng, kernel_choices=[5], expand_choices=[4], depth_choices=[2])
    assert all(len(cfg[s]) == 2 for s in net.arch.stage_names)
    assert all(b == {"kernel": 5, "expand": 4} for s in net.arch.stage_names for b in cfg[s])
    active = list(net.active_blocks())
    assert active == [net.blocks[i] for idx in net.stage_block_index for i in idx[:2]]


def test_invalid_config_names_the_key():
    net = OFAMobileNetV3("test_tiny")
    cfg = net.max_config()
    cfg["stage2"][1]["kernel"] = 4
    with pytest.raises(SpaceError, match=r"stage2\.1\.kernel"):
        net.set_active_subnet(cfg)


def test_kernel_transform_starts_as_centre_crop_and_is_differentiable():
    conv = ElasticDepthwiseConv2d(6, [3, 5, 7])
    w3 = conv.kernel_weight(6, 3)
    torch.testing.assert_close(w3, conv.weight[:, :, 2:5, 2:5])
    with torch.no_grad():
        conv.transforms["5to3"].mul_(2.0)
    torch.testing.assert_close(conv.kernel_weight(6, 3), 2 * conv.weight[:, :, 2:5, 2:5])
    conv.active_kernel = 3
    conv(torch.randn(1, 6, 8, 8)).sum().backward()
    assert conv.transforms["7to5"].grad is not None and conv.transforms["5to3"].grad.abs().sum() > 0


def test_channel_sorting_preserves_the_full_block_and_orders_importance():
    torch.manual_seed(0)
    block = ElasticMBConv(8, 8, 1, "hswish", True, expand_choices=(3, 4, 6))
    x = torch.randn(2, 8, 6, 6)
    block.eval()
    with torch.no_grad():
        before = block(x)
        block.sort_channels()
        after = block(x)
    torch.testing.assert_close(before, after, rtol=1e-5, atol=1e-5)  # a permutation of the middle channels
    imp = block.point_linear.conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(imp[:-1] >= imp[1:] - 1e-6)


def test_protected_sorting_keeps_segments():
    torch.manual_seed(1)
    block = ElasticMBConv(8, 8, 1, "relu", False, expand_choices=(3, 4, 6))
    w4 = block.mid_channels(4)
    before = block.point_linear.conv.weight.detach().clone()
    order = block.sort_channels(protected_expands=[4])
    assert sorted(order[:w4].tolist()) == list(range(w4))  # the first w4 channels stay in front
    assert sorted(order[w4:].tolist()) == list(range(w4, before.shape[1]))


@pytest.mark.parametrize("arch,n", [("tiny_digits", 4), ("mobilenetv3_large", 1)])
def test_macs_and_params_match_the_module(arch, n):
    """OFA's analytic count equals FlopCounterMode's FLOPs / 2 on the module (SE's 1x1 convolutions included)."""
    net = OFAMobileNetV3(arch)
    rng = np.random.default_rng(2)
    for _ in range(n):
        cfg = net.sample_active_subnet(rng)
        sub = net.get_active_subnet().eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            sub(torch.randn(1, 3, cfg["resolution"], cfg["resolution"]))
        assert counter.get_total_flops() % 2 == 0
        assert count_macs(net.arch, cfg) == counter.get_total_flops() // 2 == module_macs(sub, (3, cfg["resolution"], cfg["resolution"]))
        assert count_params(net.arch, cfg) == sum(p.numel() for p in sub.parameters()) == module_params(sub)


def test_imagenet_preset_and_width_multiplier():
    arch = supernet_config("mobilenetv3_large")
    assert [s.width for s in arch.stages] == [24, 40, 80, 112, 160]
    net = OFAMobileNetV3(arch)
    big = count_macs(arch, net.max_config())
    small = count_macs(arch, net.min_config())
    assert 50e6 < small < big < 1e9
    wide = supernet_config("mobilenetv3_large", {"width_mult": 1.2})
    assert wide.stage_widths == [make_divisible(w * 1.2) for w in (24, 40, 80, 112, 160)]
    assert count_macs(wide, net.max_config()) > big


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match="arch_overrides.widht_mult"):
        supernet_config("tiny_digits", {"widht_mult": 2})
    with pytest.raises(ValueError, match="unknown supernet preset"):
        supernet_config("nope")


def test_build_subnet_from_scratch_has_the_same_shapes():
    net = OFAMobileNetV3("test_tiny")
    cfg = net.sample_active_subnet(np.random.default_rng(3))
    a = net.get_active_subnet()
    b = build_subnet(net.arch, cfg)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
