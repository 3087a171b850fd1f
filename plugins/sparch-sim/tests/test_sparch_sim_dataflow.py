"""The simulated dataflow: exact products, schedules, prefetcher, merger, baseline, ablation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from hwaml_sparch_sim.arch import ArchConfigError, SparchConfig
from hwaml_sparch_sim.condensed import condensed_rank, partial_matrices
from hwaml_sparch_sim.matrices import Operands, load_operands, rmat
from hwaml_sparch_sim.merger import comparator_array_merge, merge_tree
from hwaml_sparch_sim.outerspace import count_multiplies, simulate_outerspace
from hwaml_sparch_sim.prefetcher import expand_to_lines, line_layout, next_use, simulate_buffer
from hwaml_sparch_sim.scheduler import huffman_schedule, in_order_schedule, spilled_nnz
from hwaml_sparch_sim.simulator import SparchSimulator, simulate_sparch

SWITCHES = list(itertools.product([False, True], repeat=3))


def _ops(spec):
    return load_operands(spec)


@pytest.fixture(scope="module")
def rmat_ops():
    return [_ops({"kind": "rmat", "scale": 9, "edge_factor": 8, "seed": s}) for s in range(3)]


# ---------------------------------------------------------------------------
# the product of the simulated schedule is A @ B
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("condensed, huffman, prefetcher", SWITCHES)
def test_product_is_exact_for_integer_matrices(condensed, huffman, prefetcher):
    # numeric=True recomputes every pass with values and checks each symbolic count
    sim = SparchSimulator(numeric=True)
    for spec in ({"kind": "rmat", "scale": 8, "edge_factor": 6, "seed": 1}, {"kind": "poisson2d", "n": 9}):
        ops = _ops(spec)
        # few merge ways force several passes with spilled intermediate results
        cfg = SparchConfig(merge_ways=4, condensed=condensed, huffman=huffman, prefetcher=prefetcher, buffer_lines=8, line_elems=4)
        res = sim.run(ops, cfg)
        ref = (ops.A @ ops.B).toarray()
        assert res.stats["passes"] > 1
        assert np.array_equal(res.product.toarray(), ref)
        assert res.nnz_c == np.count_nonzero(ref)


def test_product_float_and_rectangular(tmp_path):
    rng = np.random.default_rng(0)
    A = sp.random(40, 25, density=0.15, random_state=3, format="csr")
    A.data = rng.normal(size=A.nnz)
    ops = Operands("rect", A, sp.csr_matrix(A.T))
    res = simulate_sparch(ops, SparchConfig(merge_ways=2), numeric=True)
    assert res.product.shape == (40, 40)
    assert np.allclose(res.product.toarray(), (A @ A.T).toarray(), rtol=1e-12, atol=1e-12)


def test_mismatched_shapes_are_rejected():
    A = sp.csr_matrix(np.ones((3, 4)))
    with pytest.raises(ValueError, match="3 x 4 but B has 3 rows"):
        simulate_sparch(Operands("bad", A, A))


def test_empty_matrix():
    A = sp.csr_matrix((5, 5))
    res = simulate_sparch(Operands("empty", A, A), numeric=True)
    assert res.product.nnz == 0 and res.dram_bytes == 0 and res.cycles == 0


# ---------------------------------------------------------------------------
# condensed representation
# ---------------------------------------------------------------------------


def test_condensed_columns_take_the_kth_nonzero_of_each_row():
    A = sp.csr_matrix(np.array([[0, 3, 0, 4], [5, 0, 0, 0], [0, 0, 0, 0], [1, 2, 6, 7]], dtype=float))
    assert condensed_rank(A).tolist() == [0, 1, 0, 0, 1, 2, 3]
    b_len = np.array([1, 2, 3, 4])
    plain = partial_matrices(A, b_len, condensed=False)
    cond = partial_matrices(A, b_len, condensed=True)
    assert plain.n_leaves == 4 and cond.n_leaves == 4  # = max row length
    # the same products, regrouped
    B = sp.csr_matrix((np.arange(4)[None, :] < b_len[:, None]).astype(float))  # row k holds b_len[k] entries
    assert plain.sizes.sum() == cond.sizes.sum() == count_multiplies(Operands("x", A, B)) == 17
    assert cond.sizes.tolist() == [2 + 1 + 1, 4 + 2, 3, 4]
    # condensed column 0 holds the first non-zero of every non-empty row, in row order
    assert A.indices[cond.elements(0)].tolist() == [1, 0, 0]


def test_condensing_cuts_the_number_of_partial_matrices(rmat_ops):
    for ops in rmat_ops:
        b_len = np.diff(ops.B.indptr)
        plain = partial_matrices(ops.A, b_len, condensed=False)
        cond = partial_matrices(ops.A, b_len, condensed=True)
        assert cond.n_leaves == np.diff(ops.A.indptr).max()
        assert cond.n_leaves * 2 < plain.n_leaves


# ---------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------


def _additive(nodes_sizes):
    """merge_fn for tests: the merged size is the sum of the children's sizes."""

    def merge(node):
        return node.input_nnz

    return merge


