import pytest
import torch
import torch.nn as nn

from hwaml_tinyengine.models import mcunet_from_config


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial batch-norm statistics so folding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.6 - 0.3)
    return model.eval()


class BranchyNet(nn.Module):
    """Every supported op: conv, depthwise (in place), pointwise, residual add,
    concatenation, average pooling, standalone ReLU, ReLU6, global pooling, and a
    linear layer on a spatial tensor (flatten order)."""

    def __init__(self):
        super().__init__()
        self.input_shape = (3, 20, 20)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.expand = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 5, 1, 2, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.side = nn.Conv2d(8, 4, 3, 1, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.dw2 = nn.Conv2d(12, 12, 3, 2, 1, groups=12)
        self.head = nn.Linear(12 * 3 * 3, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.dw(self.expand(x)))
        y = self.side(x)
        z = torch.cat([x, y], 1)
        z = self.relu(z)
        z = self.pool(z)
        z = torch.relu(self.dw2(z))
        return self.head(torch.flatten(z, 1))


@pytest.fixture
def branchy():
    torch.manual_seed(0)
    return randomise_bn(BranchyNet())


@pytest.fixture
def mcunet_small():
    torch.manual_seed(0)
    cfg = {"resolution": 24, "width": 0.5, "blocks": [{"kernel": k, "expand": e} for k, e in [(3, 3), (5, 4), (7, 6), (3, 3), (5, 6)]]}
    return randomise_bn(mcunet_from_config(cfg))


class SqueezeExcite(nn.Module):
    def __init__(self, c, mid):
        super().__init__()
        self.reduce = nn.Conv2d(c, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, c, 1, bias=True)

    def forward(self, x):
        y = x.mean((2, 3), keepdim=True)
        y = nn.functional.relu(self.reduce(y), inplace=True)
        return x * nn.functional.hardsigmoid(self.expand(y), inplace=True)


class MobileNetV3Like(nn.Module):
    """MobileNetV3's pieces (as OFA's sub-networks use them): h-swish after conv +
    BN, squeeze-and-excite (global mean, 1x1 convs with bias, ReLU, h-sigmoid,
    channel scaling), a residual block, a head of 1x1 convs on the pooled vector."""

    def __init__(self):
        super().__init__()
        self.input_shape = (1, 16, 16)
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish(inplace=True))
        self.expand = nn.Sequential(nn.Conv2d(8, 24, 1, bias=False), nn.BatchNorm2d(24), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(24, 24, 3, 1, 1, groups=24, bias=False), nn.BatchNorm2d(24), nn.Hardswish(), SqueezeExcite(24, 8))
        self.project = nn.Sequential(nn.Conv2d(24, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.final = nn.Sequential(nn.Conv2d(8, 32, 1, bias=False), nn.BatchNorm2d(32), nn.Hardswish())
        self.mix = nn.Sequential(nn.Conv2d(32, 40, 1, bias=False), nn.Hardswish())
        self.classifier = nn.Linear(40, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.dw(self.expand(x)))
        x = self.final(x).mean((2, 3), keepdim=True)
        return self.classifier(self.mix(x).flatten(1))


@pytest.fixture
def mbv3():
    torch.manual_seed(0)
    return randomise_bn(MobileNetV3Like())
