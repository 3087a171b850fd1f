"""Shared fixtures: a tiny IDX Fashion-MNIST folder, one thread, the cache in a temp dir."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    # never write pretrained backbones to the user's home cache
    monkeypatch.setenv("HWAML_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hwaml_cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory):
    """A Fashion-MNIST-shaped IDX folder (28x28 uint8, 10 classes) with class-dependent
    blobs so that a network can learn it in a few steps."""
    from hwaml_ofa_nas.idx import write_idx

    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 12)):
        y = np.repeat(np.arange(10, dtype=np.uint8), n)
        x = rng.integers(0, 40, size=(len(y), 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            r, col = divmod(int(c), 5)
            x[i, 4 + 10 * r : 12 + 10 * r, 2 + 5 * col : 6 + 5 * col] = 230
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    return str(root)


@pytest.fixture(scope="session")
def tiny_evaluator():
    """``tiny_evaluator(fashion_root, **overrides)``: an evaluator shrunk to seconds."""
    return _tiny_evaluator


def _tiny_evaluator(fashion_root, **kw):
    from hwaml_tinytl.evaluator import TinyTLEvaluator

    args = dict(
        target="fashion_5_9",
        method="tinytl_lb",
        arch="test",
        data={"root": fashion_root, "n_train": 6, "n_val": 4, "n_test": 4},
        pretrain={"n_train": 20, "n_val": 5, "epochs": 1, "batch_size": 32, "data_root": fashion_root},
        training={"epochs": 2, "lr": 3e-3},
        progress=False,
    )
    args.update(kw)
    return TinyTLEvaluator(**args)
