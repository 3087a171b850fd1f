"""Sparse matrices for SpGEMM workloads: readers, generators and workload specs.

Readers:

* Matrix Market (``.mtx``) through :func:`scipy.io.mmread`; a malformed file is
  reported as :class:`MatrixFileError` naming the file and the line.
* SNAP-style edge lists (``# comment`` lines, then ``src dst [weight]`` per line,
  whitespace or tab separated).

Generators:

* R-MAT (Chakrabarti, Zhan and Faloutsos, SDM 2004) with the Graph500 default
  quadrant probabilities a=0.57, b=c=0.19, d=0.05, vectorised over edges.
* 2D five-point and 3D seven-point Poisson stencils (finite-difference Laplacians)
  built with Kronecker sums in :mod:`scipy.sparse`.

A *workload spec* is a mapping (as written in Hydra config) with a ``kind`` key:
``mtx`` (``path``), ``edgelist`` (``path``), ``rmat`` (``scale``, ``edge_factor``,
``a``, ``b``, ``c``, ``seed``), ``poisson2d`` (``n``) or ``poisson3d`` (``n``).
Every spec may name the right operand with ``rhs``: ``same`` (``A @ A``, the
SpArch and OuterSPACE evaluation) or ``transpose`` (``A @ A.T``, for non-square
matrices).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import scipy.io
import scipy.sparse as sp

log = logging.getLogger(__name__)

__all__ = [
    "MatrixFileError",
    "WorkloadSpecError",
    "read_matrix_market",
    "read_edge_list",
    "rmat",
    "poisson2d",
    "poisson3d",
    "Operands",
    "load_operands",
    "load_matrix",
    "check_spec",
    "load_workload",
    "spec_name",
]


class MatrixFileError(ValueError):
    """A matrix file could not be read; ``path`` and ``line`` (1-based) say where."""

    def __init__(self, path: str | Path, line: Optional[int], message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class WorkloadSpecError(ValueError):
    """A workload spec is wrong; ``key`` names the offending entry."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


# ---------------------------------------------------------------------------
# Matrix Market
# ---------------------------------------------------------------------------

_MM_FIELDS = {"real", "integer", "complex", "pattern", "double"}
_MM_SYMMETRY = {"general", "symmetric", "skew-symmetric", "hermitian"}


def _banner(header: str) -> Tuple[List[str], str]:
    """The ``%%MatrixMarket`` banner's lower-cased tokens, or a problem to report."""
    if not header.startswith("%%MatrixMarket"):
        return [], f"the first line must start with '%%MatrixMarket' (got {header.strip()[:60]!r})"
    parts = header.lower().split()
    if len(parts) != 5 or parts[1] != "matrix" or parts[2] not in ("coordinate", "array"):
        return [], "header must read '%%MatrixMarket matrix coordinate|array <field> <symmetry>'"
    return parts, ""


def _size_line(tokens: List[str], coordinate: bool, line: str) -> Tuple[List[int], str]:
    """The size line's integers (rows cols [entries]), or a problem to report."""
    want = 3 if coordinate else 2
    if len(tokens) != want or not all(t.isdigit() for t in tokens):
        return [], f"size line must hold {want} non-negative integers, got {line[:60]!r}"
    return [int(t) for t in tokens], ""


