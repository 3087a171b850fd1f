"""The memory-saving mode: gradients equal plain autograd's, and the analytic model
(exact rule) predicts its saved-for-backward bytes; the paper rule's predictions."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwaml import Candidate
from hwaml.testing import make_context
from hwaml_tinytl.backbone import MobileNetV2Backbone, replace_classifier, to_groupnorm_ws
from hwaml_tinytl.lite_residual import insert_lite_residuals
from hwaml_tinytl.measure import measure_training_step
from hwaml_tinytl.memory import profile_training_memory
from hwaml_tinytl.memsave import pack_mask, to_memory_saving, unpack_mask
from hwaml_tinytl.methods import METHODS, configure_method, uses_lite_residual
from hwaml_tinytl.quantize import quantize_frozen_weights

SHAPE = (1, 16, 16)


def _net(method, seed=0):
    torch.manual_seed(seed)
    net = MobileNetV2Backbone("test")
    replace_classifier(net, 4)
    if uses_lite_residual(method):
        insert_lite_residuals(net, SHAPE)
        with torch.no_grad():  # a trained-looking lite branch (not the zero start) so its gradients are not trivial
            for m in net.modules():
                if isinstance(m, nn.GroupNorm) and torch.count_nonzero(m.weight) == 0:
                    m.weight.fill_(0.5)
    configure_method(net, method)
    return net.train()


def _grads(net, x, y, seed):
    torch.manual_seed(seed)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}


def test_pack_unpack_roundtrip():
    m = torch.rand(3, 5, 7) > 0.5
    p = pack_mask(m)
    assert p.dtype == torch.uint8 and p.numel() == math.ceil(m.numel() / 8)
    assert torch.equal(unpack_mask(p, m.shape), m)


@pytest.mark.parametrize("method", METHODS)
def test_gradients_equal_plain_mode(method):
    net = _net(method)
    books = quantize_frozen_weights(net)
    mem = to_memory_saving(net, books)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, *SHAPE, generator=g), torch.randint(0, 4, (3,), generator=g)
    l_plain, g_plain = _grads(net, x, y, 5)
    l_mem, g_mem = _grads(mem, x, y, 5)  # same seed: the same dropout mask
    assert l_plain == pytest.approx(l_mem, abs=1e-6)
    assert g_plain.keys() == g_mem.keys() and g_plain
    for name in g_plain:
        assert torch.allclose(g_plain[name], g_mem[name], rtol=1e-5, atol=1e-7), name
    # frozen conv weights really are 8-bit in memory-saving mode
    assert any(b.dtype == torch.uint8 for b in mem.buffers()) == (method != "ft_full")
    # block recomputation: the same gradients again
    again = to_memory_saving(net, books, recompute=True, input_shape=SHAPE)
    _, g_again = _grads(again, x, y, 5)
    g_again = {n.replace(".block.", ".", 1) if ".block." in n else n: g for n, g in g_again.items()}
    assert g_again.keys() == g_plain.keys()
    for name in g_plain:
        assert torch.allclose(g_plain[name], g_again[name], rtol=1e-5, atol=1e-7), name


def test_gradients_equal_on_an_ofa_subnet(tmp_path):
    from hwaml_ofa_nas.evaluator import OFAEvaluator

    from hwaml_ofa_nas.supernet import OFAMobileNetV3

    ev = OFAEvaluator(arch="test_tiny", progress=False, train_if_missing=False)
    cfg = OFAMobileNetV3.space_for(ev.arch).sample(np.random.default_rng(1))
    built = ev.build_model(candidate=Candidate(cfg), trial=None, ctx=make_context(tmp_path))
    net, shape = to_groupnorm_ws(built.module), tuple(built.input_shape)
    insert_lite_residuals(net, shape)
    replace_classifier(net, 3)
    configure_method(net, "tinytl_lb")
    net.train()
    books = quantize_frozen_weights(net)
    mem = to_memory_saving(net, books)
    x, y = torch.randn(2, *shape), torch.tensor([0, 2])
    _, g1 = _grads(net, x, y, 0)
    _, g2 = _grads(mem, x, y, 0)
    for name in g1:
        assert torch.allclose(g1[name], g2[name], rtol=1e-5, atol=1e-7), name
    step = measure_training_step(net, shape, 2, memory_saving=True, books=books)
    assert step.saved_bytes > 0


@pytest.mark.parametrize("method", METHODS)
def test_exact_rule_predicts_the_measured_saved_bytes(method):
    net = _net(method)
    books = quantize_frozen_weights(net)
    for batch in (1, 8):
        analytic = profile_training_memory(net, SHAPE, batch, norm_rule="exact").saved_bytes
        measured = measure_training_step(net, SHAPE, batch, memory_saving=True, books=books).saved_bytes
        # outside the network only the loss saves: its log-softmax (fp32, batch x 4 classes) and the int64 targets
        loss_bytes = 4 * batch * 4 + 8 * batch
        assert abs(measured - analytic - loss_bytes) <= 16, (method, batch, analytic, measured)
    # with block recomputation: each block keeps its input only
    analytic = profile_training_memory(net, SHAPE, 8, norm_rule="exact", recompute=True, peak_rule="schedule").saved_bytes
    measured = measure_training_step(net, SHAPE, 8, memory_saving=True, books=books, recompute=True).saved_bytes
    assert abs(measured - analytic - (4 * 8 * 4 + 8 * 8)) <= 16, (method, analytic, measured)


def test_memory_saving_mode_saves_less_than_plain_pytorch():
    net = _net("tinytl_lb")
    books = quantize_frozen_weights(net)
    plain = measure_training_step(net, SHAPE, 8, memory_saving=False)
    saving = measure_training_step(net, SHAPE, 8, memory_saving=True, books=books)
    assert saving.saved_bytes < 0.6 * plain.saved_bytes
    assert saving.param_bytes < plain.param_bytes  # uint8 codes for the frozen weights


def test_paper_rules():
    # FT-Last: nothing upstream of the classifier is saved
    last = profile_training_memory(_net("ft_last"), SHAPE, 8)
    assert last.saved_bytes == 4 * 8 * 32  # the classifier's input (feature width 32)
    # TinyTL-B under the paper's rule: only 1-bit ReLU masks and the classifier input
    b = _net("tinytl_b")
    prof = profile_training_memory(b, SHAPE, 8)
    relu_elems = sum(r.in_numel for r in prof.layers if r.kind in ("ReLU", "ReLU6") and r.out_requires_grad)
    assert prof.saved_bytes == math.ceil(relu_elems * 8 / 8) * 0 + sum(math.ceil(r.in_numel * 8 / 8) for r in prof.layers if r.saved_bits) + 4 * 8 * 32
    # FT-Full keeps every conv input; batch scales activations linearly; weights: 32 bits trainable, 8 frozen
    full = profile_training_memory(_net("ft_full"), SHAPE, 8)
    assert full.saved_bytes > 10 * prof.saved_bytes
    one = profile_training_memory(_net("ft_full"), SHAPE, 1)
    assert full.saved_bytes == pytest.approx(8 * one.saved_bytes, rel=0.01)
    assert full.weight_bytes == 4 * full.trainable_params and full.frozen_params == 0
    assert prof.weight_bytes == 4 * prof.trainable_params + math.ceil(prof.frozen_params * 8 / 8)
    assert full.peak_activation_bytes >= full.saved_bytes
    # h-swish stores its full input
    hs = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Hardswish(), nn.Flatten(), nn.Linear(8 * 16 * 16, 2))
    p = profile_training_memory(hs, SHAPE, 2)
    assert p.layers[1].saved_fp == 8 * 16 * 16


def test_training_with_recomputation_trains_the_same_weights():
    import copy

    from hwaml_tinytl.data import Split, TargetData
    from hwaml_tinytl.training import TransferRecipe, transfer

    net = _net("tinytl_lb")
    books = quantize_frozen_weights(net)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, *SHAPE, generator=g), torch.randint(0, 4, (16,), generator=g)
    data = TargetData("t", Split(x, y), Split(x[:8], y[:8]), Split(x[:8], y[:8]), 4, list("abcd"))
    a, b, c = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    transfer(a, data, TransferRecipe(epochs=1, lr=1e-2, memory_saving=False), 0, books, show=False)
    transfer(b, data, TransferRecipe(epochs=1, lr=1e-2), 0, books, show=False)
    transfer(c, data, TransferRecipe(epochs=1, lr=1e-2, recompute=True), 0, books, show=False)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6) and torch.allclose(pb, pc, atol=1e-6), name
    assert any(not torch.equal(pa, pn) for pa, pn in zip(a.parameters(), net.parameters()))
    with pytest.raises(ValueError, match="memory_saving"):
        transfer(copy.deepcopy(net), data, TransferRecipe(epochs=1, memory_saving=False, recompute=True), 0, books, show=False)
