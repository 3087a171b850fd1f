"""Shared fixtures: tiny TinyNAS settings that keep the suite fast."""

from __future__ import annotations

import pytest
import torch

#: one epoch per progressive-shrinking phase
TINY_EPOCHS = {"full": 2, "kernel": 1, "depth": 1, "expand": 1}
TINY_LRS = {"full": 0.2, "kernel": 0.05, "depth": 0.05, "expand": 0.05}
TINY_STAGE1 = {"widths": [0.5, 1.0], "resolutions": [12, 16], "samples_per_space": 3}


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def tiny_evaluator(**kw):
    from hwaml_tinynas.evaluator import TinyNASDigits

    args = dict(
        base_arch="mcunet_test",
        device="mcu64k",
        stage1=dict(TINY_STAGE1),
        training={"epochs": TINY_EPOCHS, "lrs": TINY_LRS, "calibration_size": 100},
        progress=False,
    )
    args.update(kw)
    return TinyNASDigits(**args)


@pytest.fixture(scope="session")
def make_evaluator():
    """A factory of tiny ``TinyNASDigits`` evaluators (keyword overrides)."""
    return tiny_evaluator


@pytest.fixture(scope="session")
def prepared_run(tmp_path_factory):
    """A run directory where search_space() has run stage 1 and trained the
    supernet (once per session); ``ctx`` is wired as a run's (``ctx.space``,
    ``ctx.build_model``)."""
    from hwaml.testing import make_context

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("tinynas_run")
    ev = tiny_evaluator()
    ctx = make_context(run_dir, evaluator=ev)
    return ev, ctx, ctx.space
