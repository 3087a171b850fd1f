"""SPVConv transforms, SPVCNN / MinkUNet, weight sharing and MACs."""

import numpy as np
import pytest
import torch

from hwaml_spvnas.design_space import DesignSpace
from hwaml_spvnas.models import SPVCNN, spvcnn_spec
from hwaml_spvnas.sparse import PointTensor, SparseTensor, count_macs
from hwaml_spvnas.spvconv import initial_voxelize, point_to_voxel, voxel_to_point


def cloud(n=600, extent=12.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g, dtype=dtype) * extent
    c = torch.cat([torch.zeros(n, 1, dtype=dtype), xyz], 1)
    return PointTensor(torch.randn(n, 4, generator=g, dtype=dtype), c)


def test_initial_voxelize_averages_the_points_of_each_voxel():
    z = cloud()
    x = initial_voxelize(z)
    inv = z.cache[("p2v", 1)]
    assert torch.equal(x.C[inv][:, 1:], torch.floor(z.C[:, 1:]).long())
    for v in range(0, len(x.C), 37):
        assert torch.allclose(x.F[v], z.F[inv == v].mean(0))


def test_voxel_to_point_is_exact_for_a_linear_field_on_a_full_grid():
    # every voxel of a 6^3 grid at level 2 occupied; feature = a . centre + b
    g = torch.stack(torch.meshgrid(*[torch.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    coords = torch.cat([torch.zeros(len(g), 1, dtype=torch.long), g], 1)
    a, b = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), 3.0
    centres = (g.double() + 0.5) * 2
    x = SparseTensor((centres @ a + b).unsqueeze(1), coords, stride=2)
    pts = torch.rand(200, 3, dtype=torch.float64) * 9 + 1.0 + 0.01  # inside the grid's centres
    z = PointTensor(torch.zeros(200, 1, dtype=torch.float64), torch.cat([torch.zeros(200, 1, dtype=torch.float64), pts], 1))
    out = voxel_to_point(x, z)
    assert torch.allclose(out.F.squeeze(1), pts @ a + b, atol=1e-9)


def test_voxel_to_point_zeroes_missing_corners_and_renormalises():
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]])
    x = SparseTensor(torch.tensor([[1.0], [3.0]], dtype=torch.float64), coords)
    # a point between the two voxel centres; its other six corners are empty
    z = PointTensor(torch.zeros(1, 1, dtype=torch.float64), torch.tensor([[0.0, 0.75, 0.6, 0.7]], dtype=torch.float64))
    out = voxel_to_point(x, z)
    idx, w = z.cache[("v2p", 1, 2)]
    assert torch.isclose(w.sum(), torch.tensor(1.0, dtype=torch.float64)) and bool((w[idx < 0] == 0).all())
    # along x the point is 1/4 of the way from centre 0.5 to centre 1.5
    assert torch.isclose(out.F[0, 0], torch.tensor(1.0 * 0.75 + 3.0 * 0.25, dtype=torch.float64))


def test_point_voxel_transforms_have_exact_gradients():
    z = cloud(n=80, extent=4.0)
    x = initial_voxelize(z)
    f = x.F.clone().requires_grad_(True)
    pf = z.F.clone().requires_grad_(True)

    def fn(f, pf):
        zz = voxel_to_point(x.replace_feats(f), z)
        return point_to_voxel(x, zz.replace_feats(zz.F + pf)).F

    assert torch.autograd.gradcheck(fn, (f, pf), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("point_branch", [True, False])
def test_networks_predict_every_point(point_branch):
    torch.manual_seed(0)
    z = cloud(dtype=torch.float32, extent=40.0)
    net = SPVCNN(spvcnn_spec(0.125), 19, point_branch=point_branch).eval()
    with torch.no_grad():
        out = net(z)
    assert out.shape == (600, 19) and torch.isfinite(out).all()
    assert hasattr(net, "point_transforms") == point_branch
    with pytest.raises(TypeError, match="PointTensor"):
        net(torch.randn(1, 4))


def test_subnet_shares_the_first_k_channels_and_matches_the_supernet():
    torch.manual_seed(0)
    space = DesignSpace(width_multiplier=0.25)
    sup = SPVCNN(space.supernet_spec(), 19).eval()
    for m in sup.modules():  # non-trivial running statistics, so BN slicing is exercised
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    rng = np.random.default_rng(0)
    z = cloud(dtype=torch.float32, extent=40.0)
    for _ in range(3):
        arch = space.arch_from_config(space.search_space().sample(rng))
        sup.set_arch(arch)
        with torch.no_grad():
            a = sup(PointTensor(z.F, z.C))
            b = sup.subnet()(PointTensor(z.F, z.C))
        assert torch.allclose(a, b, atol=1e-5)
        assert sum(p.numel() for p in sup.subnet().parameters()) < sum(p.numel() for p in sup.parameters())
    with pytest.raises(ValueError, match="exceeds"):
        sup.set_arch(spvcnn_spec(4.0))


def test_macs_grow_with_width_and_depth_and_count_kernel_map_entries():
    z = cloud(dtype=torch.float32, extent=40.0)
    space = DesignSpace(width_multiplier=0.25)
    macs = []
    for ratio in (0.5, 1.0):
        net = SPVCNN(space.arch_from_config(space.spvcnn_config(ratio)), 19).eval()
        with torch.no_grad(), count_macs() as m:
            net(PointTensor(z.F, z.C))
        macs.append(m.total)
        convs = [n for w, n in m.by_layer if w == "conv"]
        # stem 2, transitions 8, two convs in each of 16 blocks, the conv shortcuts
        assert len(convs) == 2 + 8 + 32 + sum(net.spec["shortcuts"])
    assert macs[1] > 2 * macs[0]
