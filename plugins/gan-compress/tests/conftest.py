"""Shared fixtures: a tiny teacher and once-for-all generator trained once per session
on a few real Fashion-MNIST images (edge maps -> garments, and sneakers -> ankle boots)."""

from __future__ import annotations

import pytest
import torch

from hwaml_gan_compress.evaluator import GanCompressEvaluator

#: a FID feature net that trains in about a second (1000 real images, one epoch)
TINY_FEATURES = {"epochs": 1, "n_train": 1000, "n_eval": 500, "width": 8, "feature_dim": 8, "batch_size": 100}


def tiny_settings(source: str = "fashion_edges", **over):
    settings = {
        "data": {"source": source, "n_train": 48, "n_val": 40, "n_test": 16},
        "teacher": {"ngf": 4, "n_blocks": 3, "layers": ["model.9", "model.10", "model.12"]},
        "student": {"ngf": 4, "channels": "scaled:channels-64-pix2pix", "n_blocks": 3, "layers": ["model.9", "model.10", "model.12"]},
        "training": {"teacher_epochs": 1, "teacher_decay_epochs": 0, "supernet_epochs": 1, "supernet_decay_epochs": 1, "batch_size": 16, "ndf": 8, "n_layers_D": 2},
        "metric": {"training": TINY_FEATURES, "kid_subsets": 3},
        "latency_repeats": 3,
        "progress": False,
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return settings


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    # never write data, feature nets or generators to the user's home cache
    monkeypatch.setenv("HWAML_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hwaml_cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def paired_dir(tmp_path_factory):
    """A checkpoint folder holding a trained tiny paired teacher and supernet."""
    import os

    d = tmp_path_factory.mktemp("gan_paired")
    saved = os.environ.get("HWAML_CACHE_DIR")
    os.environ["HWAML_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "hwaml_cache")
    try:
        torch.set_num_threads(1)
        GanCompressEvaluator(**tiny_settings(), checkpoint_dir=str(d)).supernet()
    finally:
        if saved is None:
            os.environ.pop("HWAML_CACHE_DIR", None)
        else:
            os.environ["HWAML_CACHE_DIR"] = saved
    return d


@pytest.fixture
def paired_evaluator(paired_dir):
    return GanCompressEvaluator(**tiny_settings(), checkpoint_dir=str(paired_dir), train_if_missing=False)


@pytest.fixture
def tiny():
    """:func:`tiny_settings` for tests that build an evaluator of their own."""
    return tiny_settings


def as_overrides(settings, prefix="evaluator"):
    """``key=value`` Hydra overrides that set ``settings`` (nested dicts) under ``prefix``."""

    def value(v):
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ",".join(f"{k}:{value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, str):
            return repr(v)
        return str(v)

    out = []
    for key, v in settings.items():
        if isinstance(v, dict):
            out += as_overrides(v, f"{prefix}.{key}")
        else:
            out.append(f"{prefix}.{key}={value(v)}")
    return out


@pytest.fixture
def dotlist():
    """:func:`as_overrides` for tests (conftest modules are not importable by name here)."""
    return as_overrides


@pytest.fixture
def tiny_overrides(paired_dir, tmp_path_factory):
    """Overrides of ``evaluator=gan_paired`` to the session's tiny trained evaluator, and its cache folder."""
    over = as_overrides(tiny_settings())
    # metric.training is one value (a mapping), not keys to set one by one
    over = [o for o in over if not o.startswith("evaluator.metric.training.")] + [f"evaluator.metric.training={{{', '.join(f'{k}: {v}' for k, v in TINY_FEATURES.items())}}}"]
    return over + [f"evaluator.checkpoint_dir={paired_dir}"], str(tmp_path_factory.getbasetemp() / "hwaml_cache")
