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
