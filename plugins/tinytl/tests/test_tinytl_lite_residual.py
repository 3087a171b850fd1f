"""The lite residual module as published, inserted into this plugin's backbone and into an
ofa-nas sub-network built through the ofa-nas evaluator's build_model."""

import numpy as np
import pytest
import torch
from torch import nn

from hwaml import Candidate
from hwaml.testing import make_context
from hwaml_tinytl.backbone import MobileNetV2Backbone, WSConv2d, replace_classifier, to_groupnorm_ws
from hwaml_tinytl.lite_residual import LiteResidualModule, LiteSpec, find_mobile_blocks, insert_lite_residuals, published_kernel


def test_published_kernel_rule():
    # 5, reduced by 2 until it fits the pooled resolution; pooled 1: global pool, k=1
    assert published_kernel(128) == (5, 2)
    assert published_kernel(8) == (3, 2)  # pooled 4 < 5
    assert published_kernel(4) == (1, 2)  # pooled 2 < 3
    assert published_kernel(2) == (1, None)
    assert published_kernel(1) == (1, None)


def test_module_structure_and_no_op_start():
    main = nn.Conv2d(16, 24, 3, 2, 1)
    m = LiteResidualModule(main, 16, 24, kernel_size=5, stride=2, groups=2)
    lite = m.lite_residual
    assert isinstance(lite.pooling, nn.AvgPool2d) and lite.pooling.kernel_size == 2
    assert lite.conv1.groups == 2 and lite.conv1.stride == (2, 2) and lite.conv1.bias is None and lite.conv1.kernel_size == (5, 5)
    assert lite.conv1.out_channels == 16  # middle width = input width (multiple of 8)
    assert lite.conv2.kernel_size == (1, 1) and lite.conv2.out_channels == 24
    assert isinstance(lite.norm1, nn.GroupNorm) and isinstance(lite.act, nn.ReLU)
    assert torch.count_nonzero(lite.final_norm.weight) == 0
    x = torch.randn(2, 16, 12, 12)
    assert torch.equal(m(x), main(x))  # starts as the identity on the pretrained network
    with torch.no_grad():
        lite.final_norm.weight.fill_(1.0)
    assert not torch.allclose(m(x), main(x))


def test_groups_must_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        LiteResidualModule(nn.Identity(), 12, 12, groups=5)


def test_own_backbone_wraps_the_main_branch_not_the_shortcut():
    net = MobileNetV2Backbone("test")
    shape = (1, 16, 16)
    blocks = find_mobile_blocks(net, shape)
    assert len(blocks) == 1 + 3  # first block + stages (1 + 2)
    assert all(b.wraps == "main_branch" and b.path.endswith(".main") for b in blocks)
    assert [b.stride for b in blocks] == [1, 2, 2, 1]
    net.eval()
    x = torch.randn(2, *shape)
    before = net(x)
    inserted = insert_lite_residuals(net, shape)
    assert [d["block"] for d in inserted] == [1, 2, 3]  # published: every block but the first
    assert [d["kernel"] for d in inserted] == [3, 1, 1]  # 8x8 -> pooled 4 -> k3; 4x4 -> pooled 2 -> k1
    assert isinstance(net.blocks[1].main, LiteResidualModule) and net.blocks[1].residual is False
    assert isinstance(net.blocks[3].main, LiteResidualModule) and net.blocks[3].residual is True
    assert torch.allclose(net(x), before, atol=1e-6)
    with pytest.raises(ValueError, match="exceeds"):
        insert_lite_residuals(MobileNetV2Backbone("test"), shape, [LiteSpec(False), LiteSpec(True, kernel=5), LiteSpec(False), LiteSpec(False)])


def _ofa_subnet(tmp_path):
    from hwaml_ofa_nas.evaluator import OFAEvaluator

    from hwaml_ofa_nas.supernet import OFAMobileNetV3

    # the ofa-nas evaluator's own build_model hook (costing form: no supernet training needed)
    ev = OFAEvaluator(arch="test_tiny", progress=False, train_if_missing=False)
    cfg = OFAMobileNetV3.space_for(ev.arch).sample(np.random.default_rng(3))
    built = ev.build_model(candidate=Candidate(cfg), trial=None, ctx=make_context(tmp_path))
    return built.module, tuple(built.input_shape)


def test_ofa_subnet_from_its_evaluator_takes_lite_residuals(tmp_path):
    net, shape = _ofa_subnet(tmp_path)
    to_groupnorm_ws(net)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert all(isinstance(m, WSConv2d) for m in net.modules() if isinstance(m, nn.Conv2d))
    blocks = find_mobile_blocks(net, shape)
    n_blocks = 1 + len(net.blocks)
    assert len(blocks) == n_blocks and all(b.wraps == "block" for b in blocks)
    net.eval()
    x = torch.randn(2, *shape)
    before = net(x)
    inserted = insert_lite_residuals(net, shape)
    assert len(inserted) == n_blocks - 1
    assert sum(isinstance(m, LiteResidualModule) for m in net.modules()) == n_blocks - 1
    assert torch.allclose(net(x), before, atol=1e-6)
    replace_classifier(net, 3)
    assert net(x).shape == (2, 3)