@pytest.mark.parametrize("n, ways", [(1, 4), (4, 4), (5, 4), (10, 4), (64, 8), (100, 64)])
def test_huffman_tree_shape(n, ways):
    sizes = list(np.random.default_rng(n).integers(0, 100, size=n))
    nodes = huffman_schedule(sizes, ways, _additive(sizes))
    assert nodes[-1].is_root and sum(nd.is_root for nd in nodes) == 1
    assert nodes[-1].output_nnz == sum(sizes)
    # every leaf is consumed exactly once, every pass result once
    leaves = sorted(i for nd in nodes for i in nd.leaves)
    assert leaves == list(range(n))
    spilled = sorted(i for nd in nodes for i in nd.spilled_children)
    assert spilled == list(range(len(nodes) - 1))
    # k-ary Huffman: only the first pass may be partial
    assert all(len(nd.children) == ways for nd in nodes[1:])
    assert all(len(nd.children) <= ways for nd in nodes)


def test_huffman_spills_least_among_tree_orders():
    rng = np.random.default_rng(0)
    for trial in range(20):
        sizes = list(rng.integers(1, 1000, size=int(rng.integers(5, 40))))
        huff = spilled_nnz(huffman_schedule(sizes, 4, _additive(sizes)))
        for _ in range(5):
            perm = list(rng.permutation(sizes))
            assert huff <= spilled_nnz(in_order_schedule(perm, 4, _additive(perm)))


def test_huffman_is_optimal_on_a_small_case():
    # binary case: the classic Huffman cost is the minimum weighted path length
    sizes = [5, 9, 12, 13, 16, 45]
    nodes = huffman_schedule(sizes, 2, _additive(sizes))
    # internal nodes (non-root) sum = Huffman cost - total
    assert spilled_nnz(nodes) + sum(sizes) == 224


def test_huffman_spill_not_above_in_order_on_rmat(rmat_ops):
    sim = SparchSimulator()
    for ops in rmat_ops:
        for ways in (4, 16):
            base = dict(merge_ways=ways, condensed=True, prefetcher=False)
            h = sim.run(ops, SparchConfig(huffman=True, **base))
            n = sim.run(ops, SparchConfig(huffman=False, **base))
            assert h.dram["partial_write"] <= n.dram["partial_write"]
            assert h.dram["partial_read"] == h.dram["partial_write"]


# ---------------------------------------------------------------------------
# row prefetcher
# ---------------------------------------------------------------------------


def _opt_misses(trace, capacity):
    """Exhaustive minimum number of misses (tiny traces only)."""
    best = {frozenset(): 0}
    for x in trace:
        nxt = {}
        for cache, misses in best.items():
            if x in cache:
                options = [(cache, misses)]
            elif len(cache) < capacity:
                options = [(cache | {x}, misses + 1)]
            else:
                options = [((cache - {v}) | {x}, misses + 1) for v in cache]
            for c, m in options:
                if m < nxt.get(c, 1 << 30):
                    nxt[c] = m
        best = nxt
    return min(best.values())


def test_belady_is_optimal_on_small_traces():
    rng = np.random.default_rng(1)
    for _ in range(30):
        trace = rng.integers(0, 6, size=14)
        for cap in (2, 3):
            got = int(simulate_buffer(trace, cap, "belady", lookahead=0).sum())
            assert got == _opt_misses(trace.tolist(), cap)


