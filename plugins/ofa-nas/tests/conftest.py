"""Shared fixtures: a tiny supernet trained for one epoch per phase (once per session)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwaml import BuiltModel, EvalResult, SearchSpace, hookimpl
from hwaml_ofa_nas.data import load_digits_dataset
from hwaml_ofa_nas.predictors import count_macs
from hwaml_ofa_nas.progressive_shrinking import train_supernet
from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config

TINY_EPOCHS = {"full": 3, "kernel": 1, "depth": 1, "expand": 1}
TINY_LRS = {"full": 0.3, "kernel": 0.1, "depth": 0.1, "expand": 0.1}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    # never write supernets or latency tables to the user's home cache
    monkeypatch.setenv("HWAML_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hwaml_cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def digits16():
    return load_digits_dataset(16, 0.2, 0)


@pytest.fixture(scope="session")
def digits16_small(digits16):
    from torch.utils.data import Subset

    from hwaml_ofa_nas.data import DataSplits

    return DataSplits(Subset(digits16.train, range(480)), Subset(digits16.val, range(200)), 10, digits16.classes, 16)


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory, digits16_small):
    """(checkpoint path, supernet, report) of test_tiny after three epochs of the full phase and one per later phase,
    on 480 digits."""
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("supernet") / "tiny.pt"
    net, report = train_supernet("test_tiny", data=digits16_small, epochs=TINY_EPOCHS, lrs=TINY_LRS, checkpoint=str(path), progress=False, calibration_size=200, batch_size=32)
    return path, net, report


def synthetic_accuracy(arch, config) -> float:
    """A smooth accuracy stand-in that grows with log-MACs (for searcher tests)."""
    return float(0.5 + 0.05 * math.log(count_macs(arch, config)))


class SyntheticOFAEvaluator:
    """The OFA space of a supernet shape with a closed-form 'accuracy' (fast);
    its networks are the untrained static sub-networks."""

    def __init__(self, arch="test_tiny"):
        self.arch = supernet_config(arch)

    @hookimpl
    def metric_names(self, ctx):
        return ["accuracy"]

    @hookimpl
    def search_space(self, ctx) -> SearchSpace:
        return OFAMobileNetV3.space_for(self.arch)

    @hookimpl
    def build_model(self, candidate, trial, ctx) -> BuiltModel:
        from hwaml_ofa_nas.supernet import build_subnet

        r = int(candidate.config["resolution"])
        return BuiltModel(build_subnet(self.arch, candidate.config).eval(), (3, r, r), macs=float(count_macs(self.arch, candidate.config)), source="synthetic")

    @hookimpl
    def evaluate(self, candidate, ctx) -> EvalResult:
        return EvalResult({"accuracy": synthetic_accuracy(self.arch, candidate.config)})


@pytest.fixture
def accuracy_fn():
    return synthetic_accuracy


@pytest.fixture
def synthetic_evaluator():
    return SyntheticOFAEvaluator