def _scan_matrix_market(path: Path) -> Tuple[Optional[int], str]:
    """Find the first malformed line of a coordinate Matrix Market file.

    scipy's reader usually names the line itself; this scan is the fallback for
    the messages that do not (truncated files, a bad header), and it checks what
    scipy accepts silently (a count line that disagrees with the entries).
    Returns ``(line, message)``, or ``(None, "")`` when nothing is wrong.
    """
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        parts, problem = _banner(fh.readline())
        if problem:
            return 1, problem
        if parts[3] not in _MM_FIELDS:
            return 1, f"unknown field {parts[3]!r}; expected one of {sorted(_MM_FIELDS)}"
        if parts[4] not in _MM_SYMMETRY:
            return 1, f"unknown symmetry {parts[4]!r}; expected one of {sorted(_MM_SYMMETRY)}"
        coordinate = parts[2] == "coordinate"
        want_values = 0 if parts[3] == "pattern" else (2 if parts[3] == "complex" else 1)
        lineno = 1
        size: Optional[List[int]] = None
        entries = 0
        for raw in fh:
            lineno += 1
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            tokens = line.split()
            if size is None:
                size, problem = _size_line(tokens, coordinate, line)
                if problem:
                    return lineno, problem
                continue
            if not coordinate:
                entries += 1
                continue
            if len(tokens) != 2 + want_values:
                return lineno, f"expected {2 + want_values} fields (row col{' value' * want_values}), got {len(tokens)}: {line[:60]!r}"
            try:
                r, c = int(tokens[0]), int(tokens[1])
            except ValueError:
                return lineno, f"row and column must be integers, got {line[:60]!r}"
            if not (1 <= r <= size[0] and 1 <= c <= size[1]):
                return lineno, f"entry ({r}, {c}) is outside the {size[0]} x {size[1]} matrix (indices are 1-based)"
            for t in tokens[2:]:
                try:
                    v = float(t)
                except ValueError:
                    return lineno, f"value {t!r} is not a number"
                if not np.isfinite(v):
                    return lineno, f"value {t!r} is not finite (NaN and Inf are refused)"
            entries += 1
        if size is None:
            return lineno, "the file has no size line"
        expected = size[2] if coordinate else size[0] * size[1]
        if entries != expected:
            return lineno + 1, f"the size line announces {expected} entries but the file holds {entries}"
    return None, ""


def available_memory_bytes() -> int:
    """Memory the process may still allocate: ``MemAvailable`` of /proc/meminfo, else physical pages."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 62


def sparse_bytes_needed(rows: int, cols: int, entries: int) -> int:
    """Peak bytes to read ``entries`` coordinates into CSR: COO (int64 row, col, float64 value),
    the CSR copy (int32/64 indices, values) and the row pointer, with scipy's temporaries."""
    return int(2 * (rows + 1) * 8 + entries * (8 + 8 + 8) * 2 + entries * (8 + 8))


def check_matrix_fits(path: str | Path, rows: int, cols: int, entries: int, line: Optional[int], what: str = "matrix", budget: Optional[int] = None) -> None:
    """Refuse, before anything is allocated, a matrix whose CSR form does not fit in memory."""
    budget = available_memory_bytes() if budget is None else int(budget)
    need = sparse_bytes_needed(rows, cols, entries)
    if need > budget:
        raise MatrixFileError(
            path,
            line,
            f"the {what} is {rows} x {cols} with {entries} entries, which needs about {need / 2**30:.1f} GiB "
            f"to hold in CSR form, more than the {budget / 2**30:.1f} GiB of memory available; refusing to allocate it",
        )


def _read_header(path: Path) -> Tuple[List[str], int, List[int]]:
    """The banner tokens, the size line's number and its integers (no entries read)."""
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        parts, problem = _banner(fh.readline())
        if problem:
            raise MatrixFileError(path, 1, problem)
        lineno = 1
        for raw in fh:
            lineno += 1
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            size, problem = _size_line(line.split(), parts[2] == "coordinate", line)
            if problem:
                raise MatrixFileError(path, lineno, problem)
            return parts, lineno, size
    raise MatrixFileError(path, lineno, "the file has no size line")


def _first_nonfinite_line(path: Path) -> Optional[int]:
    """The 1-based line of the first entry whose value is NaN or infinite."""
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        seen_size = False
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if lineno == 1 or not line or line.startswith("%"):
                continue
            if not seen_size:
                seen_size = True
                continue
            for t in line.split()[2:] or line.split()[:1]:
                try:
                    if not np.isfinite(float(t)):
                        return lineno
                except ValueError:
                    continue
    return None