def test_belady_never_worse_than_lru():
    rng = np.random.default_rng(2)
    for _ in range(40):
        n_lines = int(rng.integers(5, 60))
        # skewed reuse, like rows of a power-law matrix
        trace = rng.zipf(1.3, size=400) % n_lines
        for cap in (2, 4, 8, 16):
            belady = simulate_buffer(trace, cap, "belady", lookahead=0).sum()
            lru = simulate_buffer(trace, cap, "lru").sum()
            assert belady <= lru


def test_limited_lookahead_sits_between_opt_and_worst():
    trace = np.random.default_rng(3).integers(0, 40, size=3000)
    opt = simulate_buffer(trace, 8, "belady", lookahead=0).sum()
    short = simulate_buffer(trace, 8, "belady", lookahead=4).sum()
    assert opt <= short <= len(trace)
    # a window longer than the trace is the full lookahead
    assert simulate_buffer(trace, 8, "belady", lookahead=10**6).sum() == opt


def test_buffer_basics():
    trace = np.array([1, 2, 1, 3, 1, 2])
    assert simulate_buffer(trace, 10, "lru").tolist() == [True, True, False, True, False, False]
    assert simulate_buffer(trace, 1, "belady").sum() == 6 - 0  # one line: every change misses
    assert next_use(trace).tolist() == [2, 5, 4, 6, 6, 6]
    with pytest.raises(ValueError, match="policy"):
        simulate_buffer(trace, 2, "fifo")


def test_rows_split_into_lines():
    layout = line_layout(np.array([0, 5, 2, 9]), 4)
    assert layout.first.tolist() == [0, 0, 2, 3] and layout.count.tolist() == [0, 2, 1, 3]
    assert layout.line_elems.tolist() == [4, 1, 2, 4, 4, 1]
    lines, owner = expand_to_lines(np.array([3, 1, 0, 3]), layout)
    assert lines.tolist() == [3, 4, 5, 0, 1, 3, 4, 5]
    assert owner.tolist() == [0, 0, 0, 1, 1, 3, 3, 3]


def test_prefetcher_reads_b_once_when_it_fits(rmat_ops):
    ops = rmat_ops[0]
    b_len = np.diff(ops.B.indptr)
    used = b_len[np.unique(ops.A.indices)].sum()
    res = simulate_sparch(ops, SparchConfig(buffer_lines=100000, line_elems=8, burst_bytes=1))
    assert res.dram["b_read"] == used * 12  # compulsory misses only
    nobuf = simulate_sparch(ops, SparchConfig(prefetcher=False, buffer_without_prefetcher="none", burst_bytes=1))
    assert nobuf.dram["b_read"] == nobuf.multiplies * 12  # every use re-reads its row
    # with 64-byte bursts every fetched line is rounded up, and each fetched row's pointer costs a burst
    burst = simulate_sparch(ops, SparchConfig(buffer_lines=100000, line_elems=8))
    rows = np.unique(ops.A.indices)
    lines = -(-b_len[rows] // 8)
    last = b_len[rows] - (lines - 1) * 8
    expect = ((lines - 1) * 128 + np.ceil(last * 12 / 64) * 64).sum()
    assert burst.dram["b_read"] == expect > used * 12


# ---------------------------------------------------------------------------
# comparator-array merger
# ---------------------------------------------------------------------------


def _stream(rng, n, universe):
    keys = np.sort(rng.choice(universe, size=n, replace=False))
    return keys.astype(np.int64), rng.integers(1, 5, size=n).astype(float)


def test_comparator_array_merge_accumulates_and_counts_cycles():
    rng = np.random.default_rng(4)
    for width in (1, 2, 4, 16):
        a, b = _stream(rng, 37, 200), _stream(rng, 23, 200)
        (keys, vals), cycles = comparator_array_merge(a, b, width)
        ref = {}
        for k, v in itertools.chain(zip(*a), zip(*b)):
            ref[int(k)] = ref.get(int(k), 0.0) + v
        assert keys.tolist() == sorted(ref) and np.allclose(vals, [ref[k] for k in sorted(ref)])
        shared = len(set(a[0].tolist()) & set(b[0].tolist()))
        assert math.ceil(60 / width) <= cycles <= math.ceil(60 / width) + shared


def test_merge_tree_matches_scipy_on_a_simulated_pass():
    """The element-level tree and the simulator's scipy merge give the same stream."""
    ops = _ops({"kind": "rmat", "scale": 6, "edge_factor": 4, "seed": 5})
    A, B = ops.A, ops.B
    b_len = np.diff(B.indptr)
    cond = partial_matrices(A, b_len, condensed=True)
    n_cols = B.shape[1]
    streams = []
    for leaf in range(cond.n_leaves):
        e = cond.elements(leaf)
        S = sp.csr_matrix((A.data[e], (np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))[e], A.indices[e])), shape=A.shape)
        P = (S @ B).tocoo()
        order = np.lexsort((P.col, P.row))
        streams.append(((P.row * n_cols + P.col)[order].astype(np.int64), P.data[order]))
    ways = 1 << int(np.ceil(np.log2(max(2, len(streams)))))
    (keys, vals), cycles = merge_tree(streams, ways, root_width=16)
    C = simulate_sparch(ops, SparchConfig(merge_ways=max(2, ways)), numeric=True).product.tocoo()
    order = np.lexsort((C.col, C.row))
    assert keys.tolist() == (C.row * n_cols + C.col)[order].tolist()
    assert np.array_equal(vals, C.data[order])
    assert cycles >= len(keys) / 16


