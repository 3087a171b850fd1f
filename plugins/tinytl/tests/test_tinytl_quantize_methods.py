import pytest
import torch

from hwaml_tinytl.backbone import MobileNetV2Backbone, replace_classifier
from hwaml_tinytl.lite_residual import LiteResidualModule, insert_lite_residuals
from hwaml_tinytl.methods import METHODS, configure_method, uses_lite_residual
from hwaml_tinytl.quantize import kmeans_1d, quantize_frozen_weights


def test_kmeans_256_clusters_beats_uniform_8_bit():
    w = torch.randn(64, 32, 3, 3) * torch.linspace(0.1, 2, 64).view(-1, 1, 1, 1)
    book = kmeans_1d(w)
    assert book.codes.dtype == torch.uint8 and book.codes.shape == w.shape and book.centroids.numel() == 256
    q = book.dequantize()
    assert torch.unique(q).numel() <= 256
    lo, hi = float(w.min()), float(w.max())
    step = (hi - lo) / 255
    uniform = torch.round((w - lo) / step) * step + lo
    assert float(((q - w) ** 2).mean()) < float(((uniform - w) ** 2).mean())
    with pytest.raises(ValueError, match="256"):
        kmeans_1d(w, 300)


def _net(method):
    net = MobileNetV2Backbone("test")
    replace_classifier(net, 4)
    if uses_lite_residual(method):
        insert_lite_residuals(net, (1, 16, 16))
    return configure_method(net, method)


def _trainable(net):
    return {n for n, p in net.named_parameters() if p.requires_grad}


def test_the_six_methods_train_what_the_paper_says():
    full = _trainable(_net("ft_full"))
    last = _trainable(_net("ft_last"))
    assert last == {"classifier.weight", "classifier.bias"}
    norm_last = _trainable(_net("ft_norm_last"))
    assert {n for n in norm_last if "norm" in n} and all("norm" in n or "classifier" in n for n in norm_last)
    b = _trainable(_net("tinytl_b"))
    assert all(n.endswith(".bias") for n in b - {"classifier.weight"}) and not any(n.endswith("norm.weight") for n in b)
    assert {n for n in norm_last if n.endswith("norm.bias")} <= b
    l_net = _net("tinytl_l")
    lite = _trainable(l_net)
    assert all("lite_residual" in n or "classifier" in n for n in lite) and any("lite_residual" in n for n in lite)
    lb = _trainable(_net("tinytl_lb"))
    # the lite residual module wraps the main branch: its parameters move under .main_branch
    assert lite < lb and b <= {n.replace(".main_branch", "") for n in lb}
    assert full == {n for n, _ in _net("ft_full").named_parameters()}
    with pytest.raises(ValueError, match="lite residual"):
        configure_method(MobileNetV2Backbone("test"), "tinytl_l")
    with pytest.raises(ValueError, match="not one of"):
        configure_method(MobileNetV2Backbone("test"), "ft_everything")


def test_only_frozen_weights_are_quantised():
    net = _net("tinytl_lb")
    trainable_before = {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
    books = quantize_frozen_weights(net)
    assert books and all(not net.get_submodule(n).weight.requires_grad for n in books)
    assert "classifier" not in books and not any("lite_residual" in n for n in books)
    for n, p in net.named_parameters():
        if n in trainable_before:
            assert torch.equal(p, trainable_before[n])
    for n in books:
        assert torch.unique(net.get_submodule(n).weight).numel() <= 256
