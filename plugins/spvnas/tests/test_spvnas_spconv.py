"""Cross-check against spconv 2.3.8 (CPU build): kernel maps and outputs.

spconv's CPU build has no backward pass (its autograd functions ask for a CUDA
stream); gradients of this package are checked numerically in
test_spvnas_sparse.py instead, and a canary here notices when spconv gains one.
"""

import pytest
import torch

from hwaml_spvnas.sparse import SparseTensor, build_strided_map, build_submanifold_map, conv3d
from hwaml_spvnas.spconv_backend import SpconvRunner, same_rows, spconv_kernel_map


def coords(n=400, size=14, batches=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.cat([torch.randint(0, batches, (n, 1), generator=g), torch.randint(-size // 2, size, (n, 3), generator=g)], 1)
    return torch.unique(c, dim=0)


def pairs_of(kmap, k):
    return set(zip(kmap.in_idx[k].tolist(), kmap.out_idx[k].tolist()))


def test_submanifold_kernel_map_matches_spconv():
    c = coords()
    _, theirs = spconv_kernel_map(c, 3, 1)
    ours = build_submanifold_map(c, 3)
    for k in range(27):
        assert pairs_of(ours, k) == pairs_of(theirs, k), f"offset {k}"


def test_strided_kernel_map_matches_spconv():
    c = coords(seed=1)
    their_out, theirs = spconv_kernel_map(c, 2, 2)
    our_out, ours = build_strided_map(c, 2, 2)
    p = same_rows(their_out, our_out)  # their row p[i] is our output row i
    inv = torch.empty_like(p)
    inv[p] = torch.arange(len(p))
    for k in range(8):
        mapped = set(zip(theirs.in_idx[k].tolist(), inv[theirs.out_idx[k]].tolist()))
        assert mapped == pairs_of(ours, k), f"offset {k}"


def test_outputs_match_spconv_through_subm_down_and_up():
    torch.manual_seed(0)
    c = coords(seed=2)
    feats = torch.randn(len(c), 4)
    w1 = torch.randn(27, 4, 6, requires_grad=True)
    w2 = torch.randn(8, 6, 5, requires_grad=True)
    w3 = torch.randn(8, 5, 3, requires_grad=True)

    def ours():
        x = SparseTensor(feats, c)
        y = conv3d(x, w1, 3, 1)
        d = conv3d(y, w2, 2, 2)
        return y, d, conv3d(d, w3, 2, 2, transposed=True)

    y, d, u = ours()
    r = SpconvRunner()
    t = r.start(SparseTensor(feats, c))
    ty = r.conv(t, w1, 3, 1, key="s1")
    td = r.conv(ty, w2, 2, 2, key="d1")
    tu = r.conv(td, w3, 2, 2, transposed=True, key="d1")
    sy = r.to_sparse(ty, 1)
    assert torch.equal(sy.C, c) and torch.allclose(sy.F, y.F, atol=1e-4)
    sd = r.to_sparse(td, 2)
    p = same_rows(sd.C, d.C)
    assert torch.allclose(sd.F[p], d.F, atol=1e-3)
    su = r.to_sparse(tu, 1)
    assert torch.equal(su.C, c) and torch.allclose(su.F, u.F, atol=1e-3)


def test_spconv_cpu_build_has_no_backward_canary():
    """When this fails, spconv can differentiate on CPU: cross-check gradients too."""
    c = coords(n=100, size=6, seed=3)
    w = torch.randn(27, 2, 2, requires_grad=True)
    r = SpconvRunner()
    out = r.conv(r.start(SparseTensor(torch.randn(len(c), 2), c)), w, 3, 1, key="s")
    with pytest.raises(AssertionError, match="CUDA"):
        out.features.sum().backward()