# ---------------------------------------------------------------------------
# OuterSPACE model and the ablation
# ---------------------------------------------------------------------------


def test_outerspace_traffic_by_hand():
    A = sp.csr_matrix(np.array([[1, 2, 0], [0, 3, 0], [4, 0, 5]], dtype=float))
    ops = Operands("hand", A, A)
    # column nnz (2, 2, 1) times row nnz (2, 1, 2)
    assert count_multiplies(ops) == 2 * 2 + 2 * 1 + 1 * 2
    res = simulate_outerspace(ops, SparchConfig(element_bytes=10, burst_bytes=1))
    nnz_c = (A @ A).nnz
    assert res.nnz_c == nnz_c  # counted symbolically
    # one linked-list chunk per A element: 10 B per product + an 8 B header; B rows of the
    # A elements' columns have (2, 1, 1, 2, 2) entries
    chunks = sum(10 * n + 8 for n in (2, 1, 1, 2, 2))
    meta = 2 * 4 * 4 + 4 * 4  # CSC pointers of A, CSR pointers of B, CSR pointers of C
    assert res.dram == {"a_read": 50.0, "b_read": 50.0, "partial_write": chunks, "partial_read": chunks, "c_write": nnz_c * 10.0, "metadata": meta}
    # 64-byte bursts: every chunk is one burst
    assert simulate_outerspace(ops, SparchConfig(element_bytes=10)).dram["partial_write"] == 5 * 64


def test_ablation_never_increases_dram_on_rmat(rmat_ops):
    sim = SparchSimulator()
    steps = [dict(condensed=True, huffman=False, prefetcher=False), dict(condensed=True, huffman=True, prefetcher=False), dict(condensed=True, huffman=True, prefetcher=True)]
    for ops in rmat_ops:
        for buffer_lines in (32, 1024):
            traffic = [simulate_outerspace(ops, SparchConfig()).dram_bytes]
            for step in steps:
                res = sim.run(ops, SparchConfig(buffer_lines=buffer_lines, line_elems=16, merge_ways=16, **step))
                traffic.append(res.dram_bytes)
            assert all(b <= a for a, b in zip(traffic[1:], traffic[2:])), traffic
            assert traffic[-1] < traffic[0] / 2  # the full design more than halves OuterSPACE's traffic


def test_more_bandwidth_or_wider_merger_is_not_slower(rmat_ops):
    sim = SparchSimulator()
    ops = rmat_ops[1]
    t = [sim.run(ops, SparchConfig(bandwidth_gbps=bw)).cycles for bw in (32.0, 128.0, 512.0)]
    assert t[0] >= t[1] >= t[2] and t[0] > t[2]
    w = [sim.run(ops, SparchConfig(merger_width=mw, multipliers=64, bandwidth_gbps=1024.0)).cycles for mw in (2, 8, 32)]
    assert w[0] >= w[1] >= w[2] and w[0] > w[2]


