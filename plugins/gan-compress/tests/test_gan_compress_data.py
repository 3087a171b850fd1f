"""Data: the Fashion-MNIST tasks from the real IDX files, and the folder loaders."""

import gzip
import struct

import numpy as np
import pytest
import torch

from hwaml.config import ConfigError, as_config
from hwaml_gan_compress.data import DataConfig, DataError, edge_map, load_data, read_idx


def test_edge_map_marks_the_outline_of_a_square():
    img = np.zeros((1, 12, 12), np.uint8)
    img[0, 3:9, 3:9] = 255
    e = edge_map(img)[0]
    assert e[3, 5] == 1 and e[2, 5] == 1 and e[5, 5] == 0 and e[0, 0] == 0


def test_paired_fashion_task_pairs_edges_with_their_garments():
    d = load_data(DataConfig("fashion_edges", n_train=30, n_val=10, n_test=5))
    assert d.paired and d.train_a.shape == (30, 1, 28, 28) == d.train_b.shape and d.val_a.shape[0] == 10 and d.test_b.shape[0] == 5
    assert set(torch.unique(d.train_a).tolist()) <= {-1.0, 1.0}  # binary edge maps
    assert -1 <= float(d.train_b.min()) and float(d.train_b.max()) <= 1
    # A is the edge map of B (recomputed from B)
    again = edge_map(((d.val_b[:, 0].numpy() + 1) * 127.5).round().astype(np.uint8)) * 2 - 1
    assert np.array_equal(again, d.val_a[:, 0].numpy())


def test_paired_fashion_task_at_a_higher_resolution_by_config():
    small = load_data(DataConfig("fashion_edges", n_train=6, n_val=4, n_test=2))
    big = load_data(DataConfig("fashion_edges", n_train=6, n_val=4, n_test=2, image_size=64))
    assert big.train_a.shape == (6, 1, 64, 64) == big.train_b.shape
    # the same garments, upsampled: back at 28x28 they are the native images
    down = torch.nn.functional.interpolate(big.train_b, size=(28, 28), mode="bilinear", antialias=True)
    assert float((down - small.train_b).abs().mean()) < 0.1
    # edges are computed at 64x64 (thin outlines), not the 28x28 edge map enlarged
    again = edge_map(((big.val_b[:, 0].numpy() + 1) * 127.5).round().astype(np.uint8)) * 2 - 1
    assert np.array_equal(again, big.val_a[:, 0].numpy())
    assert float((big.train_a > 0).float().mean()) < 0.85 * float((small.train_a > 0).float().mean())


def test_unpaired_fashion_task_uses_two_classes():
    d = load_data(DataConfig("fashion_classes", classes=[7, 9], n_train=20, n_val=8, n_test=4))
    assert not d.paired and d.train_a.shape[0] == 20 and d.train_b.shape[0] == 20
    # sneakers are lower and flatter than ankle boots: less ink in the top half
    assert float((d.train_a[:, :, :14] > 0).float().mean()) < float((d.train_b[:, :, :14] > 0).float().mean())


def test_bad_config_and_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="n_trian"):
        as_config(DataConfig, {"n_trian": 3}, "data")
    with pytest.raises(DataError, match="needs data.root"):
        DataConfig("aligned_folder")
    with pytest.raises(DataError, match="multiple of 4"):
        DataConfig("fashion_edges", image_size=30)
    bad = tmp_path / "x-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 2, 2) + b"\x00" * 5))
    with pytest.raises(DataError, match="5 data bytes"):
        read_idx(bad)


def _write(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_aligned_folder_splits_each_image_into_a_and_b(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for i in range(n):
            a = np.zeros((10, 10, 3), np.uint8)
            b = np.full((10, 10, 3), 255, np.uint8)
            b[0, 0] = rng.integers(0, 255, 3)
            _write(tmp_path / split / f"{i}.png", np.concatenate([a, b], axis=1))
    d = load_data(DataConfig("aligned_folder", root=str(tmp_path), image_size=8, n_val=2, n_test=2, n_train=None))
    assert d.paired and d.train_a.shape == (4, 3, 8, 8) and d.val_a.shape[0] == 2 and d.test_a.shape[0] == 2
    assert float(d.train_a.max()) == -1.0 and float(d.train_b.mean()) > 0.9
    _write(tmp_path / "train" / "odd.png", np.zeros((10, 11, 3), np.uint8))
    with pytest.raises(DataError, match="not even"):
        load_data(DataConfig("aligned_folder", root=str(tmp_path), image_size=8, n_val=2))


def test_unaligned_folder_reads_two_domains(tmp_path):
    for dom, value, n in (("A", 0, 5), ("B", 255, 7)):
        for i in range(n):
            _write(tmp_path / f"train{dom}" / f"{i}.jpg", np.full((12, 12), value, np.uint8))
    d = load_data(DataConfig("unaligned_folder", root=str(tmp_path), image_size=8, channels=1, n_val=2, n_test=2))
    assert not d.paired and d.train_a.shape == (3, 1, 8, 8) and d.train_b.shape == (5, 1, 8, 8)
    assert float(d.train_a.mean()) < -0.9 and float(d.train_b.mean()) > 0.9
    with pytest.raises(DataError, match="no such folder"):
        load_data(DataConfig("unaligned_folder", root=str(tmp_path / "nope"), image_size=8))
