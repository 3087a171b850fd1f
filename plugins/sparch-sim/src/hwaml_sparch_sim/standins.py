"""Stand-ins for the 20 SuiteSparse/SNAP matrices of the SpArch (and OuterSPACE) evaluation,
the statistics that describe them, and an optional fetch of the real ones.

The real matrices cannot be downloaded on an offline machine, so each one has a
generator matched on the published size (rows, non-zeros), on its degree
distribution (a power law for the SNAP graphs and web crawls, a narrow
distribution for meshes and circuits, exactly 4 per row for m133-b3) and on its
ordering: meshes are numbered along a grid (small bandwidth, many products per
output non-zero), crawls keep most links near the source (webbase-1M), and the
poorly ordered ones (cop20k_A, m133-b3, p2p-Gnutella31) scatter their columns.
:func:`matrix_stats` measures what the orderings produce (bandwidth percentiles,
rows' neighbourhood overlap through products per output non-zero), and the
benchmarks print those numbers next to every result.

:func:`fetch_suitesparse` reads a matrix by its SuiteSparse name from a local
cache, downloading ``<base_url>/<Group>/<Name>.tar.gz`` once on machines with
internet (any ``file://`` URL or directory works as the server, which is how it is
tested).
"""

from __future__ import annotations

import math
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import scipy.sparse as sp

from .matrices import MatrixFileError, WorkloadSpecError, read_matrix_market

__all__ = ["PaperMatrix", "PAPER_MATRICES", "standin", "locality_graph", "matrix_stats", "fetch_suitesparse", "SUITESPARSE_URL"]

SUITESPARSE_URL = "https://suitesparse-collection-website.herokuapp.com/MM"


@dataclass(frozen=True)
class PaperMatrix:
    """A matrix of the evaluation: its published size and the generator's parameters."""

    name: str
    group: str  # SuiteSparse group (for the fetch)
    rows: int
    nnz: int
    kind: str  # mesh3d | mesh2d | powerlaw | narrow | fixed
    symmetric: bool
    p_local: float  # share of non-zeros placed by the ordering (near the diagonal / the mesh)
    band: float  # Laplace scale of local offsets, as a fraction of the rows (powerlaw/narrow kinds)
    gamma: float = 2.3  # power-law exponent of the degree distribution
    max_out: int = 0  # cap on a row's degree (amazon0312 lists at most 10 co-purchases)
    relabel: float = 0.0  # share of rows whose labels are scattered (a poorly ordered mesh)


#: the 20 matrices (published rows and non-zeros as listed by SuiteSparse / SNAP)
PAPER_MATRICES: Dict[str, PaperMatrix] = {
    m.name: m
    for m in [
        PaperMatrix("2cubes_sphere", "Um", 101492, 1647264, "mesh3d", True, 0.98, 0.0),
        PaperMatrix("amazon0312", "SNAP", 400727, 3200440, "powerlaw", False, 0.45, 0.002, 2.6, 10),
        PaperMatrix("ca-CondMat", "SNAP", 23133, 186936, "powerlaw", True, 0.35, 0.01, 2.5),
        PaperMatrix("cage12", "vanHeukelum", 130228, 2032536, "narrow", False, 0.6, 0.02),
        PaperMatrix("cit-Patents", "SNAP", 3774768, 16518948, "powerlaw", False, 0.3, 0.02, 2.8),
        PaperMatrix("cop20k_A", "Williams", 121192, 2624331, "mesh3d", True, 0.97, 0.0, relabel=0.6),
        PaperMatrix("email-Enron", "SNAP", 36692, 367662, "powerlaw", True, 0.2, 0.01, 2.1),
        PaperMatrix("filter3D", "Oberwolfach", 106437, 2707179, "mesh3d", True, 0.98, 0.0),
        PaperMatrix("m133-b3", "JGD_Homology", 200200, 800800, "fixed", False, 0.0, 0.0),
        PaperMatrix("mario002", "GHS_indef", 389874, 2097566, "mesh2d", True, 0.97, 0.0),
        PaperMatrix("offshore", "Um", 259789, 4242673, "mesh3d", True, 0.97, 0.0),
        PaperMatrix("p2p-Gnutella31", "SNAP", 62586, 147892, "powerlaw", False, 0.05, 0.01, 3.0),
        PaperMatrix("patents_main", "Pajek", 240547, 560943, "powerlaw", False, 0.15, 0.01, 2.8),
        PaperMatrix("poisson3Da", "FEMLAB", 13514, 352762, "mesh3d", True, 0.95, 0.0),
        PaperMatrix("roadNet-CA", "SNAP", 1971281, 5533214, "mesh2d", True, 0.9, 0.0),
        PaperMatrix("scircuit", "Hamm", 170998, 958936, "narrow", True, 0.85, 0.005, 2.2),
        PaperMatrix("web-Google", "SNAP", 916428, 5105039, "powerlaw", False, 0.55, 0.001, 2.4),
        PaperMatrix("webbase-1M", "Williams", 1000005, 3105536, "powerlaw", False, 0.8, 0.0005, 2.2),
        PaperMatrix("wiki-Vote", "SNAP", 8297, 103689, "powerlaw", False, 0.1, 0.02, 2.1),
        PaperMatrix("facebook", "SNAP", 4039, 88234, "powerlaw", True, 0.6, 0.02, 2.3),
    ]
}