def test_energy_and_runtime_units():
    ops = _ops({"kind": "poisson2d", "n": 10})
    cfg = SparchConfig()
    res = simulate_sparch(ops, cfg)
    assert res.runtime_ms == pytest.approx(res.cycles / 1e6)
    e = cfg.energy
    assert res.energy_pj["dram"] == pytest.approx(res.dram_bytes * e.dram_pj_per_byte)
    assert res.energy_pj["multiply"] == pytest.approx(res.multiplies * e.multiply_pj)
    assert res.energy_uj == pytest.approx(sum(res.energy_pj.values()) * 1e-6)


# ---------------------------------------------------------------------------
# architecture config
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, key",
    [
        ({"merger_widht": 8}, "merger_widht"),
        ({"merge_ways": 48}, "merge_ways"),
        ({"buffer_lines": 0}, "buffer_lines"),
        ({"condensed": "yes"}, "condensed"),
        ({"replacement": "fifo"}, "replacement"),
        ({"energy": {"dram_pj": 1.0}}, "energy.dram_pj"),
    ],
)
def test_arch_errors_name_the_key(values, key):
    with pytest.raises(ArchConfigError) as err:
        SparchConfig.from_mapping(values)
    assert err.value.key == key


def test_area_proxy_grows_with_resources():
    base = SparchConfig()
    assert 25 < base.area_mm2() < 32  # calibrated to the paper's 28.49 mm^2
    assert SparchConfig(buffer_lines=2048).area_mm2() > base.area_mm2()
    assert SparchConfig(merger_width=32).area_mm2() > base.area_mm2()
    assert SparchConfig(merge_ways=128).area_mm2() > base.area_mm2()
    assert SparchConfig(prefetcher=False, buffer_without_prefetcher="none").area_mm2() < base.area_mm2()
    assert rmat(4).shape == (16, 16)


def _reference_lookahead(trace, capacity, window):
    """Straightforward O(n * capacity) model of the windowed policy."""
    n = len(trace)
    cache, last_use, misses = {}, {}, 0
    for i, x in enumerate(trace):
        later = [j for j in range(i + 1, n) if trace[j] == x]
        nu = later[0] if later else n
        if x not in cache:
            misses += 1
            if len(cache) >= capacity:
                blind = [v for v in cache if cache[v] - i > window]
                if blind:
                    victim = min(blind, key=lambda v: last_use[v])
                else:
                    victim = max(cache, key=lambda v: cache[v])
                del cache[victim]
        cache[x] = nu
        last_use[x] = i
    return misses


def test_windowed_belady_matches_a_reference_model():
    rng = np.random.default_rng(7)
    for _ in range(25):
        trace = rng.integers(0, 12, size=150)
        for cap, window in ((3, 5), (4, 20), (6, 1), (2, 200)):
            got = int(simulate_buffer(trace, cap, "belady", lookahead=window).sum())
            assert got == _reference_lookahead(trace.tolist(), cap, window)


def _reference_lookahead_fast(trace, capacity, window):
    """The same reference model with next uses precomputed (long traces)."""
    n = len(trace)
    nxt, seen = [n] * n, {}
    for i in range(n - 1, -1, -1):
        nxt[i] = seen.get(trace[i], n)
        seen[trace[i]] = i
    cache, last_use, misses = {}, {}, 0
    for i, x in enumerate(trace):
        if x not in cache:
            misses += 1
            if len(cache) >= capacity:
                blind = [v for v in cache if cache[v] - i > window]
                victim = min(blind, key=lambda v: last_use[v]) if blind else max(cache, key=lambda v: cache[v])
                del cache[victim]
        cache[x] = nxt[i]
        last_use[x] = i
    return misses


def test_windowed_belady_on_traces_long_enough_to_compact_its_heaps():
    # the heaps drop their stale entries once they outgrow 4 * capacity + 1024; these traces
    # push several times that, so the compaction runs many times in each
    rng = np.random.default_rng(11)
    for n_lines, cap, window in ((40, 3, 6), (300, 16, 50), (25, 5, 0), (2000, 8, 3000)):
        trace = (rng.zipf(1.6, size=6000) % n_lines).astype(np.int64)
        got = int(simulate_buffer(trace, cap, "belady", lookahead=window).sum())
        assert got == _reference_lookahead_fast(trace.tolist(), cap, window if window > 0 else len(trace) + 1)
