"""Shared fixtures: an untrained test_tiny supernet checkpoint (instant), small
evaluators, and a closed-form evaluator of the joint space for searcher tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwaml import BuiltModel, EvalResult, hookimpl
from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config

from hwaml_apq.network import build_untrained, quantize_subnet
from hwaml_apq.space import BIT_KEYS, joint_space, stage_blocks


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HWAML_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hwaml_cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """An untrained test_tiny supernet saved as ofa-nas saves trained ones."""
    from hwaml_ofa_nas.progressive_shrinking import save_supernet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("supernet") / "tiny.pt"
    save_supernet(OFAMobileNetV3("test_tiny"), path)
    return path


def small_evaluator(tiny_checkpoint, **kw):
    from hwaml_apq.evaluator import APQEvaluator

    args = dict(
        arch="test_tiny",
        data={"dataset": "digits", "train_limit": 96, "val_limit": 48},
        qat={"epochs": 1, "max_steps_per_epoch": 2, "batch_size": 16, "calibration_images": 32, "kl_bins": 64},
        checkpoint=str(tiny_checkpoint),
        train_if_missing=False,
        calibration_size=32,
        progress=False,
        name="apq_test",
    )
    args.update(kw)
    return APQEvaluator(**args)


@pytest.fixture
def make_evaluator(tiny_checkpoint):
    return lambda **kw: small_evaluator(tiny_checkpoint, **kw)


class SyntheticJointEvaluator:
    """The joint space of test_tiny with a closed-form accuracy that grows with
    widths, kernels and bits (fast); its networks are the untrained quantized ones."""

    default_objectives = {"accuracy": "max"}

    def __init__(self, arch="test_tiny"):
        from hwaml_apq.space import JointSpaceConfig

        self.arch = supernet_config(arch)
        self.space = joint_space(self.arch, JointSpaceConfig(depth_choices=[2, 3], width_high=5.0))
        self.res = self.space.meta["apq"]["resolution"]

    def accuracy(self, config):
        acc = 0.3
        for st in self.space.meta["apq"]["stages"]:
            for b in stage_blocks(config, st["name"]):
                acc += 0.002 * b["width"] / 8 + 0.005 * b["kernel"] + sum(0.004 * b[k] for k in BIT_KEYS)
        return float(min(acc, 0.99))

    @hookimpl
    def metric_names(self, ctx):
        return ["accuracy", "accuracy_fp32"]

    @hookimpl
    def search_space(self, ctx):
        return self.space

    @hookimpl
    def build_model(self, candidate, trial, ctx):
        net = quantize_subnet(build_untrained(self.arch, candidate.config, self.res), self.arch, inplace=True)
        return BuiltModel(net, (3, self.res, self.res), source="synthetic_joint")

    @hookimpl
    def evaluate(self, candidate, ctx):
        a = self.accuracy(candidate.config)
        return EvalResult({"accuracy": a, "accuracy_fp32": min(0.99, a + 0.05)})


@pytest.fixture
def synthetic_joint():
    return SyntheticJointEvaluator