def read_matrix_market(path: str | Path, memory_budget: Optional[int] = None) -> sp.csr_matrix:
    """Read a Matrix Market file as CSR (symmetric files are expanded by scipy).

    Before anything is allocated the banner and the size line are checked and the
    CSR form's size is compared with the available memory (``memory_budget`` bytes
    if given); NaN or infinite values are refused with the line that holds them.
    """
    path = Path(path)
    if not path.is_file():
        raise MatrixFileError(path, None, "no such file")
    parts, size_line, size = _read_header(path)
    if parts[2] == "coordinate":
        rows, cols, entries = size
        if parts[4] != "general":
            entries *= 2  # the mirrored half is added on reading
        check_matrix_fits(path, rows, cols, entries, size_line, budget=memory_budget)
    else:
        rows, cols = size
        check_matrix_fits(path, rows, cols, rows * cols * 2, size_line, what="dense array", budget=memory_budget)
    # scipy's reader (fast_matrix_market) raises ValueError for malformed content,
    # OverflowError for integers out of range, RuntimeError from its C++ core and
    # OSError for an unreadable file, each with its own wording
    try:
        mat = scipy.io.mmread(str(path))
    except (ValueError, OverflowError, RuntimeError, OSError) as exc:
        line, msg = _scan_matrix_market(path)
        if line is None:
            found = re.search(r"[Ll]ine (\d+)", str(exc))
            line = int(found.group(1)) if found else None
            msg = str(exc)
        raise MatrixFileError(path, line, msg) from exc
    if not sp.issparse(mat):
        mat = sp.csr_matrix(np.asarray(mat))
    mat = sp.csr_matrix(mat)
    if mat.dtype.kind == "c":
        raise MatrixFileError(path, 1, "complex matrices are not supported (the simulator charges real values)")
    if mat.nnz and not np.all(np.isfinite(mat.data)):
        line = _first_nonfinite_line(path)
        raise MatrixFileError(path, line, "value is not finite (NaN and Inf are refused)")
    return mat


# ---------------------------------------------------------------------------
# SNAP edge lists
# ---------------------------------------------------------------------------


def read_edge_list(
    path: str | Path,
    relabel: bool = False,
    symmetric: bool = False,
    comment: str = "#",
) -> sp.csr_matrix:
    """Read a SNAP-style edge list (``src dst`` or ``src dst weight`` per line).

    Node ids are non-negative integers. With ``relabel`` the ids present are
    compacted to ``0..n-1`` (SNAP files often skip ids); otherwise the matrix is
    ``(max id + 1)`` square. ``symmetric`` adds the reverse of every edge
    (undirected graphs). Duplicate edges add up their weights.
    """
    path = Path(path)
    if not path.is_file():
        raise MatrixFileError(path, None, "no such file")
    src: List[int] = []
    dst: List[int] = []
    weights: List[float] = []
    width: Optional[int] = None
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith(comment) or line.startswith("%"):
                continue
            tokens = line.split()
            if len(tokens) not in (2, 3):
                raise MatrixFileError(path, lineno, f"expected 'src dst' or 'src dst weight', got {len(tokens)} fields: {line[:60]!r}")
            if width is None:
                width = len(tokens)
            elif len(tokens) != width:
                raise MatrixFileError(path, lineno, f"has {len(tokens)} fields but earlier lines have {width}")
            try:
                u, v = int(tokens[0]), int(tokens[1])
            except ValueError:
                raise MatrixFileError(path, lineno, f"node ids must be integers, got {line[:60]!r}") from None
            if u < 0 or v < 0:
                raise MatrixFileError(path, lineno, f"node ids must be non-negative, got {u} {v}")
            if width == 3:
                try:
                    w = float(tokens[2])
                except ValueError:
                    raise MatrixFileError(path, lineno, f"weight {tokens[2]!r} is not a number") from None
                if not np.isfinite(w):
                    raise MatrixFileError(path, lineno, f"weight {tokens[2]!r} is not finite (NaN and Inf are refused)")
                weights.append(w)
            src.append(u)
            dst.append(v)
    if not src:
        raise MatrixFileError(path, None, "the file holds no edges")
    rows = np.asarray(src, dtype=np.int64)
    cols = np.asarray(dst, dtype=np.int64)
    vals = np.asarray(weights, dtype=np.float64) if weights else np.ones(len(rows), dtype=np.float64)
    if relabel:
        ids, inverse = np.unique(np.concatenate([rows, cols]), return_inverse=True)
        rows, cols = inverse[: len(rows)], inverse[len(rows) :]
        n = len(ids)
    else:
        n = int(max(rows.max(), cols.max())) + 1
    check_matrix_fits(path, n, n, len(rows) * (2 if symmetric else 1), None, what="graph")
    if symmetric:
        off = rows != cols
        rows, cols, vals = np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]]), np.concatenate([vals, vals[off]])
    mat = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    mat.sum_duplicates()
    return mat


# ---------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------


