"""Export (ONNX checked with onnxruntime, state dict + config) and the deploy hook."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hwaml import BuiltModel, Candidate, Trial, TrialStatus
from hwaml.testing import make_context
from hwaml_ofa_nas.evaluator import OFAEvaluator
from hwaml_ofa_nas.export import export_onnx, load_subnet, save_subnet
from hwaml_ofa_nas.predictors import count_macs
from hwaml_ofa_nas.supernet import OFAMobileNetV3


def test_onnx_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    net = OFAMobileNetV3("test_tiny")
    net.eval()
    rng = np.random.default_rng(0)
    for i in range(2):
        cfg = net.sample_active_subnet(rng)
        sub = net.get_active_subnet().eval()
        info = export_onnx(sub, tmp_path / f"s{i}.onnx")
        assert info["max_abs_diff"] < 1e-4
        sess = ort.InferenceSession(info["path"], providers=["CPUExecutionProvider"])
        x = np.random.default_rng(i).standard_normal((3, 3, cfg["resolution"], cfg["resolution"])).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"input": x})[0], sub(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_state_dict_and_config_round_trip(tmp_path):
    net = OFAMobileNetV3("test_tiny")
    cfg = net.sample_active_subnet(np.random.default_rng(3))
    sub = net.get_active_subnet().eval()
    files = save_subnet(sub, tmp_path / "best", {"accuracy": 0.5})
    meta = json.loads(open(files["config"]).read())
    assert meta["config"] == cfg and meta["accuracy"] == 0.5
    again = load_subnet(tmp_path / "best")
    x = torch.randn(2, 3, cfg["resolution"], cfg["resolution"])
    with torch.no_grad():
        torch.testing.assert_close(again(x), sub(x))
    (tmp_path / "broken.json").write_text('{"config": {}\n,,}')
    with pytest.raises(ValueError, match=r"broken.json:2"):
        load_subnet(tmp_path / "broken")


def _evaluated_trial(ev, ctx, cfg, number=7):
    res = ev.evaluate(candidate=Candidate(cfg, number=number), ctx=ctx)
    return res, Trial(number, Candidate(cfg, number=number), TrialStatus.COMPLETE, dict(res.metrics), info={"artifacts": dict(res.artifacts)})


def test_evaluator_deploy_writes_checked_artefacts(trained_tiny, tmp_path):
    path, net, _ = trained_tiny
    ev = OFAEvaluator("test_tiny", checkpoint=str(path), train_if_missing=False, calibration_size=100, progress=False)
    ctx = make_context(tmp_path, evaluator=ev)
    cfg = ctx.space.sample(np.random.default_rng(5))
    res, trial = _evaluated_trial(ev, ctx, cfg)
    assert res.artifacts == {"supernet": str(path)}  # the trained weights travel through the trial
    dep = ev.deploy(trial=trial, ctx=ctx)
    assert dep.ok and dep.source == "ofa_digits" and dep.metrics["onnx_max_abs_diff"] < 1e-4
    # the extracted, recalibrated network scores what the supernet scored
    assert dep.metrics["accuracy"] == pytest.approx(res.metrics["accuracy"])
    for key in ("state_dict", "config", "onnx"):
        assert (tmp_path / "deploy").joinpath(dep.artifacts[key].split("/")[-1]).is_file()
    # a trial the evaluator never evaluated (infeasible) has no weights: nothing deployed, reason given
    bare = Trial(8, Candidate(cfg, number=8), TrialStatus.INFEASIBLE)
    refused = ev.deploy(trial=bare, ctx=ctx)
    assert not refused.ok and "no trained supernet" in refused.message and not refused.artifacts


def test_build_model_for_costing_and_for_a_trial(trained_tiny, tmp_path):
    path, _, _ = trained_tiny
    # costing needs no supernet: the checkpoint does not exist and nothing is trained
    cold = OFAEvaluator("test_tiny", checkpoint=str(tmp_path / "none.pt"), train_if_missing=False, progress=False)
    ctx = make_context(tmp_path)
    cfg = OFAMobileNetV3.space_for(cold.arch).sample(np.random.default_rng(2))
    built = cold.build_model(candidate=Candidate(cfg), trial=None, ctx=ctx)
    r = cfg["resolution"]
    assert isinstance(built, BuiltModel) and not built.trained and built.input_shape == (3, r, r)
    assert built.macs == count_macs(cold.arch, cfg) and built.calibration is None and built.test_data is None
    assert not built.module.training and cold._net is None and cold._data is None
    again = cold.build_model(candidate=Candidate(cfg), trial=None, ctx=ctx)
    for a, b in zip(built.module.state_dict().values(), again.module.state_dict().values()):
        assert torch.equal(a, b)  # the same candidate, the same (untrained) weights
    with pytest.raises(ValueError, match="no 'supernet' artifact"):
        cold.build_model(candidate=Candidate(cfg), trial=Trial(0, Candidate(cfg), TrialStatus.COMPLETE), ctx=ctx)
    # with a finished trial: the trained sub-network, recalibrated, with calibration and test data
    ev = OFAEvaluator("test_tiny", checkpoint=str(path), train_if_missing=False, calibration_size=60, progress=False)
    ctx = make_context(tmp_path / "run", evaluator=ev)
    res, trial = _evaluated_trial(ev, ctx, cfg)
    model = ctx.build_model(trial.candidate, trial)
    assert model.trained and model.source == "ofa_digits" and model.input_shape == (3, r, r)
    assert tuple(model.calibration.shape) == (60, 3, r, r)
    x, y = model.test_data
    assert tuple(x.shape) == (len(ev.data().val), 3, r, r) and len(y) == len(x)
    with torch.no_grad():
        acc = float((model.module(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(res.metrics["accuracy"])


class _Evil:
    """Unpickling this would run ``Path.touch`` (any callable could be there)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_pickles_are_refused(tmp_path):
    from hwaml_ofa_nas.predictors import load_accuracy_predictor
    from hwaml_ofa_nas.progressive_shrinking import load_supernet

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "arch": _Evil(marker)}, evil)
    with pytest.raises(ValueError, match="refused to load it as a supernet checkpoint"):
        load_supernet(evil)
    with pytest.raises(ValueError, match="refused to load it as an accuracy predictor"):
        load_accuracy_predictor(evil)
    net = OFAMobileNetV3("test_tiny")
    net.sample_active_subnet(np.random.default_rng(0))
    save_subnet(net.get_active_subnet(), tmp_path / "sub")
    torch.save(_Evil(marker), tmp_path / "sub.pt")
    with pytest.raises(ValueError, match="refused to load it as a sub-network state dict"):
        load_subnet(tmp_path / "sub")
    assert not marker.exists()


