"""torch.fx import: supported ops map to IR layers; anything else is named."""

import pytest
import torch
import torch.nn as nn

from hwaml_tinyengine.ir import UnsupportedOpError, import_model


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = nn.Sequential(nn.Sigmoid())

    def forward(self, x):
        return self.gate(self.conv(x)).mean((2, 3))


class WithMaxPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.nn.functional.max_pool2d(self.conv(x), 2).flatten(1)


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(4, 8, 3, groups=2)

    def forward(self, x):
        return self.body(x)


class HswishAfterAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.act = nn.Hardswish()

    def forward(self, x):
        return self.act(self.conv(x) + x)


class Mul(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x) * x


@pytest.mark.parametrize(
    "model,shape,op,where",
    [
        (WithSigmoid(), (3, 8, 8), "Sigmoid", "gate.0"),
        (WithMaxPool(), (3, 8, 8), "max_pool2d", "max_pool2d"),
        (Grouped(), (4, 8, 8), "Conv2d", "body"),
        (Mul(), (3, 8, 8), "mul", "mul"),
        (HswishAfterAdd(), (3, 8, 8), "Hardswish", "act"),
    ],
)
def test_unsupported_op_is_named_with_its_place(model, shape, op, where):
    with pytest.raises(UnsupportedOpError) as info:
        import_model(model, shape)
    assert info.value.op == op
    assert where in info.value.where
    assert op in str(info.value) and where in str(info.value)


def test_supported_ops_and_fusion(branchy):
    g = import_model(branchy, branchy.input_shape)
    ops = [g.nodes[n]["op"] for n in g.graph["order"]]
    assert ops == ["input", "conv", "pwconv", "dwconv", "pwconv", "add", "conv", "concat", "relu", "avgpool", "dwconv", "linear"]
    acts = {n: g.nodes[n]["act"] for n in g}
    assert acts["stem_0"] == "relu6" and acts["dw2"] == "relu"  # fused into the producer
    # the concat output has two readers? no: one, but a concat cannot fuse, so relu stays a layer
    assert g.nodes["relu"]["op"] == "relu"
    assert g.nodes["head"]["shape"] == (5, 1, 1)
