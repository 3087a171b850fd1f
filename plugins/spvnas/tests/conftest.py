"""Shared fixtures: one thread, tiny scans and a tiny evaluator config."""

from __future__ import annotations

import pytest
import torch

#: a tiny procedural set and space: seconds, not minutes (the real scale is the config's)
TINY_DATA = {"train_scans": 2, "val_scans": 1, "columns": 96, "voxel_size": 0.8, "seed": 0}
TINY_SPACE = {"width_multiplier": 0.125, "granularity": 4}
TINY_SUPERNET = {"epochs": 1, "batch_size": 2, "lr": 0.05, "warmup_epochs": 0.0, "bn_calibration_scans": 1}


def tiny_evaluator(checkpoint, **kw):
    from hwaml_spvnas.evaluator import SPVNASEvaluator

    args = dict(data=dict(TINY_DATA), space=dict(TINY_SPACE), supernet_training=dict(TINY_SUPERNET),
                training={"epochs": 0, "bn_calibration_scans": 1}, checkpoint=str(checkpoint), cost_scans=1, progress=False)
    args.update(kw)
    return SPVNASEvaluator(**args)


@pytest.fixture
def make_evaluator():
    """The factory of tiny evaluators (tests call it with a checkpoint path and overrides)."""
    return tiny_evaluator


@pytest.fixture
def tiny_settings():
    return {"data": dict(TINY_DATA), "space": dict(TINY_SPACE), "supernet_training": dict(TINY_SUPERNET)}


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def supernet_checkpoint(tmp_path_factory):
    """A tiny supernet trained once for the session."""
    path = tmp_path_factory.mktemp("spvnas") / "supernet.pt"
    ev = tiny_evaluator(path)
    ev.supernet()
    return path
