"""The evaluator through the core's contracts: space, evaluate, build_model, deploy,
fine-tuning with the pruning API, and a third-party teacher by configuration alone."""

import dataclasses
import json
import sys
import textwrap

import numpy as np
import pytest
import torch

from hwaml import Candidate, Trial, TrialPruned, TrialStatus
from hwaml.testing import EvaluatorContract, make_context
from hwaml_gan_compress.evaluator import FINETUNED_ARTIFACT, SUPERNET_ARTIFACT, GanCompressEvaluator
from hwaml_gan_compress.generators import CHANNEL_KEYS, ChannelConfig, MobileResnetGenerator
from hwaml_gan_compress.macs import count_module_macs


class TestPairedEvaluatorContract(EvaluatorContract):
    @pytest.fixture
    def evaluator(self, paired_evaluator):
        return paired_evaluator


def _trial(ev, config, ctx, number=0):
    res = ev.evaluate(candidate=Candidate(config, number=number), ctx=ctx)
    return Trial(number, Candidate(config, number=number), TrialStatus.COMPLETE, dict(res.metrics), info={"artifacts": dict(res.artifacts)}), res


def test_space_is_the_8_channel_numbers_and_training_logged_largest_and_smallest(paired_evaluator):
    space = paired_evaluator.space()
    assert [d.name for d in space.dims] == list(CHANNEL_KEYS)
    assert space.meta["channel_choices"][0] == [4, 3, 2, 1]
    history = paired_evaluator.supernet().history
    assert len(history) == 2 and all(np.isfinite(r["fid_largest"]) and np.isfinite(r["fid_smallest"]) for r in history)
    assert all(r["G_distill"] > 0 for r in history)


def test_evaluate_scores_a_sub_generator_without_retraining(paired_evaluator, tmp_path):
    ctx = make_context(tmp_path, objectives={"fid": "min"})
    big = ChannelConfig.uniform(4).to_dict()
    trial, res = _trial(paired_evaluator, big, ctx)
    assert set(res.metrics) == {"fid", "kid", "psnr", "l1"} and res.metrics["fid"] > 0
    assert res.info["config_str"] == "4_4_4_4_4_4_4_4" and res.info["fid_real_halves"] > 0
    assert res.artifacts[SUPERNET_ARTIFACT] == str(paired_evaluator.supernet_path)
    # the same candidate twice: the same numbers (no training happens in evaluate)
    again = paired_evaluator.evaluate(candidate=Candidate(big, number=1), ctx=ctx)
    assert again.metrics == res.metrics


def test_build_model_costing_and_trained(paired_evaluator, tmp_path):
    ctx = make_context(tmp_path)
    config = {k: v for k, v in zip(CHANNEL_KEYS, [4, 3, 2, 1, 2, 3, 4, 1])}
    costing = paired_evaluator.build_model(candidate=Candidate(config), trial=None, ctx=ctx)
    assert not costing.trained and costing.input_shape == (1, 28, 28)
    assert costing.macs == count_module_macs(costing.module, costing.input_shape)
    trial, _ = _trial(paired_evaluator, config, ctx)
    built = paired_evaluator.build_model(candidate=trial.candidate, trial=trial, ctx=ctx)
    assert built.trained and isinstance(built.module, MobileResnetGenerator) and built.macs == costing.macs
    ref = paired_evaluator.subgenerator(config)
    x = built.test_data[0][:3]
    with torch.no_grad():
        assert torch.allclose(built.module(x), ref(x))
    stranger = Trial(5, Candidate(config), TrialStatus.COMPLETE, {}, info={"artifacts": {"other": "x"}})
    with pytest.raises(ValueError, match="not evaluated by"):
        paired_evaluator.build_model(candidate=stranger.candidate, trial=stranger, ctx=ctx)


def test_deploy_writes_checked_onnx_latency_and_an_image_grid(paired_evaluator, tmp_path):
    ctx = make_context(tmp_path)
    trial, _ = _trial(paired_evaluator, ChannelConfig.uniform(2).to_dict(), ctx)
    res = paired_evaluator.deploy(trial=trial, ctx=ctx)
    assert res.ok and res.source == "gan_compress"
    assert res.metrics["onnx_max_abs_diff"] < 1e-4 and res.metrics["latency_ms"] > 0 and res.metrics["teacher_latency_ms"] > 0
    assert res.metrics["macs_reduction"] > 1 and np.isfinite(res.metrics["teacher_fid"])
    from PIL import Image

    with Image.open(res.artifacts["grid"]) as im:
        assert im.size == (2 * 28 * 8, 2 * 28 * 4)  # inputs / teacher / student / ground truth, 8 columns
    import onnxruntime as ort

    sess = ort.InferenceSession(res.artifacts["onnx"], providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((2, 1, 28, 28), np.float32)})[0].shape == (2, 1, 28, 28)
    nothing = Trial(1, trial.candidate, TrialStatus.COMPLETE, {}, info={})
    assert not paired_evaluator.deploy(trial=nothing, ctx=ctx).ok


