"""The pure-PyTorch sparse backend: hashing, quantisation, kernel maps, convolutions
(checked against dense convolutions), gradients (gradcheck)."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hwaml_spvnas.sparse import (
    Conv3d,
    SparseTensor,
    build_submanifold_map,
    cat,
    conv3d,
    count_macs,
    downsample_coords,
    hash_coords,
    kernel_offsets,
    sparse_quantize,
)


def random_coords(n=120, size=8, batches=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.cat([torch.randint(0, batches, (n, 1), generator=g), torch.randint(0, size, (n, 3), generator=g)], 1)
    return torch.unique(c, dim=0)


def dense(x: SparseTensor, size: int, batches: int) -> torch.Tensor:
    d = torch.zeros(batches, x.F.shape[1], size, size, size, dtype=x.F.dtype)
    c = x.C
    d[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = x.F
    return d


def dense_weight(w: torch.Tensor, k: int) -> torch.Tensor:
    """[K^3, Cin, Cout] -> torch's [Cout, Cin, K, K, K]."""
    return w.reshape(k, k, k, w.shape[1], w.shape[2]).permute(4, 3, 0, 1, 2)


def test_hash_orders_lexicographically_and_refuses_out_of_range():
    c = random_coords()
    keys = hash_coords(c)
    order = torch.argsort(keys)
    as_tuples = [tuple(r) for r in c[order].tolist()]
    assert as_tuples == sorted(as_tuples)
    assert len(set(keys.tolist())) == len(c)
    with pytest.raises(ValueError, match="coarser voxel size"):
        hash_coords(torch.tensor([[0, 1 << 20, 0, 0]]))
    with pytest.raises(ValueError, match="batch"):
        hash_coords(torch.tensor([[-1, 0, 0, 0]]))


def test_sparse_quantize_returns_voxels_indices_and_inverse():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-3, 3, (500, 3))
    voxels, idx, inv = sparse_quantize(pts, 0.5, return_index=True, return_inverse=True)
    floor = np.floor(pts / 0.5).astype(np.int64)
    assert np.array_equal(voxels[inv], floor)
    assert np.array_equal(np.floor(pts[idx] / 0.5).astype(np.int64), voxels)
    assert len(np.unique(voxels, axis=0)) == len(voxels)
    with pytest.raises(ValueError, match="positive"):
        sparse_quantize(pts, 0.0)


def test_kernel_offsets_centred_for_odd_and_from_zero_for_even():
    assert kernel_offsets(3).shape == (27, 3) and kernel_offsets(3)[13].tolist() == [0, 0, 0]
    assert kernel_offsets(2).min() == 0 and kernel_offsets(2).max() == 1
    assert kernel_offsets(1).tolist() == [[0, 0, 0]]


def test_submanifold_conv_equals_dense_conv_at_the_active_sites():
    torch.manual_seed(0)
    c = random_coords()
    x = SparseTensor(torch.randn(len(c), 3, dtype=torch.float64), c)
    w = torch.randn(27, 3, 5, dtype=torch.float64)
    y = conv3d(x, w, 3, 1)
    assert torch.equal(y.C, x.C) and y.s == 1
    ref = F.conv3d(dense(x, 8, 2), dense_weight(w, 3), padding=1)
    expect = ref[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]
    assert torch.allclose(y.F, expect, atol=1e-10)


def test_stride2_conv_outputs_unique_floor_half_and_equals_dense():
    torch.manual_seed(1)
    c = random_coords(size=8)
    x = SparseTensor(torch.randn(len(c), 2, dtype=torch.float64), c)
    w = torch.randn(8, 2, 4, dtype=torch.float64)
    y = conv3d(x, w, 2, 2)
    half = c.clone()
    half[:, 1:] //= 2
    assert {tuple(r) for r in y.C.tolist()} == {tuple(r) for r in half.tolist()}
    assert len(y.C) == len(torch.unique(half, dim=0)) and y.s == 2
    ref = F.conv3d(dense(x, 8, 2), dense_weight(w, 2), stride=2)
    assert torch.allclose(y.F, ref[y.C[:, 0], :, y.C[:, 1], y.C[:, 2], y.C[:, 3]], atol=1e-10)
    neg = torch.tensor([[0, -1, -3, 2], [0, -2, -4, 3]])
    assert downsample_coords(neg, 2).tolist() == [[0, -1, -2, 1]]


