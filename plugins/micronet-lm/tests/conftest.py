"""Tiny settings that keep the suite fast: the pydoc topics corpus, one-layer models."""

from __future__ import annotations

import pytest
import torch

#: a model and stages small enough for seconds on one core
TINY_MODEL = {"n_head": 2, "d_head": 8, "d_inner": 64, "seq_len": 16, "mem_len": 16, "n_cache": 32, "bin_widths": [32, 8, 2]}
TINY_STAGE = {"epochs": 1, "batch_size": 8, "lr": 0.003, "warmup_steps": 2, "max_train_tokens": 3000}
TINY_SPACE = {
    "n_layers": [1],
    "d_model": [32],
    "cutoffs": ["300,1200", "none"],
    "sparsity": [0.0, 0.5],
    "bits": [0, 9],
    "cache": [True, False],
    "hebbian": [True, False],
    "distill": [False],
}


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tokens"))


def tiny_evaluator(cache_dir: str, **kw):
    from hwaml_micronet_lm.evaluator import MicroNetEvaluator

    args = dict(
        data={"kind": "pydoc_topics", "cache_dir": cache_dir},
        model=dict(TINY_MODEL),
        space=dict(TINY_SPACE),
        stages={"train": dict(TINY_STAGE), "prune": dict(TINY_STAGE, max_train_tokens=1500), "quantize": dict(TINY_STAGE, max_train_tokens=1000), "max_eval_tokens": 600, "max_test_tokens": 600},
        progress=False,
        threads=1,
    )
    args.update(kw)
    return MicroNetEvaluator(**args)


class _Tiny:
    model = TINY_MODEL
    stage = TINY_STAGE
    space = TINY_SPACE

    def __init__(self, cache_dir: str):
        self.cache_dir = cache_dir

    def evaluator(self, **kw):
        return tiny_evaluator(self.cache_dir, **kw)


@pytest.fixture
def tiny(token_cache):
    """The tiny settings and an evaluator factory: ``tiny.evaluator(**overrides)``."""
    return _Tiny(token_cache)