def _degrees(rng: np.random.Generator, n: int, mean: float, kind: str, gamma: float, max_out: int) -> np.ndarray:
    if kind == "fixed":
        return np.full(n, max(1, int(round(mean))), dtype=np.int64)
    if kind == "powerlaw":
        # Chung-Lu weights w_i ~ i^(-1/(gamma-1)), in a random order, scaled to the mean
        w = (np.arange(1, n + 1, dtype=np.float64)) ** (-1.0 / (gamma - 1.0))
        w = rng.permutation(w * (mean / w.mean()))
        deg = rng.poisson(np.maximum(w - 1.0, 0.0)) + 1
    else:  # narrow (meshes, circuits, cage)
        deg = rng.poisson(max(mean - 1.0, 0.0), size=n) + 1
    if max_out:
        deg = np.minimum(deg, max_out)
    return np.minimum(deg, n).astype(np.int64)


def _stencil(dim: int, size: int) -> np.ndarray:
    """Grid offsets sorted by distance from the centre (the centre first), at least ``size``."""
    r = 1
    while (2 * r + 1) ** dim < size:
        r += 1
    axes = np.meshgrid(*[np.arange(-r, r + 1)] * dim, indexing="ij")
    offs = np.stack([a.ravel() for a in axes], axis=1)
    order = np.lexsort(tuple(offs[:, d] for d in range(dim)) + ((offs**2).sum(axis=1),))
    return offs[order]