def test_transposed_conv_returns_the_encoders_coordinates_in_order_and_equals_dense():
    torch.manual_seed(2)
    c = random_coords(size=8)
    perm = torch.randperm(len(c))
    c = c[perm]  # an arbitrary encoder order must come back unchanged
    x = SparseTensor(torch.randn(len(c), 2, dtype=torch.float64), c)
    down = conv3d(x, torch.randn(8, 2, 3, dtype=torch.float64), 2, 2)
    wt = torch.randn(8, 3, 2, dtype=torch.float64)
    up = conv3d(down, wt, 2, 2, transposed=True)
    assert torch.equal(up.C, x.C) and up.s == 1
    ref = F.conv_transpose3d(dense(down, 4, 2), dense_weight(wt, 2).transpose(0, 1), stride=2)
    assert torch.allclose(up.F, ref[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]], atol=1e-10)
    # concatenation with the skip needs exactly that order
    assert cat([up, x]).F.shape == (len(c), 4)
    with pytest.raises(ValueError, match="no cached"):
        conv3d(SparseTensor(torch.randn(4, 2), c[:4], stride=2), wt[:, :2], 2, 2, transposed=True)


def test_kernel_maps_are_cached_and_reused():
    c = random_coords()
    x = SparseTensor(torch.randn(len(c), 3), c)
    conv = Conv3d(3, 3, 3)
    y = conv(conv(x))
    assert len([k for k in x.cache.kmaps if k[0] == "subm"]) == 1
    assert y.cache is x.cache


def test_macs_count_one_mac_per_kernel_map_entry_and_channel_pair():
    c = random_coords()
    x = SparseTensor(torch.randn(len(c), 3), c)
    kmap = build_submanifold_map(c, 3)
    with count_macs() as m:
        conv3d(x, torch.randn(27, 3, 7), 3, 1)
    assert m.total == kmap.pairs() * 3 * 7
    assert len(c) <= kmap.pairs() < 27 * len(c)  # the centre always, never the dense count


@pytest.mark.parametrize("kind", ["subm", "down", "up"])
def test_gradcheck_of_the_sparse_convolutions(kind):
    torch.manual_seed(3)
    c = random_coords(n=16, size=3, batches=1)
    f = torch.randn(len(c), 2, dtype=torch.float64, requires_grad=True)
    k, s = (3, 1) if kind == "subm" else (2, 2)
    w = torch.randn(k ** 3, 2, 1 if kind == "subm" else 2, dtype=torch.float64, requires_grad=True)

    def fn(f, w):
        x = SparseTensor(f, c)
        if kind == "up":
            down = conv3d(x, w, 2, 2)
            return conv3d(down, w.transpose(1, 2), 2, 2, transposed=True).F
        return conv3d(x, w, k, s).F

    assert torch.autograd.gradcheck(fn, (f, w), eps=1e-6, atol=1e-6)


def test_both_look_up_strategies_give_the_same_kernel_maps(monkeypatch):
    import hwaml_spvnas.sparse as sparse
    from hwaml_spvnas.sparse import build_strided_map

    c = random_coords(n=300, size=10, batches=2, seed=5)
    c[:, 1:] -= 4  # negative coordinates too
    dense_sub, dense_down = build_submanifold_map(c, 3), build_strided_map(c, 2, 2)[1]
    monkeypatch.setattr(sparse, "DENSE_INDEX_CELLS", 0)
    sorted_sub, sorted_down = build_submanifold_map(c, 3), build_strided_map(c, 2, 2)[1]
    for a, b in ((dense_sub, sorted_sub), (dense_down, sorted_down)):
        for k in range(len(a.in_idx)):
            assert torch.equal(a.in_idx[k], b.in_idx[k]) and torch.equal(a.out_idx[k], b.out_idx[k])


def test_tiled_stride2_map_equals_the_generic_look_up():
    import hwaml_spvnas.sparse as sparse
    from hwaml_spvnas.sparse import build_strided_map

    c = random_coords(n=300, size=10, batches=2, seed=6)
    c[:, 1:] -= 5
    out, kmap = build_strided_map(c, 2, 2)
    scaled = out.clone()
    scaled[:, 1:] *= 2
    outs, ins = sparse._query_all(c, scaled, kernel_offsets(2))
    for k in range(8):
        assert set(zip(kmap.in_idx[k].tolist(), kmap.out_idx[k].tolist())) == set(zip(ins[k].tolist(), outs[k].tolist()))
    assert sum(len(i) for i in kmap.in_idx) == len(c)  # every input feeds exactly one output
    _, k3 = build_strided_map(c, 3, 2)  # an overlapping kernel goes through the look-up
    assert k3.pairs() > len(c)
