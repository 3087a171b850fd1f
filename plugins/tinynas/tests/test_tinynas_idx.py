"""The IDX reader and the IDX data splits, on small files the tests write (and once on Debian's Fashion-MNIST)."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hwaml_tinynas.data import FASHION_MNIST_ROOT, find_idx_files, idx_splits
from hwaml_tinynas.idx import IDXError, read_idx, read_idx_header, read_labelled_pair, write_idx


def _header(code, dims):
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz", "renamed.bin"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_every_type_gzip_or_plain(tmp_path, name, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / name, arr, compress=name.endswith(".gz") or None)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)
    assert read_idx_header(path)[1] == (2, 3, 4)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(6)
    path = write_idx(tmp_path / "plain-looking-name", arr, compress=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(path), arr)


def test_large_plain_file_is_memory_mapped(tmp_path):
    arr = np.arange(1000, dtype=np.int16).reshape(10, 100)
    path = write_idx(tmp_path / "big.idx", arr)
    out = read_idx(path, max_bytes=100)
    assert isinstance(out, np.memmap)
    np.testing.assert_array_equal(np.asarray(out), arr)


def test_large_gzip_file_is_refused_with_the_reason(tmp_path):
    path = write_idx(tmp_path / "big.idx.gz", np.zeros((10, 100), np.uint8))
    with pytest.raises(IDXError, match=r"big\.idx\.gz: byte 12: .*cannot be memory-mapped.*gunzip"):
        read_idx(path, max_bytes=100)


def _malformed(tmp_path, raw, gz):
    path = tmp_path / ("bad.idx.gz" if gz else "bad.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "raw, offset, message",
    [
        (b"\x00", 1, "ends inside the 4-byte magic"),
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", 0, "bad magic number 0x01000801"),
        (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05", 2, "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", 3, "0 dimensions"),
        (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02", 8, "ends inside the 3 dimension sizes"),
        (_header(0x08, (2, 3)) + bytes(5), 17, "truncated"),
        (_header(0x0B, (4,)) + bytes(7), 15, "truncated"),
        (_header(0x08, (2, 3)) + bytes(8), 18, "dims do not match the size"),
    ],
)
def test_malformed_files_name_the_file_and_the_byte(tmp_path, raw, offset, message, gz):
    path = _malformed(tmp_path, raw, gz)
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path)
    assert info.value.path == str(path) and info.value.offset == offset
    assert str(info.value).startswith(f"{path}: byte {offset}: ")


def test_damaged_gzip_stream_names_the_file(tmp_path):
    raw = gzip.compress(_header(0x08, (100,)) + bytes(range(100)))
    path = tmp_path / "cut.idx.gz"
    path.write_bytes(raw[: len(raw) // 2 + 6])
    with pytest.raises(IDXError, match=r"cut\.idx\.gz: byte \d+: "):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        read_idx(tmp_path / "nope.idx")


def test_pair_counts_must_match(tmp_path):
    x = write_idx(tmp_path / "x.idx", np.zeros((5, 4, 4), np.uint8))
    y = write_idx(tmp_path / "y.idx", np.zeros(4, np.uint8))
    with pytest.raises(IDXError, match=r"y\.idx: byte 4: 4 labels but .*x\.idx holds 5 images"):
        read_labelled_pair(x, y)
    y2 = write_idx(tmp_path / "y2.idx", np.zeros((5, 2), np.uint8))
    with pytest.raises(IDXError, match="labels must be one-dimensional"):
        read_labelled_pair(x, y2)
    assert read_labelled_pair(x, write_idx(tmp_path / "y3.idx.gz", np.arange(5, dtype=np.uint8)))[1].tolist() == [0, 1, 2, 3, 4]


def _mnist_like(root: Path, n_train=300, n_test=50, size=10, gz=True):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.integers(0, 40, (n, size, size)) + y[:, None, None] * 20).astype(np.uint8)
        write_idx(root / f"{stem}-images-idx3-ubyte{ext}", x)
        write_idx(root / f"{stem}-labels-idx1-ubyte{ext}", y)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_idx_splits_hold_out_validation_and_keep_test_apart(tmp_path, gz):
    root = _mnist_like(tmp_path / ("gz" if gz else "plain"), gz=gz)
    d = idx_splits(12, 0, str(root), 100, 150, 40)
    assert d.x_train.shape == (150, 1, 12, 12) and d.x_val.shape == (100, 1, 12, 12) and d.x_test.shape == (40, 1, 12, 12)
    assert float(d.x_train.min()) >= -1.0 and float(d.x_train.max()) <= 1.0 and d.x_train.dtype == torch.float32
    # seeded: same seed same split, other seed other split; train and val are disjoint
    again = idx_splits(12, 0, str(root), 100, 150, 40)
    assert torch.equal(again.x_val, d.x_val)
    other = idx_splits(12, 1, str(root), 100, 150, 40)
    assert not torch.equal(other.x_val, d.x_val)
    full = idx_splits(10, 0, str(root), 100, None, None)
    assert len(full.y_train) == 200 and len(full.y_test) == 50
    tr = {bytes(v.numpy()) for v in full.x_train.flatten(1)}
    assert not any(bytes(v.numpy()) in tr for v in full.x_val.flatten(1))


def test_idx_splits_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        idx_splits(12, 0, str(tmp_path / "none"))
    root = _mnist_like(tmp_path / "d")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz"):
        find_idx_files(root)
    root = _mnist_like(tmp_path / "e")
    with pytest.raises(ValueError, match="val_images must be in"):
        idx_splits(12, 0, str(root), 300)


def test_evaluator_data_option_is_strict():
    from hwaml_tinynas.evaluator import TinyNASDigits

    with pytest.raises(ValueError, match="data.dataset must be one of"):
        TinyNASDigits(data={"dataset": "cifar"})
    with pytest.raises(ValueError, match="needs data.root"):
        TinyNASDigits(data={"dataset": "idx"})
    with pytest.raises(Exception, match="rooot"):
        TinyNASDigits(data={"rooot": "/x"})


def test_evaluator_on_an_idx_folder_scores_and_deploys_its_data(tmp_path, make_evaluator):
    """evaluate ranks on the IDX validation split; build_model for a finished
    trial gives the IDX test split back from what the checkpoint recorded."""
    from hwaml import Candidate, Trial, TrialStatus
    from hwaml.testing import make_context

    root = _mnist_like(tmp_path / "data", n_train=260, n_test=30)
    ev = make_evaluator(data={"dataset": "idx", "root": str(root), "val_images": 60, "test_images": 20}, stage1={"widths": [0.5], "resolutions": [12], "samples_per_space": 2})
    ctx = make_context(tmp_path / "run", evaluator=ev)
    cand = Candidate(ctx.space.sample(ctx.rng)).with_number(0)
    res = ev.evaluate(cand, ctx)
    assert 0.0 <= res.metrics["accuracy"] <= 1.0
    trial = Trial(0, cand, TrialStatus.COMPLETE, dict(res.metrics), info={"artifacts": dict(res.artifacts)})
    built = ev.build_model(cand, trial, ctx)
    x, y = built.test_data
    assert x.shape == (20, 1, 12, 12) and len(y) == 20
    d = idx_splits(12, 0, str(root), 60, None, 20)
    assert torch.equal(x, d.x_test)


def test_reads_debians_fashion_mnist():
    assert Path(FASHION_MNIST_ROOT).is_dir(), "Debian's dataset-fashion-mnist is not installed: bash scripts/setup.sh (or apt-get install dataset-fashion-mnist)"
    files = find_idx_files(FASHION_MNIST_ROOT)
    x, y = read_labelled_pair(*files["train"])
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and y.shape == (60000,)
    assert np.bincount(y).tolist() == [6000] * 10
    xt, yt = read_labelled_pair(*files["test"])
    assert xt.shape == (10000, 28, 28) and np.bincount(yt).tolist() == [1000] * 10
    d = idx_splits(28, 0, FASHION_MNIST_ROOT, 5000, 2000, 500)
    assert len(d.y_val) == 5000 and len(d.y_train) == 2000 and len(d.y_test) == 500 and len(d.classes) == 10
