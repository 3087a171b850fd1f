"""Data loaders: digits, ImageFolder (PNG files) and CIFAR-10 binary batches."""

import numpy as np
import pytest
import torch
from PIL import Image

from hwaml_ofa_nas.data import DataError, load_cifar10_binary, load_dataset, load_digits_dataset, load_image_folder, read_cifar10_batch


def test_digits_are_upsampled_rgb_and_stratified():
    d = load_digits_dataset(24, 0.25, 0)
    x, y = d.train[0]
    assert x.shape == (3, 24, 24) and isinstance(int(y), int)
    assert len(d.train) + len(d.val) == 1797 and abs(len(d.val) - 0.25 * 1797) < 2
    val_labels = torch.stack([d.val[i][1] for i in range(len(d.val))])
    assert torch.bincount(val_labels).min() >= 40


def _write_folder(root, classes, per_class, size=(20, 14)):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((size[1], size[0], 3), 40 * c, dtype=np.uint8) + rng.integers(0, 10, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")


def test_image_folder_split_and_train_val_layout(tmp_path):
    _write_folder(tmp_path / "flat", ["cat", "dog", "eel"], 5)
    d = load_image_folder(tmp_path / "flat", image_size=16, val_fraction=0.2)
    assert d.classes == ["cat", "dog", "eel"] and d.n_classes == 3
    assert len(d.train) + len(d.val) == 15 and len(d.val) == 3
    x, y = d.train[0]
    assert x.shape == (3, 16, 16) and y in (0, 1, 2)
    _write_folder(tmp_path / "tv" / "train", ["a", "b"], 3)
    _write_folder(tmp_path / "tv" / "val", ["a", "b"], 2)
    d2 = load_dataset("imagefolder", str(tmp_path / "tv"), 8)
    assert len(d2.train) == 6 and len(d2.val) == 4
    # images of class b are brighter than class a after normalisation
    xa = torch.stack([d2.val[i][0] for i in range(len(d2.val)) if d2.val[i][1] == 0])
    xb = torch.stack([d2.val[i][0] for i in range(len(d2.val)) if d2.val[i][1] == 1])
    assert xb.mean() > xa.mean()


def test_image_folder_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no class sub-directories"):
        (tmp_path / "empty").mkdir()
        load_image_folder(tmp_path / "empty")
    _write_folder(tmp_path / "broken", ["a"], 2)
    (tmp_path / "broken" / "a" / "zz.png").write_bytes(b"not a png")
    d = load_image_folder(tmp_path / "broken", 8, val_fraction=0.34)
    with pytest.raises(DataError, match="zz.png"):
        for i in range(len(d.train)):
            d.train[i]
        for i in range(len(d.val)):
            d.val[i]


def _cifar_batch(path, labels, rng):
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)], axis=1)
    records.tofile(path)
    return records


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    rec = _cifar_batch(root / "data_batch_1.bin", [0, 1, 2, 3], rng)
    _cifar_batch(root / "data_batch_2.bin", [4, 5], rng)
    _cifar_batch(root / "test_batch.bin", [9, 8, 7], rng)
    (root / "batches.meta.txt").write_text("airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n")
    images, labels = read_cifar10_batch(root / "data_batch_1.bin")
    assert images.shape == (4, 3, 32, 32) and labels.tolist() == [0, 1, 2, 3]
    assert images[1, 2, 0, 5] == rec[1, 1 + 2 * 1024 + 5]  # blue plane, row 0, column 5
    d = load_cifar10_binary(tmp_path, image_size=16)
    assert len(d.train) == 6 and len(d.val) == 3 and d.classes[9] == "truck"
    assert d.train[0][0].shape == (3, 16, 16) and int(d.val[0][1]) == 9
    (root / "data_batch_3.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="data_batch_3.bin"):
        load_cifar10_binary(root)
    (root / "data_batch_3.bin").unlink()
    _cifar_batch(root / "data_batch_3.bin", [12], rng)
    with pytest.raises(DataError, match="label 12"):
        load_cifar10_binary(root)


def test_unknown_dataset_and_missing_root():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="data_root"):
        load_dataset("cifar10")


def test_an_idx_folder_is_split_stratified_and_capped(tmp_path):
    from hwaml_ofa_nas.idx import write_idx

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4, dtype=np.uint8), 50)
    images = (rng.integers(0, 50, (200, 12, 12)) + labels[:, None, None] * 50).astype(np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:10])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:10])
    d = load_dataset("idx", str(tmp_path), 16, 0.25, 0)
    assert d.n_classes == 4 and len(d.val) == 50 and len(d.train) == 150
    x, _ = d.train[0]
    assert x.shape == (3, 16, 16)
    assert torch.bincount(torch.stack([d.val[i][1] for i in range(50)])).min() >= 12  # stratified
    capped = load_dataset("idx", str(tmp_path), 16, 0.25, 0, train_images=40)
    assert len(capped.train) == 40 and len(capped.val) == 50
    # the brighter a class, the larger its mean pixel: images and labels stay paired
    means = [float(torch.stack([d.train[i][0] for i in range(150) if int(d.train[i][1]) == c]).mean()) for c in range(4)]
    assert means == sorted(means)
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        (tmp_path / "t10k-labels-idx1-ubyte").unlink()
        load_dataset("idx", str(tmp_path), 16)
    with pytest.raises(ValueError, match="data_root"):
        load_dataset("idx")


def test_fashion_mnist_from_the_debian_package():
    d = load_dataset("fashion_mnist", None, 28, 0.1, 0, train_images=500)
    assert d.n_classes == 10 and d.classes[9] == "ankle boot"
    assert len(d.val) == 6000 and len(d.train) == 500