def _relabel(A: sp.csr_matrix, share: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Permute the labels of a random ``share`` of the rows (and columns) among themselves."""
    n = A.shape[0]
    pick = np.flatnonzero(rng.random(n) < share)
    perm = np.arange(n)
    perm[pick] = rng.permutation(pick)
    P = sp.csr_matrix((np.ones(n), (np.arange(n), perm)), shape=(n, n))
    return sp.csr_matrix(P @ A @ P.T)


def locality_graph(
    n: int,
    nnz: int,
    kind: str = "powerlaw",
    symmetric: bool = False,
    p_local: float = 0.5,
    band: float = 0.01,
    gamma: float = 2.3,
    max_out: int = 0,
    seed: int = 0,
    relabel: float = 0.0,
) -> sp.csr_matrix:
    """A sparse pattern of about ``nnz`` entries with a chosen degree law and ordering.

    A share ``p_local`` of every row's entries is placed by the ordering: on a grid
    neighbourhood for ``mesh2d``/``mesh3d`` (rows numbered along the grid), else at
    a Laplace-distributed offset of scale ``band * n`` from the diagonal. The rest go
    to columns drawn by popularity (the degree weights for ``powerlaw``, uniform
    otherwise). ``relabel`` permutes the labels of that share of rows at random
    (a poor ordering of the same graph). Values are integers 1..9 (exact products).
    """
    if n < 2 or nnz < 1:
        raise WorkloadSpecError("rows", f"a stand-in needs >= 2 rows and >= 1 non-zero, got {n} and {nnz}")
    rng = np.random.default_rng(seed)
    target = nnz / 2 if symmetric else nnz
    mean = max(1.0, target / n)
    A = None
    factor = 1.0
    for _ in range(3):  # duplicates merge: correct the draw once or twice to land near nnz
        deg = _degrees(rng, n, mean * factor, "narrow" if kind.startswith("mesh") else kind, gamma, max_out)
        rows = np.repeat(np.arange(n, dtype=np.int64), deg)
        m = len(rows)
        local = rng.random(m) < p_local
        cols = np.empty(m, dtype=np.int64)
        nl = int(local.sum())
        if kind.startswith("mesh"):
            # a node couples to its nearest grid neighbours (a dense stencil, as an FE mesh):
            # row i's local entries are the first offsets of the stencil sorted by distance
            dim = 3 if kind == "mesh3d" else 2
            side = int(math.ceil(n ** (1.0 / dim)))
            stencil = _stencil(dim, int(deg.max()))
            rank = np.arange(m, dtype=np.int64) - np.repeat(np.cumsum(deg) - deg, deg)
            off = stencil[np.minimum(rank[local], len(stencil) - 1)]
            idx = np.zeros(nl, dtype=np.int64)
            for d in range(dim):
                c = (rows[local] // side**d) % side + off[:, d]
                c = np.abs(c)
                c = np.where(c > side - 1, 2 * (side - 1) - c, c)  # reflect at the boundary
                idx += c * side**d
            cols[local] = idx % n
        else:
            off = np.rint(rng.laplace(0.0, max(1.0, band * n), size=nl)).astype(np.int64)
            off[off == 0] = 1
            cols[local] = np.clip(rows[local] + off, 0, n - 1)
        if kind == "powerlaw":
            pop = np.bincount(rows, minlength=n).astype(np.float64) + 0.5
            cdf = np.cumsum(pop)
            cols[~local] = np.minimum(np.searchsorted(cdf, rng.random(m - nl) * cdf[-1]), n - 1)
        else:
            cols[~local] = rng.integers(0, n, size=m - nl)
        if symmetric:
            rows, cols = np.concatenate([rows, cols]), np.concatenate([cols, rows])
        vals = rng.integers(1, 10, size=len(rows)).astype(np.float64)
        A = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        A.sum_duplicates()
        if abs(A.nnz - nnz) <= 0.03 * nnz:
            break
        factor *= nnz / max(1, A.nnz)
    if relabel > 0:
        A = _relabel(A, relabel, rng)
    A.sort_indices()
    return A


def standin(name: str, scale: float = 1.0, seed: int = 0) -> sp.csr_matrix:
    """The stand-in of one of the 20 matrices; ``scale`` < 1 shrinks rows and non-zeros
    together (same mean degree, same ordering parameters)."""
    if name not in PAPER_MATRICES:
        raise WorkloadSpecError("matrix", f"unknown paper matrix {name!r}; choose one of {sorted(PAPER_MATRICES)}")
    if not 0 < scale <= 1:
        raise WorkloadSpecError("scale", f"must be in (0, 1], got {scale}")
    m = PAPER_MATRICES[name]
    n = max(16, int(round(m.rows * scale)))
    nnz = max(n, int(round(m.nnz * n / m.rows)))
    return locality_graph(n, nnz, m.kind, m.symmetric, m.p_local, m.band, m.gamma, m.max_out, seed=seed + 7919 * (sorted(PAPER_MATRICES).index(name) + 1), relabel=m.relabel)


def matrix_stats(A: sp.csr_matrix, nnz_c: Optional[int] = None) -> Dict[str, Any]:
    """Size, degree distribution and ordering statistics of ``A`` (squared: ``A @ A``).

    ``bw50``/``bw90``: median and 90th percentile of ``|i - j|`` over the non-zeros, as a
    fraction of the rows (the ordering's locality); ``prod_per_out``: products of the
    outer product per output non-zero (how much the merger accumulates), given nnz(C).
    """
    A = sp.csr_matrix(A)
    n = A.shape[0]
    deg = np.diff(A.indptr)
    rows = np.repeat(np.arange(n), deg)
    dist = np.abs(rows - A.indices) / max(1, n)
    a_col = np.bincount(A.indices, minlength=A.shape[1]).astype(np.int64)
    products = int(a_col[: len(deg)] @ deg[: len(a_col)]) if A.shape[0] == A.shape[1] else None
    out = {
        "rows": int(n),
        "nnz": int(A.nnz),
        "mean_deg": float(deg.mean()) if n else 0.0,
        "max_deg": int(deg.max()) if n else 0,
        "deg_cv": float(deg.std() / deg.mean()) if n and deg.mean() > 0 else 0.0,
        "bw50": float(np.median(dist)) if A.nnz else 0.0,
        "bw90": float(np.quantile(dist, 0.9)) if A.nnz else 0.0,
        "products": products,
    }
    if nnz_c is not None and products is not None:
        out["prod_per_out"] = products / max(1, nnz_c)
    return out


def fetch_suitesparse(name: str, group: Optional[str] = None, cache_dir: Optional[str | Path] = None, base_url: str = SUITESPARSE_URL) -> sp.csr_matrix:
    """A SuiteSparse matrix by name: ``<cache_dir>/<Group>/<Name>.mtx`` if cached, else
    fetched once from ``<base_url>/<Group>/<Name>.tar.gz`` and unpacked into the cache.

    ``group`` defaults to the one listed for the paper's matrices. ``base_url`` may be a
    ``file://`` URL or a plain directory (a local mirror).
    """
    if group is None:
        if name not in PAPER_MATRICES:
            raise WorkloadSpecError("group", f"give the SuiteSparse group of {name!r} (known without it: {sorted(PAPER_MATRICES)})")
        group = PAPER_MATRICES[name].group
    cache = Path(cache_dir).expanduser() if cache_dir else Path.home() / ".cache" / "hwaml" / "suitesparse"
    target = cache / group / f"{name}.mtx"
    if not target.is_file():
        url = base_url if "://" in base_url else Path(base_url).resolve().as_uri()
        url = f"{url.rstrip('/')}/{group}/{name}.tar.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        archive = target.parent / f"{name}.tar.gz.part"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as fh:
                shutil.copyfileobj(resp, fh)
        except (OSError, ValueError) as exc:
            archive.unlink(missing_ok=True)
            raise MatrixFileError(url, None, f"could not fetch SuiteSparse matrix {group}/{name}: {exc}") from exc
        try:
            with tarfile.open(archive, "r:gz") as tar:
                member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == f"{name}.mtx"), None)
                if member is None:
                    raise MatrixFileError(url, None, f"the archive holds no {name}.mtx")
                src = tar.extractfile(member)
                with open(target.with_suffix(".mtx.part"), "wb") as fh:
                    shutil.copyfileobj(src, fh)
            target.with_suffix(".mtx.part").rename(target)
        except tarfile.TarError as exc:
            raise MatrixFileError(url, None, f"not a gzip tar archive: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)
    return read_matrix_market(target)
