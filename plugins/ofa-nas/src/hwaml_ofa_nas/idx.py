"""Reader for the IDX format of MNIST-like data sets (MNIST, Fashion-MNIST, KMNIST, EMNIST, ...).

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then
``ndim`` big-endian uint32 dimensions, then the values in C order, big-endian.
Files may be gzip-compressed (detected from the content, not the name).

:func:`read_idx` parses the header and maps the values with
``numpy.frombuffer``; a malformed file raises :class:`IDXError`, naming the
file and the byte offset where it goes wrong. A plain file whose data is
larger than ``max_bytes`` is mapped with ``numpy.memmap`` instead of read; a
gzip file that large is refused (it cannot be mapped; decompress it first).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Dict, Any, Optional, Tuple

import numpy as np

__all__ = ["IDXError", "DTYPES", "read_idx", "read_idx_header", "write_idx", "read_labelled_pair", "DEFAULT_MAX_BYTES", "find_idx_files", "FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES"]

#: where Debian's ``dataset-fashion-mnist`` installs the IDX files (``dpkg -L dataset-fashion-mnist``)
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

#: IDX type code -> numpy dtype (big-endian)
DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {v.newbyteorder("="): k for k, v in DTYPES.items()}

#: data larger than this is memory-mapped (plain files) or refused (gzip)
DEFAULT_MAX_BYTES = 1 << 30

_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """A malformed IDX file: ``path`` and the byte ``offset`` where it goes wrong."""

    def __init__(self, path: Any, offset: int, message: str):
        self.path, self.offset = str(path), int(offset)
        super().__init__(f"{path}: byte {offset}: {message}")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _parse_header(path: Path, head: bytes, gz: bool) -> Tuple[np.dtype, Tuple[int, ...], int]:
    where = " (of the decompressed stream)" if gz else ""
    if len(head) < 4:
        raise IDXError(path, len(head), f"file ends inside the 4-byte magic number{where}")
    if head[0] != 0 or head[1] != 0:
        raise IDXError(path, 0, f"bad magic number 0x{head[:4].hex()}: an IDX file starts with two zero bytes{where}")
    code, ndim = head[2], head[3]
    if code not in DTYPES:
        raise IDXError(path, 2, f"unknown IDX type code 0x{code:02x} (known: {', '.join(f'0x{c:02x}' for c in DTYPES)}){where}")
    if ndim == 0:
        raise IDXError(path, 3, f"0 dimensions{where}")
    end = 4 + 4 * ndim
    if len(head) < end:
        raise IDXError(path, len(head), f"file ends inside the {ndim} dimension sizes (header needs {end} bytes){where}")
    dims = struct.unpack(f">{ndim}I", head[4:end])
    return DTYPES[code], tuple(int(d) for d in dims), end


def read_idx_header(path: Any) -> Tuple[np.dtype, Tuple[int, ...], int]:
    """``(dtype, dims, header_bytes)`` of an IDX file (gzip or not)."""
    path = Path(path)
    gz = _is_gzip(path)
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) == 4 and head[3]:
                head += fh.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXError(path, 0, f"not a readable gzip stream ({exc})") from exc
    return _parse_header(path, head, gz)


def read_idx(path: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """The array in the IDX file ``path`` (gzip or plain), native byte order
    (a memory map keeps the file's big-endian order).

    Plain files with more than ``max_bytes`` of data come back as a read-only
    ``numpy.memmap`` (no copy in memory); gzip files that large raise
    :class:`IDXError`. Truncated data, trailing bytes and a bad header raise
    :class:`IDXError` naming the file and byte offset."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such IDX file")
    dtype, dims, start = read_idx_header(path)
    count = int(np.prod(dims, dtype=np.int64))
    need = count * dtype.itemsize
    gz = _is_gzip(path)
    if not gz:
        size = os.path.getsize(path)
        if size < start + need:
            raise IDXError(path, size, f"truncated: dims {dims} of {dtype.name} need {need} data bytes from byte {start} (file ends at byte {size}, {start + need - size} bytes short)")
        if size > start + need:
            raise IDXError(path, start + need, f"dims {dims} of {dtype.name} end here but the file has {size - start - need} more bytes (dims do not match the size)")
        if need > max_bytes:
            # mapped, not read: values stay big-endian (numpy converts on access)
            return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=dims)
        with open(path, "rb") as fh:
            fh.seek(start)
            raw = fh.read(need)
    else:
        if need > max_bytes:
            raise IDXError(path, start, f"dims {dims} need {need} bytes, more than max_bytes={max_bytes}; a gzip file cannot be memory-mapped: decompress it (gunzip -k) and read the plain file")
        try:
            with gzip.open(path, "rb") as fh:
                fh.seek(start)
                raw = fh.read(need)
                extra = len(fh.read(1))
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXError(path, start, f"gzip stream is damaged or truncated inside the data ({exc})") from exc
        if len(raw) < need:
            raise IDXError(path, start + len(raw), f"truncated (decompressed stream): dims {dims} of {dtype.name} need {need} data bytes from byte {start}, {need - len(raw)} bytes short")
        if extra:
            raise IDXError(path, start + need, f"decompressed stream goes on after the dims {dims} of {dtype.name} end (dims do not match the size)")
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def read_labelled_pair(images: Any, labels: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> Tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of an MNIST-like pair of IDX files; refuses a pair
    whose counts differ or whose labels are not one-dimensional."""
    x = read_idx(images, max_bytes)
    y = read_idx(labels, max_bytes)
    if y.ndim != 1:
        raise IDXError(labels, 3, f"labels must be one-dimensional, got dims {y.shape}")
    if x.ndim < 2:
        raise IDXError(images, 3, f"images need at least 2 dimensions (count, ...), got dims {x.shape}")
    if len(x) != len(y):
        raise IDXError(labels, 4, f"{len(y)} labels but {images} holds {len(x)} images")
    return x, y


def write_idx(path: Any, array: np.ndarray, compress: Optional[bool] = None) -> Path:
    """Write ``array`` as an IDX file (gzip when ``compress`` or the name ends in ``.gz``)."""
    path = Path(path)
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"IDX has no type code for {arr.dtype} (types: {', '.join(str(d) for d in _CODES)})")
    code = _CODES[native]
    data = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(DTYPES[code]).tobytes()
    gz = path.name.endswith(".gz") if compress is None else compress
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def find_idx_files(root: Any) -> Dict[str, Tuple[Path, Path]]:
    """``{"train": (images, labels), "test": (images, labels)}`` in ``root``:
    the MNIST file names (``train-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    ...), gzip (``.gz``) or plain."""
    root = Path(root)
    if not root.is_dir():
        hint = " (install it: apt-get install dataset-fashion-mnist, or bash scripts/setup.sh)" if str(root) == FASHION_MNIST_ROOT else ""
        raise FileNotFoundError(f"IDX data folder {root} does not exist{hint}; set the data root (evaluator.data.root / data_root) to a folder with MNIST-named IDX files")
    found: Dict[str, Tuple[Path, Path]] = {}
    for split, stems in _STEMS.items():
        pair = []
        for stem in stems:
            hits = [root / (stem + ext) for ext in ("", ".gz") if (root / (stem + ext)).is_file()]
            if not hits:
                raise FileNotFoundError(f"{root}: no {stem} or {stem}.gz (an MNIST-like IDX folder holds {', '.join(s for p in _STEMS.values() for s in p)})")
            pair.append(hits[0])
        found[split] = (pair[0], pair[1])
    return found
