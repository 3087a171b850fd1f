"""Symbolic counting, the timing model, formats, area/energy blocks, stand-ins and the fetch."""

from __future__ import annotations

import io
import math
import tarfile
import tracemalloc

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from hwaml_sparch_sim.arch import SparchConfig, area_breakdown
from hwaml_sparch_sim.matrices import MatrixFileError, Operands, WorkloadSpecError, load_operands
from hwaml_sparch_sim.merger import merge_tree
from hwaml_sparch_sim.outerspace import simulate_outerspace
from hwaml_sparch_sim.simulator import BOUNDS, SparchSimulator, simulate_sparch, symbolic_nnz
from hwaml_sparch_sim.standins import PAPER_MATRICES, fetch_suitesparse, locality_graph, matrix_stats, standin


@pytest.fixture(scope="module")
def rmat10():
    return load_operands({"kind": "rmat", "scale": 10, "edge_factor": 8, "seed": 4})


# ---------------------------------------------------------------------------
# symbolic counting
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_symbolic_counts_equal_scipy_without_values(seed):
    rng = np.random.default_rng(seed)
    A = sp.random(60, 45, density=float(rng.uniform(0.03, 0.2)), random_state=seed, format="csr")
    B = sp.random(45, 70, density=float(rng.uniform(0.03, 0.2)), random_state=seed + 9, format="csr")
    ref = (abs(A) @ abs(B)).nnz
    assert symbolic_nnz(A, B) == ref
    ops = Operands("r", A, B)
    for kw in (dict(merge_ways=2), dict(merge_ways=4, condensed=False), dict(merge_ways=8, huffman=False), dict(merge_ways=2, huffman_sizes="oracle")):
        res = simulate_sparch(ops, SparchConfig(**kw))
        assert res.product is None and res.nnz_c == ref  # C never built
        assert res.dram["c_write"] == math.ceil(ref * 12 / 64) * 64


def test_simulation_memory_stays_far_below_the_product(rmat10):
    ops = load_operands({"kind": "rmat", "scale": 12, "edge_factor": 8, "seed": 1})
    simulate_sparch(ops)  # compile and warm caches
    tracemalloc.start()
    res = simulate_sparch(ops)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    inputs = ops.A.data.nbytes + ops.A.indices.nbytes + ops.A.indptr.nbytes
    product_bytes = res.nnz_c * 12
    assert peak < 16 * inputs and peak < product_bytes / 2


def test_per_merger_timing_agrees_with_the_element_level_tree():
    """One pass: the slowest merger's cycles (input / width per level) against the
    comparator-array tree run element by element."""
    ops = load_operands({"kind": "rmat", "scale": 6, "edge_factor": 4, "seed": 5})
    A, B = ops.A, ops.B
    ways = 1 << int(np.ceil(np.log2(int(np.diff(A.indptr).max()))))
    cfg = SparchConfig(merge_ways=ways, merger_width=8, multipliers=1024, bandwidth_gbps=1e6, dram_latency_ns=0, pipeline_latency=0)
    res = simulate_sparch(ops, cfg)
    assert res.stats["passes"] == 1
    from hwaml_sparch_sim.condensed import partial_matrices

    cond = partial_matrices(A, np.diff(B.indptr), condensed=True)
    n_cols = B.shape[1]
    rows_of = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    streams = []
    for leaf in range(cond.n_leaves):
        e = cond.elements(leaf)
        P = (sp.csr_matrix((A.data[e], (rows_of[e], A.indices[e])), shape=A.shape) @ B).tocoo()
        order = np.lexsort((P.col, P.row))
        streams.append(((P.row * n_cols + P.col)[order].astype(np.int64), P.data[order]))
    _, element_cycles = merge_tree(streams, ways, root_width=8)
    assert res.stats["merge_cycles"] <= element_cycles <= 1.5 * res.stats["merge_cycles"]
    assert res.stats["bound"] == "merge"


def test_bounds_follow_the_resources(rmat10):
    sim = SparchSimulator()
    slow_mem = sim.run(rmat10, SparchConfig(bandwidth_gbps=4.0))
    assert slow_mem.stats["bound"] == "memory"
    narrow = sim.run(rmat10, SparchConfig(merger_width=2, bandwidth_gbps=1024.0))
    assert narrow.stats["bound"] == "merge"
    few_mult = sim.run(rmat10, SparchConfig(multipliers=1, merger_width=32, bandwidth_gbps=1024.0))
    assert few_mult.stats["bound"] == "multiply"
    for r in (slow_mem, narrow, few_mult):
        assert sum(r.stats["bound_passes"].values()) == r.stats["passes"]
        assert set(r.stats["bound_passes"]) == set(BOUNDS)
    # the speedup is not the DRAM ratio once the design is merge-bound
    base = simulate_outerspace(rmat10, SparchConfig())
    full = sim.run(rmat10, SparchConfig())
    assert abs((base.dram_bytes / full.dram_bytes) / (base.runtime_ms / full.runtime_ms) - 1) > 0.2