def test_missing_checkpoint_without_training_is_clear(tmp_path):
    ev = OFAEvaluator("test_tiny", checkpoint=str(tmp_path / "none.pt"), train_if_missing=False)
    with pytest.raises(FileNotFoundError, match="hwaml-ofa-nas train"):
        ev.search_space(ctx=make_context(tmp_path))
    with pytest.raises(ValueError, match="dataset"):
        OFAEvaluator(dataset="mnist")


def test_finetuning_reports_per_epoch_and_deploy_uses_the_finetuned_weights(trained_tiny, tmp_path):
    from dataclasses import replace

    from hwaml import TrialPruned
    from hwaml.pruning import Reporter

    path, _, _ = trained_tiny
    ev = OFAEvaluator("test_tiny", checkpoint=str(path), train_if_missing=False, calibration_size=100, progress=False, finetune_epochs=2, finetune_lr=0.02)
    ctx = make_context(tmp_path, evaluator=ev)
    cfg = ctx.space.sample(np.random.default_rng(2))
    rep = Reporter(3)
    res = ev.evaluate(candidate=Candidate(cfg, number=3), ctx=replace(ctx, report=rep.report, should_prune=rep.should_prune))
    assert [s for s, _ in rep.history] == [0, 1]
    assert rep.history[-1][1] == pytest.approx(res.metrics["accuracy"])
    assert set(res.artifacts) == {"supernet", "finetuned"}
    trial = Trial(3, Candidate(cfg, number=3), TrialStatus.COMPLETE, dict(res.metrics), info={"artifacts": dict(res.artifacts)})
    built = ev.build_model(candidate=trial.candidate, trial=trial, ctx=ctx)
    state = torch.load(res.artifacts["finetuned"], weights_only=True)
    for k, v in built.module.state_dict().items():
        torch.testing.assert_close(v, state[k])
    # the fine-tuned network, not the supernet's sub-network: their weights differ
    plain = OFAEvaluator("test_tiny", checkpoint=str(path), train_if_missing=False, calibration_size=100, progress=False)
    untuned = plain.build_model(candidate=trial.candidate, trial=Trial(3, trial.candidate, TrialStatus.COMPLETE, info={"artifacts": {"supernet": res.artifacts["supernet"]}}), ctx=ctx)
    assert any(not torch.equal(a, b) for a, b in zip(built.module.state_dict().values(), untuned.module.state_dict().values()) if a.is_floating_point())
    with pytest.raises(TrialPruned, match="epoch 0"):
        ev.evaluate(candidate=Candidate(cfg, number=4), ctx=replace(ctx, report=Reporter(4).report, should_prune=lambda: True))
    with pytest.raises(ValueError, match="finetune_epochs"):
        OFAEvaluator("test_tiny", finetune_epochs=-1)
