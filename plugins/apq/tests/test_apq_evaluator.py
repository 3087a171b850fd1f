import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hwaml import Candidate, TrialPruned
from hwaml.testing import EvaluatorContract, make_context

from hwaml_apq.backends import BitFusionBackend
from hwaml_apq.space import extreme_config


class TestAPQEvaluatorContract(EvaluatorContract):
    @pytest.fixture
    def evaluator(self, make_evaluator):
        return make_evaluator()


def test_fp32_and_quant_modes_and_per_epoch_reports(make_evaluator, tmp_path):
    reports = []
    ev = make_evaluator(qat={"epochs": 2, "max_steps_per_epoch": 1, "batch_size": 16, "calibration_images": 32, "kl_bins": 64})
    ctx = make_context(tmp_path, evaluator=ev)
    ctx = type(ctx)(**{**ctx.__dict__, "report": lambda step, value: reports.append((step, value))})
    cfg = extreme_config(ctx.space, "min", bits=4)
    res = ev.evaluate(Candidate(cfg, number=0), ctx)
    assert set(res.metrics) == {"accuracy", "accuracy_fp32"} and [s for s, _ in reports] == [0, 1]
    assert Path(res.artifacts["quantized"]).is_file()
    ev_fp = make_evaluator(mode="fp32")
    r = ev_fp.evaluate(Candidate(cfg), make_context(tmp_path / "fp", evaluator=ev_fp))
    assert r.metrics["accuracy"] == r.metrics["accuracy_fp32"]


def test_pruner_stops_fine_tuning(make_evaluator, tmp_path):
    ev = make_evaluator()
    ctx = make_context(tmp_path, evaluator=ev)
    ctx = type(ctx)(**{**ctx.__dict__, "should_prune": lambda: True})
    with pytest.raises(TrialPruned, match="epoch 0"):
        ev.evaluate(Candidate(extreme_config(ctx.space, "min")), ctx)


def test_costing_builds_quantized_networks_without_the_supernet(make_evaluator, tmp_path):
    ev = make_evaluator(checkpoint=str(tmp_path / "missing.pt"))
    ctx = make_context(tmp_path, backends={"bitfusion": BitFusionBackend()})
    space = ev._space
    lo = ev.build_model(Candidate(extreme_config(space, "max", bits=4)), None, ctx)
    hi = ev.build_model(Candidate(extreme_config(space, "max", bits=8)), None, ctx)
    assert not lo.trained and lo.input_shape == (3, 16, 16)
    assert ev._net is None  # no supernet loaded or trained for costing
    b = BitFusionBackend()
    from hwaml_apq.hardware import network_cost, network_layers

    lat = lambda m: network_cost(network_layers(m.module, m.input_shape), b.config)["latency_ms"]
    assert lat(lo) < lat(hi)


def test_bad_keys_are_named(make_evaluator):
    with pytest.raises(Exception, match="epochz"):
        make_evaluator(qat={"epochz": 1})
    with pytest.raises(ValueError, match="mode"):
        make_evaluator(mode="int8")


def test_deploy_writes_bit_report_weights_and_onnx(make_evaluator, tmp_path):
    from hwaml import Trial

    ev = make_evaluator()
    ctx = make_context(tmp_path, evaluator=ev)
    cand = Candidate(extreme_config(ctx.space, "min", bits=6), number=3)
    res = ev.evaluate(cand, ctx)
    trial = Trial(3, cand, "complete", dict(res.metrics), info={"artifacts": dict(res.artifacts)})
    out = ev.deploy(trial, ctx)
    assert out.ok and out.source == "apq_test"
    report = json.loads(Path(out.artifacts["bits"]).read_text())
    assert {b["pw_w_bits"] for b in report["blocks"]} == {6}
    assert out.metrics["accuracy"] == pytest.approx(res.metrics["accuracy"], abs=1e-9)
    assert "onnx" in out.artifacts, out.message