def test_late_prefetches_stall(rmat10):
    sim = SparchSimulator()
    kw = dict(buffer_lines=64, line_elems=8, dram_latency_ns=400.0, multipliers=64, merger_width=32, bandwidth_gbps=1024.0)
    short = sim.run(rmat10, SparchConfig(lookahead=2, **kw))
    long = sim.run(rmat10, SparchConfig(lookahead=64, **kw))
    assert short.stats["prefetch_stall_cycles"] > long.stats["prefetch_stall_cycles"] * 2 > 0
    assert short.cycles > long.cycles
    no_lat = sim.run(rmat10, SparchConfig(lookahead=2, **dict(kw, dram_latency_ns=0.0)))
    assert no_lat.stats["prefetch_stall_cycles"] < short.stats["prefetch_stall_cycles"] / 10


def test_format_costs(rmat10):
    sim = SparchSimulator()
    flat = sim.run(rmat10, SparchConfig(burst_bytes=1, index_bytes=0, pointer_bytes=0))
    full = sim.run(rmat10, SparchConfig())
    # condensed A carries the original column index next to value and row
    cond = sim.run(rmat10, SparchConfig(burst_bytes=1))
    assert cond.dram["a_read"] == rmat10.A.nnz * 16 and flat.dram["a_read"] == rmat10.A.nnz * 12
    assert full.dram["metadata"] > 0 == flat.dram["metadata"] or flat.dram["metadata"] < full.dram["metadata"]
    assert full.dram_bytes > cond.dram_bytes > flat.dram_bytes
    # every category is a whole number of bursts
    for k in ("a_read", "b_read", "c_write"):
        assert full.dram[k] % 64 == 0


def test_huffman_oracle_is_an_ablation_option(rmat10):
    sim = SparchSimulator(numeric=True)
    est = sim.run(rmat10, SparchConfig(merge_ways=4))
    ora = sim.run(rmat10, SparchConfig(merge_ways=4, huffman_sizes="oracle"))
    assert (est.product != ora.product).nnz == 0 and est.nnz_c == ora.nnz_c
    inorder = sim.run(rmat10, SparchConfig(merge_ways=4, huffman=False))
    assert ora.dram["partial_write"] <= inorder.dram["partial_write"]
    assert est.dram["partial_write"] <= inorder.dram["partial_write"]


def test_every_block_is_charged():
    base = area_breakdown(SparchConfig())
    assert sum(base.values()) == pytest.approx(28.49, abs=0.1)  # the paper's total
    for block in ("lookahead_fifo", "prefetch_logic", "prefetch_tags", "scheduler"):
        assert base[block] > 0
    assert area_breakdown(SparchConfig(lookahead=65536))["lookahead_fifo"] > base["lookahead_fifo"]
    assert area_breakdown(SparchConfig(huffman=False))["scheduler"] == 0
    off = area_breakdown(SparchConfig(prefetcher=False))
    assert off["prefetch_logic"] == 0 == off["lookahead_fifo"] and off["prefetch_buffer"] > 0  # the LRU buffer stays
    res = simulate_sparch(load_operands({"kind": "poisson2d", "n": 12}))
    assert res.energy_pj["control"] > 0 and res.energy_pj["leakage"] > 0


def test_outerspace_has_its_own_organisation(rmat10):
    cfg = SparchConfig()
    base = simulate_outerspace(rmat10, cfg)
    assert base.clock_ghz == cfg.outerspace.clock_ghz == 1.5
    more_pes = simulate_outerspace(rmat10, SparchConfig.from_mapping({"outerspace": {"tiles": 64}}))
    assert more_pes.cycles < base.cycles
    assert base.stats["merge_bound"] in ("compute", "crossbar", "memory") and base.stats["gflops"] > 0


# ---------------------------------------------------------------------------
# stand-ins and the fetch
# ---------------------------------------------------------------------------


def test_standins_match_size_degree_and_ordering():
    assert len(PAPER_MATRICES) == 20
    for name in ("filter3D", "web-Google", "m133-b3", "cop20k_A"):
        m = PAPER_MATRICES[name]
        A = standin(name, scale=0.02)
        n = A.shape[0]
        assert n == round(m.rows * 0.02)
        assert abs(A.nnz - m.nnz * n / m.rows) < 0.08 * m.nnz * n / m.rows
        st = matrix_stats(A)
        if name == "m133-b3":
            assert st["max_deg"] == 4 and st["deg_cv"] < 0.05  # 4 per row (a few merge as duplicates)
        if name == "web-Google":
            assert st["deg_cv"] > 1.5  # power law
        if name == "filter3D":
            assert st["bw90"] < 0.15 and st["deg_cv"] < 0.5  # a mesh along its grid
        if name == "cop20k_A":
            assert st["bw90"] > 0.3  # the same kind of mesh, poorly ordered