def rmat(
    scale: int,
    edge_factor: float = 8.0,
    a: float = 0.57,
    b: float = 0.19,
    c: float = 0.19,
    seed: int = 0,
    values: str = "integer",
) -> sp.csr_matrix:
    """An R-MAT adjacency matrix with ``2**scale`` nodes and about ``edge_factor * 2**scale`` edges.

    Each edge picks one quadrant per bit level with probabilities (a, b, c, d);
    duplicates merge (so nnz is a little below the edge count, as in Graph500).
    ``values``: ``integer`` (1..9, exact products), ``float`` (uniform) or ``ones``.
    """
    if scale < 1 or scale > 26:
        raise WorkloadSpecError("scale", f"must be in [1, 26], got {scale}")
    d = 1.0 - a - b - c
    if min(a, b, c, d) < 0:
        raise WorkloadSpecError("a", f"quadrant probabilities a={a}, b={b}, c={c} leave d={d:.3f} < 0")
    if edge_factor <= 0:
        raise WorkloadSpecError("edge_factor", f"must be > 0, got {edge_factor}")
    rng = np.random.default_rng(seed)
    n = 1 << scale
    m = int(round(edge_factor * n))
    rows = np.zeros(m, dtype=np.int64)
    cols = np.zeros(m, dtype=np.int64)
    cum = np.array([a, a + b, a + b + c])
    for level in range(scale):
        u = rng.random(m)
        quadrant = np.searchsorted(cum, u, side="right")  # 0=a, 1=b, 2=c, 3=d
        bit = 1 << (scale - 1 - level)
        rows += bit * (quadrant >= 2)
        cols += bit * (quadrant % 2 == 1)
    if values == "integer":
        vals = rng.integers(1, 10, size=m).astype(np.float64)
    elif values == "float":
        vals = rng.random(m)
    elif values == "ones":
        vals = np.ones(m)
    else:
        raise WorkloadSpecError("values", f"must be integer, float or ones, got {values!r}")
    mat = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    mat.sum_duplicates()
    return mat