def test_hwaml_run_end_to_end_through_hydra(tmp_path, tiny_checkpoint):
    """`hwaml run experiment=apq_joint_digits` shrunk to test_tiny, 2 trials."""
    overrides = [
        "experiment=apq_joint_digits",
        "evaluator.arch=test_tiny",
        f"evaluator.checkpoint={tiny_checkpoint}",
        "evaluator.train_if_missing=false",
        "evaluator.data.train_limit=64",
        "evaluator.data.val_limit=32",
        "evaluator.qat.max_steps_per_epoch=1",
        "evaluator.qat.calibration_images=16",
        "evaluator.qat.kl_bins=32",
        "evaluator.calibration_size=16",
        "evaluator.progress=false",
        "searcher.warmup_trials=5",
        "constraints.latency_ms=0.01",
        "budget.trials=2",
        f"hydra.run.dir={tmp_path}/run",
    ]
    proc = subprocess.run([sys.executable, "-m", "hwaml.cli", "run", *overrides], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert "accuracy" in json.dumps(best) and "latency_ms" in json.dumps(best)


def test_amc_reconstruction_refits_pruned_projections_to_the_unpruned_outputs(make_evaluator):
    """AMC's least-squares reconstruction: every pruned block's projection fits the
    unpruned block's output better than the kept channels' own weights, and the whole
    pruned network's logits move towards the unpruned network's."""
    import torch

    from hwaml_apq.network import extract_subnet, reconstruct_projections
    from hwaml_apq.space import extreme_config, widest_config
    from hwaml_ofa_nas.progressive_shrinking import recalibrate_batchnorm

    ev = make_evaluator(reconstruct=True, reconstruct_images=32)
    space = ev.search_space(ctx=None)
    narrow = extreme_config(space, "min", bits=8)
    wide = widest_config(space, narrow)
    assert wide != narrow and widest_config(space, wide) == wide
    calib = ev.calibration()
    plain = extract_subnet(ev.supernet(), narrow, ev.resolution)
    ref = extract_subnet(ev.supernet(), wide, ev.resolution)
    for m in (plain, ref):
        recalibrate_batchnorm(m, calib)
    refit = extract_subnet(ev.supernet(), narrow, ev.resolution)
    recalibrate_batchnorm(refit, calib)
    report = reconstruct_projections(refit, ref, calib)
    assert report and all(r["kept"] < r["of"] for r in report)
    assert all(r["error_after"] < r["error_before"] for r in report), report
    recalibrate_batchnorm(refit, calib)
    with torch.no_grad():
        target = ref(calib)
        assert (refit(calib) - target).norm() < (plain(calib) - target).norm()
    # through the evaluator: the same refit, its errors in the trial's info
    sub = ev.subnet(narrow)
    assert [r["block"] for r in sub.reconstruction] == [r["block"] for r in report]
    assert make_evaluator().subnet(narrow).reconstruction == []  # off by default (APQ's joint search has none)


def test_reconstruct_images_must_be_positive(make_evaluator):
    with pytest.raises(ValueError, match="reconstruct_images"):
        make_evaluator(reconstruct=True, reconstruct_images=0)


def _idx_folder(root: Path, n_train: int = 300, n_test: int = 40) -> Path:
    from hwaml_ofa_nas.idx import write_idx

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 128, size=(n_train, 12, 12), dtype=np.uint8))
    write_idx(root / "train-labels-idx1-ubyte.gz", (np.arange(n_train) % 10).astype(np.uint8))
    # the test files are told apart from every training image: all bright
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.full((n_test, 12, 12), 250, dtype=np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", (np.arange(n_test) % 10).astype(np.uint8))
    return root


def test_held_out_split_is_disjoint_stratified_and_seeded():
    from hwaml_apq.data import held_out_split

    labels = np.arange(1000) % 10
    tr, va = held_out_split(labels, 200, None, seed=3)
    assert len(va) == 200 and len(tr) == 800 and not set(tr) & set(va)
    assert np.bincount(labels[va]).tolist() == [20] * 10
    tr2, va2 = held_out_split(labels, 200, 100, seed=3)
    assert va2.tolist() == va.tolist() and len(tr2) == 100 and set(tr2) <= set(tr)
    assert held_out_split(labels, 200, None, seed=4)[1].tolist() != va.tolist()
    with pytest.raises(ValueError, match="val_images"):
        held_out_split(labels, 1000, None, seed=0)


def test_idx_sets_validate_on_held_out_training_images_and_test_only_in_the_report(tmp_path):
    import torch
    from hwaml import Trial
    from hwaml_ofa_nas.progressive_shrinking import save_supernet
    from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config

    from hwaml_apq.evaluator import APQEvaluator

    root = _idx_folder(tmp_path / "idx")
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny1.pt"
    arch = supernet_config("test_tiny", {"in_channels": 1})
    save_supernet(OFAMobileNetV3(arch), ckpt)
    ev = APQEvaluator(
        arch="test_tiny", arch_overrides={"in_channels": 1}, data={"dataset": "idx", "root": str(root), "val_images": 60, "train_limit": 100, "test_limit": 30},
        qat={"epochs": 1, "max_steps_per_epoch": 1, "batch_size": 16, "calibration_images": 16, "kl_bins": 64},
        checkpoint=str(ckpt), train_if_missing=False, calibration_size=16, progress=False, name="apq_idx",
    )
    d = ev.data()
    assert len(d.train) == 100 and len(d.val) == 60
    test = ev.test_split()
    assert len(test) == 30
    # validation images are training images (dark), never the test files (bright)
    assert float(d.val.tensors[0].max()) < float(test.tensors[0].min())
    ctx = make_context(tmp_path / "run", evaluator=ev)
    cand = Candidate(extreme_config(ctx.space, "min", bits=8), number=0)
    res = ev.evaluate(cand, ctx)
    assert res.info["val_images"] == 60
    trial = Trial(0, cand, "complete", dict(res.metrics), info={"artifacts": dict(res.artifacts)})
    acc_test = ev.test_accuracy(trial, ctx)
    assert 0.0 <= acc_test <= 1.0
    out = ev.deploy(trial, ctx)
    assert out.metrics["test_accuracy"] == pytest.approx(acc_test, abs=1e-9)
    report = json.loads(Path(out.artifacts["bits"]).read_text())
    assert report["accuracy_split"] == "test" and report["images"] == 30
    # the cache file is named after the held-out split (a supernet never trained on its validation images)
    other = APQEvaluator(arch="test_tiny", arch_overrides={"in_channels": 1}, data={"dataset": "idx", "root": str(root), "val_images": 70, "train_limit": 100}, progress=False)
    same = APQEvaluator(arch="test_tiny", arch_overrides={"in_channels": 1}, data={"dataset": "idx", "root": str(root), "val_images": 60, "train_limit": 100}, progress=False)
    assert other.checkpoint != same.checkpoint


def test_fashion_validation_split_is_large_enough_and_val_limit_is_for_digits(make_evaluator):
    with pytest.raises(ValueError, match="at least 5000"):
        make_evaluator(arch_overrides={"in_channels": 1}, data={"dataset": "fashion_mnist", "val_images": 2000})
    with pytest.raises(ValueError, match="val_limit is for digits"):
        make_evaluator(data={"dataset": "idx", "root": "/nonexistent", "val_limit": 100})
    ev = make_evaluator()
    assert ev.test_split() is None  # digits: no test split