def test_finetune_reports_each_epoch_and_stops_when_the_pruner_says_so(paired_dir, tmp_path, tiny):
    ev = GanCompressEvaluator(**tiny(finetune={"epochs": 1, "decay_epochs": 1}), checkpoint_dir=str(paired_dir), train_if_missing=False)
    reported = []
    ctx = dataclasses.replace(make_context(tmp_path), report=lambda step, value: reported.append((step, value)))
    config = ChannelConfig.uniform(2).to_dict()
    res = ev.evaluate(candidate=Candidate(config, number=3), ctx=ctx)
    assert [s for s, _ in reported] == [0, 1] and reported[-1][1] == pytest.approx(res.metrics["fid"])
    trial = Trial(3, Candidate(config, number=3), TrialStatus.COMPLETE, dict(res.metrics), info={"artifacts": dict(res.artifacts)})
    built = ev.build_model(candidate=trial.candidate, trial=trial, ctx=ctx)
    assert built.info["weights"] == res.artifacts[FINETUNED_ARTIFACT]
    assert not torch.equal(built.module.model[1].weight, ev.subgenerator(config).model[1].weight)  # fine-tuned weights
    pruning = dataclasses.replace(make_context(tmp_path), should_prune=lambda: True)
    with pytest.raises(TrialPruned, match="epoch 0"):
        ev.evaluate(candidate=Candidate(config, number=4), ctx=pruning)