def _laplacian_1d(n: int) -> sp.csr_matrix:
    return sp.diags([-np.ones(n - 1), 2.0 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")


def poisson2d(n: int) -> sp.csr_matrix:
    """Five-point finite-difference Laplacian on an ``n x n`` grid (``n**2`` rows)."""
    if n < 2:
        raise WorkloadSpecError("n", f"must be >= 2, got {n}")
    lap, eye = _laplacian_1d(n), sp.identity(n, format="csr")
    return sp.csr_matrix(sp.kron(lap, eye) + sp.kron(eye, lap))


def poisson3d(n: int) -> sp.csr_matrix:
    """Seven-point finite-difference Laplacian on an ``n x n x n`` grid (``n**3`` rows)."""
    if n < 2:
        raise WorkloadSpecError("n", f"must be >= 2, got {n}")
    lap, eye = _laplacian_1d(n), sp.identity(n, format="csr")
    return sp.csr_matrix(sp.kron(sp.kron(lap, eye), eye) + sp.kron(sp.kron(eye, lap), eye) + sp.kron(sp.kron(eye, eye), lap))


# ---------------------------------------------------------------------------
# workload specs
# ---------------------------------------------------------------------------

_KINDS: Dict[str, Tuple[set, set]] = {
    # kind: (required keys, optional keys)
    "mtx": ({"path"}, set()),
    "edgelist": ({"path"}, {"relabel", "symmetric"}),
    "rmat": ({"scale"}, {"edge_factor", "a", "b", "c", "seed", "values"}),
    "poisson2d": ({"n"}, set()),
    "poisson3d": ({"n"}, set()),
    "standin": ({"matrix"}, {"scale", "seed"}),
    "suitesparse": ({"matrix"}, {"group", "cache_dir", "base_url"}),
}
_COMMON = {"kind", "rhs", "name"}


@dataclass(frozen=True)
class Operands:
    """The two operands of one SpGEMM, ``C = A @ B``."""

    name: str
    A: sp.csr_matrix
    B: sp.csr_matrix


def spec_name(spec: Mapping[str, Any]) -> str:
    """A short readable name for a spec (``rmat_s10_e8``, ``poisson2d_64``, file stem)."""
    if spec.get("name"):
        return str(spec["name"])
    kind = spec.get("kind")
    if kind in ("mtx", "edgelist"):
        return Path(str(spec["path"])).stem
    if kind == "standin":
        sc = float(spec.get("scale", 1.0))
        return f"{spec['matrix']}~" + ("" if sc == 1.0 else f"x{sc:g}")
    if kind == "suitesparse":
        return str(spec["matrix"])
    if kind == "rmat":
        ef = spec.get("edge_factor", 8)
        ef = int(ef) if float(ef).is_integer() else ef
        return f"rmat_s{spec['scale']}_e{ef}" + (f"_seed{spec['seed']}" if spec.get("seed") else "")
    return f"{kind}_{spec.get('n')}"


def check_spec(spec: Mapping[str, Any], key: str) -> None:
    if not isinstance(spec, Mapping):
        raise WorkloadSpecError(key, f"a workload entry must be a mapping with a 'kind', got {spec!r}")
    kind = spec.get("kind")
    if kind not in _KINDS:
        raise WorkloadSpecError(f"{key}.kind", f"unknown kind {kind!r}; choose one of {sorted(_KINDS)}")
    required, optional = _KINDS[kind]
    for k in required:
        if k not in spec:
            raise WorkloadSpecError(f"{key}.{k}", f"is required for kind {kind!r}")
    for k in spec:
        if k not in required | optional | _COMMON:
            raise WorkloadSpecError(f"{key}.{k}", f"unknown key for kind {kind!r}; allowed: {sorted(required | optional | _COMMON)}")
    if spec.get("rhs", "same") not in ("same", "transpose"):
        raise WorkloadSpecError(f"{key}.rhs", f"must be 'same' or 'transpose', got {spec.get('rhs')!r}")


def load_matrix(spec: Mapping[str, Any], key: str = "workload") -> sp.csr_matrix:
    """Build or read the left matrix a spec describes."""
    check_spec(spec, key)
    kind = spec["kind"]
    if kind == "mtx":
        return read_matrix_market(spec["path"])
    if kind == "edgelist":
        return read_edge_list(spec["path"], relabel=bool(spec.get("relabel", False)), symmetric=bool(spec.get("symmetric", False)))
    if kind == "rmat":
        kwargs = {k: spec[k] for k in ("edge_factor", "a", "b", "c", "seed", "values") if k in spec}
        try:
            return rmat(int(spec["scale"]), **kwargs)
        except WorkloadSpecError as exc:
            raise WorkloadSpecError(f"{key}.{exc.key}", str(exc).split(": ", 1)[1]) from None
    if kind in ("standin", "suitesparse"):
        from . import standins

        try:
            if kind == "standin":
                return standins.standin(str(spec["matrix"]), float(spec.get("scale", 1.0)), int(spec.get("seed", 0)))
            kwargs = {k: spec[k] for k in ("group", "cache_dir", "base_url") if spec.get(k) is not None}
            return standins.fetch_suitesparse(str(spec["matrix"]), **kwargs)
        except WorkloadSpecError as exc:
            raise WorkloadSpecError(f"{key}.{exc.key}", str(exc).split(": ", 1)[1]) from None
    if kind == "poisson2d":
        return poisson2d(int(spec["n"]))
    return poisson3d(int(spec["n"]))


def load_operands(spec: Mapping[str, Any], key: str = "workload") -> Operands:
    """``A`` and ``B`` of one spec: ``B = A`` when square (or ``rhs: same``), else ``A.T``."""
    A = sp.csr_matrix(load_matrix(spec, key))
    A.sort_indices()
    rhs = spec.get("rhs")
    if rhs is None:
        rhs = "same" if A.shape[0] == A.shape[1] else "transpose"
    if rhs == "same":
        if A.shape[0] != A.shape[1]:
            raise WorkloadSpecError(f"{key}.rhs", f"'same' needs a square matrix, {spec_name(spec)} is {A.shape[0]} x {A.shape[1]}")
        B = A
    else:
        B = sp.csr_matrix(A.T)
        B.sort_indices()
    return Operands(spec_name(spec), A, B)


def load_workload(specs: Sequence[Mapping[str, Any]]) -> List[Operands]:
    """Load every spec of a workload (a non-empty list)."""
    if isinstance(specs, Mapping) or not isinstance(specs, Sequence) or isinstance(specs, str):
        raise WorkloadSpecError("workload", f"must be a list of matrix specs, got {type(specs).__name__}")
    if not specs:
        raise WorkloadSpecError("workload", "is empty; give at least one matrix spec")
    out = []
    for i, spec in enumerate(specs):
        out.append(load_operands(spec, f"workload[{i}]"))
        log.info("loaded %s: %d x %d, nnz %d", out[-1].name, *out[-1].A.shape, out[-1].A.nnz)
    return out
