"""Matrix inputs: Matrix Market and edge-list readers, generators, workload specs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from hwaml_sparch_sim.matrices import (
    MatrixFileError,
    WorkloadSpecError,
    load_operands,
    load_workload,
    poisson2d,
    poisson3d,
    read_edge_list,
    read_matrix_market,
    rmat,
)

HEADER = "%%MatrixMarket matrix coordinate real general\n"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_matrix_market_roundtrip(tmp_path):
    M = sp.random(20, 15, density=0.2, random_state=0, format="csr")
    path = tmp_path / "m.mtx"
    scipy.io.mmwrite(str(path), M)
    got = read_matrix_market(path)
    assert got.shape == (20, 15)
    assert abs(got - M).max() < 1e-12


def test_matrix_market_symmetric_is_expanded(tmp_path):
    text = "%%MatrixMarket matrix coordinate real symmetric\n% comment\n3 3 2\n1 1 4.0\n3 1 2.0\n"
    got = read_matrix_market(_write(tmp_path, "s.mtx", text)).toarray()
    assert got[0, 2] == 2.0 and got[2, 0] == 2.0 and got[0, 0] == 4.0


@pytest.mark.parametrize(
    "body, line, words",
    [
        ("3 3 2\n1 1 1.0\n2 x 2.0\n", 4, "integer"),
        ("3 3 2\n1 1 1.0\n5 1 2.0\n", 4, "out"),
        ("3 3 2\n1 1 1.0\n2 1\n", 4, ""),
        ("3 3 3\n1 1 1.0\n2 1 2.0\n", 5, ""),
        ("3 3 2\n% a comment\n1 1 1.0\n2 2 abc\n", 5, ""),
    ],
)
def test_matrix_market_malformed_line_is_named(tmp_path, body, line, words):
    path = _write(tmp_path, "bad.mtx", HEADER + body)
    with pytest.raises(MatrixFileError) as err:
        read_matrix_market(path)
    assert err.value.line == line
    assert f"line {line}" in str(err.value) and "bad.mtx" in str(err.value)
    assert words.lower() in str(err.value).lower()


def test_matrix_market_bad_header(tmp_path):
    with pytest.raises(MatrixFileError) as err:
        read_matrix_market(_write(tmp_path, "h.mtx", "hello\n3 3 1\n1 1 1\n"))
    assert err.value.line == 1


def test_missing_file_is_named(tmp_path):
    with pytest.raises(MatrixFileError, match="no such file"):
        read_matrix_market(tmp_path / "nope.mtx")


def test_edge_list_snap_format(tmp_path):
    text = "# Directed graph\n# FromNodeId\tToNodeId\n0\t1\n0\t3\n3\t1\n0\t1\n"
    A = read_edge_list(_write(tmp_path, "g.txt", text))
    assert A.shape == (4, 4)
    assert A[0, 1] == 2.0 and A[0, 3] == 1.0 and A[3, 1] == 1.0 and A.nnz == 3
    S = read_edge_list(_write(tmp_path, "g2.txt", text), symmetric=True)
    assert (S != S.T).nnz == 0
    R = read_edge_list(_write(tmp_path, "g3.txt", "10 20\n20 30\n"), relabel=True)
    assert R.shape == (3, 3) and R[0, 1] == 1 and R[1, 2] == 1


def test_edge_list_weights(tmp_path):
    A = read_edge_list(_write(tmp_path, "w.txt", "0 1 2.5\n1 0 -1\n"))
    assert A[0, 1] == 2.5 and A[1, 0] == -1.0


@pytest.mark.parametrize(
    "text, line",
    [
        ("# c\n0 1\n1 two\n", 3),
        ("0 1\n1 2 3 4\n", 2),
        ("0 1 1.0\n1 2\n", 2),
        ("0 1\n-1 2\n", 2),
        ("0 1 x\n", 1),
    ],
)
def test_edge_list_malformed_line_is_named(tmp_path, text, line):
    with pytest.raises(MatrixFileError) as err:
        read_edge_list(_write(tmp_path, "e.txt", text))
    assert err.value.line == line and f"line {line}" in str(err.value)


def test_edge_list_empty(tmp_path):
    with pytest.raises(MatrixFileError, match="no edges"):
        read_edge_list(_write(tmp_path, "e.txt", "# only comments\n"))


def test_rmat_is_deterministic_and_skewed():
    A = rmat(10, edge_factor=8, seed=3)
    B = rmat(10, edge_factor=8, seed=3)
    assert A.shape == (1024, 1024)
    assert (A != B).nnz == 0
    assert 0.8 * 8 * 1024 <= A.nnz <= 8 * 1024  # duplicates merge
    rows = np.diff(A.indptr)
    assert rows.max() > 8 * rows.mean()  # power-law rows, unlike a uniform graph
    # the a-quadrant (top-left) is the densest
    h = 512
    assert A[:h, :h].nnz > A[h:, h:].nnz * 4
    assert np.all(A.data == np.round(A.data)) and A.data.min() >= 1


def test_rmat_bad_probabilities():
    with pytest.raises(WorkloadSpecError) as err:
        rmat(5, a=0.6, b=0.3, c=0.3)
    assert err.value.key == "a"


def test_poisson_stencils():
    P2 = poisson2d(5)
    assert P2.shape == (25, 25)
    assert np.diff(P2.indptr).max() == 5 and P2[12, 12] == 4
    assert np.allclose(P2.sum(axis=1)[[12]], 0)  # interior rows sum to zero
    P3 = poisson3d(4)
    assert P3.shape == (64, 64)
    assert np.diff(P3.indptr).max() == 7 and P3.diagonal().max() == 6
    assert (P3 != P3.T).nnz == 0


def test_workload_specs(tmp_path):
    path = tmp_path / "rect.mtx"
    scipy.io.mmwrite(str(path), sp.random(6, 4, density=0.5, random_state=1))
    ops = load_workload([{"kind": "poisson2d", "n": 4}, {"kind": "mtx", "path": str(path)}, {"kind": "rmat", "scale": 5, "seed": 2}])
    assert [o.name for o in ops] == ["poisson2d_4", "rect", "rmat_s5_e8_seed2"]
    assert ops[0].B is ops[0].A
    assert ops[1].A.shape == (6, 4) and ops[1].B.shape == (4, 6)  # non-square: A @ A.T


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"kind": "poison2d", "n": 4}, "workload.kind"),
        ({"kind": "poisson2d"}, "workload.n"),
        ({"kind": "rmat", "scale": 5, "edgefactor": 3}, "workload.edgefactor"),
        ({"kind": "rmat", "scale": 5, "a": 0.9}, "workload.a"),
        ({"kind": "poisson2d", "n": 4, "rhs": "other"}, "workload.rhs"),
    ],
)
def test_workload_spec_errors_name_the_key(spec, key):
    with pytest.raises(WorkloadSpecError) as err:
        load_operands(spec)
    assert err.value.key == key


def test_workload_must_be_a_list():
    with pytest.raises(WorkloadSpecError, match="list"):
        load_workload({"kind": "poisson2d", "n": 3})
    with pytest.raises(WorkloadSpecError, match="empty"):
        load_workload([])


# ---------------------------------------------------------------------------
# input guards: memory, non-finite values, header message
# ---------------------------------------------------------------------------


def test_huge_header_is_refused_before_allocating(tmp_path):
    import resource

    path = _write(tmp_path, "huge.mtx", HEADER + "3000000000 3000000000 2\n1 1 1.0\n2 2 2.0\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MatrixFileError) as err:
        read_matrix_market(path)
    assert err.value.line == 2 and "GiB" in str(err.value) and "3000000000 x 3000000000" in str(err.value)
    # nothing near the CSR row pointer (24 GB) was allocated
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_entry_count_is_checked_against_a_memory_budget(tmp_path):
    path = _write(tmp_path, "m.mtx", HEADER + "10 10 3\n1 1 1.0\n2 2 2.0\n3 3 3.0\n")
    assert read_matrix_market(path).nnz == 3
    with pytest.raises(MatrixFileError, match="more than the"):
        read_matrix_market(path, memory_budget=100)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Inf"])
def test_non_finite_values_are_refused_naming_the_line(tmp_path, value):
    path = _write(tmp_path, "n.mtx", HEADER + f"% c\n3 3 3\n1 1 1.0\n2 2 {value}\n3 3 1.0\n")
    with pytest.raises(MatrixFileError) as err:
        read_matrix_market(path)
    assert err.value.line == 5 and "not finite" in str(err.value)


def test_non_finite_edge_weight_is_refused(tmp_path):
    with pytest.raises(MatrixFileError) as err:
        read_edge_list(_write(tmp_path, "w.txt", "0 1 2.5\n1 0 nan\n"))
    assert err.value.line == 2 and "not finite" in str(err.value)


def test_header_message_names_the_banner_literally(tmp_path):
    with pytest.raises(MatrixFileError) as err:
        read_matrix_market(_write(tmp_path, "h.mtx", "%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1\n"))
    assert "'%%MatrixMarket'" in str(err.value) and "(got '%MatrixMarket matrix" in str(err.value)