def test_a_third_party_teacher_is_compressed_by_configuration_alone(tmp_path, monkeypatch, tiny, dotlist):
    """Someone's own generator class, named only in the preset's config (the keys of
    ``hwaml run evaluator=gan_paired evaluator.teacher.arch=...``): trained as the teacher,
    distilled at its own layer names, searched and deployed, with no code of this plugin changed."""
    from hwaml_gan_compress.cli import load_preset

    pkg = tmp_path / "thirdparty"
    pkg.mkdir()
    (pkg / "my_generators.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class TinyUNetish(nn.Module):
            """Someone else's generator: its own layer names, no residual trunk."""
            def __init__(self, input_nc, output_nc, width=6):
                super().__init__()
                self.encoder = nn.Sequential(nn.Conv2d(input_nc, width, 3, padding=1), nn.ReLU(),
                                             nn.Conv2d(width, width * 2, 4, stride=4), nn.ReLU())
                self.middle = nn.Conv2d(width * 2, width * 2, 3, padding=1)
                self.decoder = nn.Sequential(nn.ConvTranspose2d(width * 2, width, 4, stride=4), nn.ReLU(),
                                             nn.Conv2d(width, output_nc, 3, padding=1), nn.Tanh())
            def forward(self, x):
                return self.decoder(torch.relu(self.middle(self.encoder(x))))
    '''))
    monkeypatch.syspath_prepend(str(pkg))
    settings = tiny(student={"layers": ["model.9", "model.12"]}, checkpoint_dir=str(tmp_path / "ckpt"))
    over = [o.split(".", 1)[1] for o in dotlist(settings) if not o.startswith("evaluator.metric.training.")]
    over += ["metric.training={" + ",".join(f"{k}: {v}" for k, v in settings["metric"]["training"].items()) + "}"]
    over += ["teacher.arch=my_generators.TinyUNetish", "teacher.kwargs.width=6", "teacher.layers=[encoder,middle]"]
    ev = load_preset("gan_paired", over)
    state = ev.supernet()
    assert type(ev.teacher().G).__module__ == "my_generators" and ev.teacher().G.middle.out_channels == 12
    assert [a.out_channels for a in state.distiller.adapters] == [12, 12]  # the custom teacher's feature widths
    assert [a.in_channels for a in state.distiller.adapters] == [16, 16]  # the student's trunk (4 x ngf)
    assert all(r["G_distill"] > 0 for r in state.history)  # its features were distilled
    ctx = make_context(tmp_path / "run")
    trial, res = _trial(ev, ChannelConfig.uniform(1).to_dict(), ctx)
    assert np.isfinite(res.metrics["fid"])
    dep = ev.deploy(trial=trial, ctx=ctx)
    assert dep.ok and dep.metrics["teacher_macs_m"] == pytest.approx(count_module_macs(ev.teacher().G, (1, 28, 28)) / 1e6)
    assert dep.metrics["onnx_max_abs_diff"] < 1e-4 and dep.metrics["teacher_latency_ms"] > 0
    bad = GanCompressEvaluator(**tiny(teacher={"arch": "my_generators.TinyUNetish", "layers": ["encoder", "nope"]}, student={"layers": ["model.9", "model.12"]}), checkpoint_dir=str(tmp_path / "c2"))
    with pytest.raises(ValueError, match="nope"):
        bad.supernet()


def test_unpaired_task_trains_a_cyclegan_teacher_and_distills_from_its_outputs(tmp_path, tiny):
    ev = GanCompressEvaluator(**tiny("fashion_classes", training={"supernet_decay_epochs": 0}), checkpoint_dir=str(tmp_path))
    teacher = ev.teacher()
    assert teacher.G_reverse is not None and "cycle" in teacher.history[0]
    assert ev.metric_names(ctx=None) == ["fid", "kid"]
    res = ev.evaluate(candidate=Candidate(ChannelConfig.uniform(3).to_dict(), number=0), ctx=make_context(tmp_path / "run"))
    assert set(res.metrics) == {"fid", "kid"}
    # the checkpoint reloads into the same sub-generator
    again = GanCompressEvaluator(**tiny("fashion_classes", training={"supernet_decay_epochs": 0}), checkpoint_dir=str(tmp_path), train_if_missing=False)
    x = ev.data().val_a[:2]
    with torch.no_grad():
        assert torch.allclose(again.subgenerator(ChannelConfig.uniform(3))(x), ev.subgenerator(ChannelConfig.uniform(3))(x))


def test_bad_keys_are_named():
    from hwaml.config import ConfigError

    with pytest.raises(ConfigError, match="training.lamda_gan"):
        GanCompressEvaluator(training={"lamda_gan": 1.0})
    with pytest.raises(ValueError, match="exceeds"):
        GanCompressEvaluator(student={"ngf": 8, "channels": "channels-32"})


def test_once_for_all_training_continues_from_a_checkpoint(paired_evaluator, tmp_path, tiny):
    start = paired_evaluator.supernet_path
    ev = GanCompressEvaluator(**tiny(student={"init": str(start)}, training={"supernet_epochs": 1, "supernet_decay_epochs": 0}), checkpoint_dir=str(tmp_path))
    assert ev.supernet_path != start and ev.teacher_path.name == paired_evaluator.teacher_path.name
    import shutil

    shutil.copy(paired_evaluator.teacher_path, ev.teacher_path)  # the same teacher: no retraining
    shutil.copy(paired_evaluator.teacher_path.with_suffix(".json"), ev.teacher_path.with_suffix(".json"))
    state = ev.supernet()
    assert len(state.history) == len(paired_evaluator.supernet().history) + 1
    before = paired_evaluator.supernet().supernet.model[1].weight
    assert not torch.equal(state.supernet.model[1].weight, before)


def test_teacher_outputs_computed_once_train_the_same_once_for_all_generator(paired_evaluator, tmp_path, tiny):
    from hwaml_gan_compress.training import TeacherCache, TrainingConfig, train_supernet

    ev = paired_evaluator
    data, teacher = ev.data(), ev.teacher()
    runs = []
    for mb in (1024, 0):
        cfg = TrainingConfig(**{**ev.training.__dict__, "cache_teacher_mb": mb, "supernet_epochs": 1, "supernet_decay_epochs": 0})
        runs.append(train_supernet(data, teacher, ev.teacher_cfg, ev.student_cfg, cfg, seed=3, progress_bar=False))
    for (name, p), q in zip(runs[0].supernet.named_parameters(), runs[1].supernet.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
    assert runs[0].history[0]["G_distill"] == pytest.approx(runs[1].history[0]["G_distill"], rel=1e-4)
    assert TeacherCache.build(teacher.G, None, data.train_a, limit_mb=1024) is not None
    assert TeacherCache.build(teacher.G, None, data.train_a, limit_mb=0.001) is None  # too big for the limit: the teacher runs per step
