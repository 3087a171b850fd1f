"""A small reader (and writer, for tests) of IDX files: MNIST / Fashion-MNIST's format.

Header: two zero bytes, a type code (0x08 unsigned byte is the one the datasets
use), the number of dimensions, then one big-endian uint32 per dimension.
Files may be gzip-compressed. Malformed files raise :class:`IDXError` naming the
file and what is wrong.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any, Tuple

import numpy as np

__all__ = ["IDXError", "read_idx", "write_idx", "read_pair"]


class IDXError(ValueError):
    pass


def read_idx(path: Any) -> np.ndarray:
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IDXError(f"{path}: not a readable gzip stream ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IDXError(f"{path}: bad magic number {raw[:4].hex()} (an IDX file starts with two zero bytes)")
    if raw[2] != 0x08:
        raise IDXError(f"{path}: type code 0x{raw[2]:02x}; only unsigned bytes (0x08) are supported")
    ndim = raw[3]
    end = 4 + 4 * ndim
    if ndim == 0 or len(raw) < end:
        raise IDXError(f"{path}: header of {ndim} dimensions is truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:end])
    expected = int(np.prod(dims))
    if len(raw) - end != expected:
        raise IDXError(f"{path}: {len(raw) - end} data bytes for dimensions {dims} (expected {expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=end).reshape(dims)


def read_pair(images: Any, labels: Any) -> Tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise IDXError(f"{images} / {labels}: {x.shape} images do not pair with {y.shape} labels")
    return x, y


def write_idx(path: Any, array: np.ndarray) -> Path:
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = head + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path
