import numpy as np
import pytest
import torch
from PIL import Image

from hwaml_tinytl.data import load_imagefolder, load_target, render_letters


def test_fashion_classes_from_an_idx_folder(fashion_root):
    src = load_target("fashion_0_4", 16, 1, n_train=5, n_val=3, n_test=4, root=fashion_root)
    tgt = load_target("fashion_5_9", 16, 1, n_train=5, n_val=3, n_test=4, root=fashion_root)
    assert src.n_classes == tgt.n_classes == 5
    assert (len(src.train), len(src.val), len(src.test)) == (25, 15, 20)
    assert src.train.x.shape == (25, 1, 16, 16) and set(tgt.train.y.tolist()) == set(range(5))
    assert tgt.classes[0] == "Sandal" and src.classes[0] == "T-shirt"
    with pytest.raises(ValueError, match="requested"):
        load_target("fashion_5_9", 16, 1, n_train=100, n_val=3, root=fashion_root)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_target("fashion_5_9", 16, 1, root="/nonexistent")


def test_digits_and_letters():
    d = load_target("digits", 16, 1, n_train=5, n_val=3)
    assert d.n_classes == 10 and len(d.train) == 50 and d.train.x.shape[1:] == (1, 16, 16)
    x, y = render_letters(2, 16, seed=0)
    assert x.shape == (20, 1, 16, 16) and y.tolist() == sorted(y.tolist())
    assert float(x.max()) > 0.5  # glyphs are drawn
    a = load_target("letters", 16, 3, n_train=3, n_val=2, n_test=2)
    assert a.train.x.shape[1] == 3 and len(a.test) == 20


def _write_folder(root, classes, n, size=10):
    rng = np.random.default_rng(0)
    for i, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for j in range(n):
            arr = (rng.random((size, size, 3)) * 50 + 200 * (i % 2)).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{j}.png")


def test_imagefolder_loader(tmp_path):
    _write_folder(tmp_path / "pets", ["cat", "dog", "fish"], 5)
    d = load_imagefolder(str(tmp_path / "pets"), n_train=2, n_val=1, resolution=12, channels=3, seed=0)
    assert d.classes == ["cat", "dog", "fish"] and d.n_classes == 3
    assert d.train.x.shape == (6, 3, 12, 12) and len(d.val) == 3 and len(d.test) == 6
    # train/ + val/ layout
    _write_folder(tmp_path / "flowers" / "train", ["a", "b"], 3)
    _write_folder(tmp_path / "flowers" / "val", ["a", "b"], 2)
    f = load_target("imagefolder", 8, 1, root=str(tmp_path / "flowers"))
    assert len(f.train) == 6 and len(f.val) == 4 and f.train.x.shape[1] == 1
    (tmp_path / "bad" / "x").mkdir(parents=True)
    (tmp_path / "bad" / "x" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_imagefolder(str(tmp_path / "bad"), None, 0, 8, 1, 0)
    with pytest.raises(ValueError, match="data.root"):
        load_target("imagefolder", 8, 1)

