"""The tinyengine_digits evaluator: hook contract, build_model (untrained for
costing, the trial's checkpoint for deploy) and safe checkpoint loading."""

import json
import os
import pickle

import pytest
import torch

from hwaml import BuiltModel, Candidate, Trial, TrialStatus
from hwaml.testing import EvaluatorContract, make_context
from hwaml_tinyengine.checkpoint import CheckpointError, load_checkpoint
from hwaml_tinyengine.engine import plan_model
from hwaml_tinyengine.evaluator import METRICS, TinyEngineDigits

CFG = {"resolution": 16, "width": 0.5, "blocks": [{"kernel": 3, "expand": 3}] * 4}


def tiny(**kw):
    args = dict(epochs=1, resolutions=[16], widths=[0.5], kernels=[3], expands=[3], depths=[4], calib_samples=32)
    args.update(kw)
    return TinyEngineDigits(**args)


class TestEvaluatorContract(EvaluatorContract):
    n_candidates = 1

    @pytest.fixture
    def evaluator(self):
        return tiny(save_checkpoints=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One evaluated trial with its checkpoint."""
    run = tmp_path_factory.mktemp("run")
    ev = tiny()
    ctx = make_context(run, evaluator=ev)
    res = ev.evaluate(candidate=Candidate(CFG, number=2), ctx=ctx)
    trial = Trial(2, Candidate(CFG, number=2), TrialStatus.COMPLETE, metrics=dict(res.metrics), info={"artifacts": dict(res.artifacts)})
    return ev, ctx, trial


def test_build_model_for_costing_is_untrained_with_the_evaluators_macs(tmp_path):
    ev = tiny()
    ctx = make_context(tmp_path, evaluator=ev)
    m = ev.build_model(candidate=Candidate(CFG), trial=None, ctx=ctx)
    assert isinstance(m, BuiltModel) and m.trained is False and m.calibration is None and m.test_data is None
    assert m.input_shape == (1, 16, 16) and not m.module.training and m.source == "tinyengine_digits"
    assert m.macs == plan_model(m.module, m.input_shape).base_macs  # its own count agrees with TinyEngine's IR
    again = ev.build_model(candidate=Candidate(CFG), trial=None, ctx=ctx)
    for a, b in zip(m.module.state_dict().values(), again.module.state_dict().values()):
        assert torch.equal(a, b)  # deterministic, and the global RNG is left alone
    assert set(ev.metric_names(ctx=ctx)) == set(METRICS)


def test_checkpoint_is_tensors_plus_json_listed_in_the_artifacts(trained):
    ev, ctx, trial = trained
    assert set(trial.artifacts) == {"checkpoint", "checkpoint_meta"}
    meta = json.loads(open(trial.artifacts["checkpoint_meta"]).read())
    assert meta["config"] == CFG and meta["float_accuracy"] == pytest.approx(trial.metrics["float_accuracy"])
    tensors, meta2 = load_checkpoint(trial.artifacts["checkpoint"])
    assert meta2 == meta and set(tensors) == {"state_dict", "calib", "x_test", "y_test"}


def test_build_model_with_the_trial_loads_its_trained_weights(trained):
    ev, ctx, trial = trained
    m = ctx.build_model(trial.candidate, trial)
    assert m.trained is True and m.calibration.shape == (32, 1, 16, 16)
    x, y = m.test_data
    with torch.no_grad():
        acc = float((m.module(x).argmax(1) == y).double().mean())
    assert acc == pytest.approx(trial.metrics["float_accuracy"])


def test_build_model_without_a_listed_checkpoint_is_untrained_with_the_reason(trained):
    ev, ctx, trial = trained
    bare = Trial(5, trial.candidate, TrialStatus.COMPLETE, info={})
    m = ev.build_model(candidate=bare.candidate, trial=bare, ctx=ctx)
    assert m.trained is False and "trial 5 lists no checkpoint" in m.info["untrained_reason"]


def test_a_listed_checkpoint_that_is_missing_or_of_another_config_is_an_error(trained, tmp_path):
    ev, ctx, trial = trained
    gone = Trial(6, trial.candidate, TrialStatus.COMPLETE, info={"artifacts": {"checkpoint": str(tmp_path / "nope.pt")}})
    with pytest.raises(CheckpointError, match=r"trial 6: checkpoint .*nope.pt does not exist"):
        ev.build_model(candidate=gone.candidate, trial=gone, ctx=ctx)
    other = dict(CFG, width=0.75)
    wrong = Trial(7, Candidate(other, number=7), TrialStatus.COMPLETE, info={"artifacts": dict(trial.artifacts)})
    with pytest.raises(CheckpointError, match="trial 7: checkpoint .* is of config"):
        ev.build_model(candidate=wrong.candidate, trial=wrong, ctx=ctx)


class Payload:
    """What a malicious checkpoint would hold: unpickling it runs a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_crafted_pickle_checkpoint_is_refused_and_never_run(trained, tmp_path, writer):
    ev, ctx, trial = trained
    marker = tmp_path / "pwned"
    evil = tmp_path / "trial_9.pt"
    payload = {"state_dict": {"w": Payload(marker)}, "calib": torch.zeros(1), "x_test": torch.zeros(1), "y_test": torch.zeros(1)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        with open(evil, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    (tmp_path / "trial_9.json").write_text(open(trial.artifacts["checkpoint_meta"]).read())
    t = Trial(9, trial.candidate, TrialStatus.COMPLETE, info={"artifacts": {"checkpoint": str(evil)}})
    with pytest.raises(CheckpointError, match=r"trial 9: checkpoint .*trial_9.pt is not a plain tensor checkpoint; refused to unpickle it"):
        ev.build_model(candidate=t.candidate, trial=t, ctx=ctx)
    assert not marker.exists(), "the crafted pickle ran code"