def test_relabelling_keeps_degrees_and_products_but_not_locality():
    A = locality_graph(3000, 60000, "mesh3d", True, 1.0, 0.0, seed=1)
    R = locality_graph(3000, 60000, "mesh3d", True, 1.0, 0.0, seed=1, relabel=1.0)
    sa, sr = matrix_stats(A, symbolic_nnz(A, A)), matrix_stats(R, symbolic_nnz(R, R))
    assert sa["products"] == sr["products"] and sa["nnz"] == sr["nnz"]
    assert sorted(np.diff(A.indptr)) == sorted(np.diff(R.indptr))
    assert sr["bw50"] > 3 * sa["bw50"]
    ra = simulate_sparch(Operands("a", A, A), SparchConfig(buffer_lines=64))
    rr = simulate_sparch(Operands("r", R, R), SparchConfig(buffer_lines=64))
    assert rr.dram["b_read"] > 1.3 * ra.dram["b_read"]  # the ordering changes the traffic


def test_standin_workload_spec():
    ops = load_operands({"kind": "standin", "matrix": "wiki-Vote", "scale": 0.1})
    assert ops.name == "wiki-Vote~x0.1" and ops.A.shape[0] == 830
    with pytest.raises(WorkloadSpecError) as err:
        load_operands({"kind": "standin", "matrix": "wiki-vote"})
    assert err.value.key == "workload.matrix"


def _server(tmp_path, group, name, M):
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, M)
    data = buf.getvalue()
    (tmp_path / "server" / group).mkdir(parents=True)
    with tarfile.open(tmp_path / "server" / group / f"{name}.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo(f"{name}/{name}.mtx")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return tmp_path / "server"


def test_fetch_by_name_uses_a_local_cache(tmp_path):
    M = sp.random(30, 30, density=0.1, random_state=2, format="csr")
    server = _server(tmp_path, "FEMLAB", "poisson3Da", M)
    cache = tmp_path / "cache"
    got = fetch_suitesparse("poisson3Da", cache_dir=cache, base_url=str(server))
    assert abs(got - M).max() < 1e-12 and (cache / "FEMLAB" / "poisson3Da.mtx").is_file()
    (server / "FEMLAB" / "poisson3Da.tar.gz").unlink()  # the server is gone: the cache answers
    spec = {"kind": "suitesparse", "matrix": "poisson3Da", "cache_dir": str(cache), "base_url": server.as_uri()}
    assert load_operands(spec).A.nnz == M.nnz
    with pytest.raises(MatrixFileError, match="could not fetch"):
        fetch_suitesparse("mine", group="Nobody", cache_dir=cache, base_url=str(server))
    with pytest.raises(WorkloadSpecError, match="group"):
        fetch_suitesparse("mine", cache_dir=cache, base_url=str(server))


def test_wider_leaf_mergers_relieve_the_merge_bound(rmat10):
    sim = SparchSimulator()
    narrow = sim.run(rmat10, SparchConfig())
    wide = sim.run(rmat10, SparchConfig(merger_min_width=8))
    assert wide.dram == narrow.dram  # same schedule and traffic
    assert wide.stats["merge_cycles"] < narrow.stats["merge_cycles"] / 2
    assert SparchConfig(merger_min_width=8).merger_widths() == [16, 8, 8, 8, 8, 8]
    assert SparchConfig(merger_min_width=8).area_mm2() > SparchConfig().area_mm2()
    from hwaml_sparch_sim.arch import ArchConfigError

    with pytest.raises(ArchConfigError) as err:
        SparchConfig.from_mapping({"merger_min_width": 32})
    assert err.value.key == "merger_min_width"


def test_counting_in_blocks_equals_one_sweep(rmat10, monkeypatch):
    import hwaml_sparch_sim.simulator as simulator

    one = simulate_sparch(rmat10, SparchConfig(merge_ways=8))
    monkeypatch.setattr(simulator, "PROGRESS_PRODUCTS", 0)  # 50 blocks of rows behind a progress bar
    blocks = simulate_sparch(rmat10, SparchConfig(merge_ways=8))
    assert blocks.dram == one.dram and blocks.nnz_c == one.nnz_c and blocks.cycles == one.cycles


def test_design_points_sharing_a_buffer_reuse_its_simulation(rmat10, monkeypatch):
    import hwaml_sparch_sim.simulator as simmod

    calls = []
    real = simmod.simulate_buffer
    monkeypatch.setattr(simmod, "simulate_buffer", lambda *a, **k: calls.append(a[1:]) or real(*a, **k))
    sim = SparchSimulator()
    narrow = sim.run(rmat10, SparchConfig())
    wide = sim.run(rmat10, SparchConfig(merger_min_width=4, bandwidth_gbps=256))
    assert len(calls) == 1  # same trace, buffer and policy: simulated once
    smaller = sim.run(rmat10, SparchConfig(buffer_lines=64))
    assert len(calls) == 2 and smaller.dram["b_read"] > narrow.dram["b_read"]
    fresh = simulate_sparch(rmat10, SparchConfig(merger_min_width=4, bandwidth_gbps=256))
    assert wide.dram == fresh.dram and wide.cycles == fresh.cycles
