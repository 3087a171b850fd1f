"""The evaluator and backends under hwaml's contract suites, pruning, deploy, and `hwaml run` end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hwaml import Candidate, TrialPruned
from hwaml.testing import BackendContract, EvaluatorContract, make_context



class TestEvaluatorContract(EvaluatorContract):
    n_candidates = 1

    @pytest.fixture
    def evaluator(self, supernet_checkpoint, make_evaluator):
        return make_evaluator(supernet_checkpoint)


class _Backends:
    @pytest.fixture
    def candidates(self, supernet_checkpoint, tmp_path, make_evaluator):
        ev = make_evaluator(supernet_checkpoint)
        space = ev.search_space(ctx=None)
        return [Candidate(ev.design.largest(), number=0), Candidate(space.sample(np.random.default_rng(1)), number=1)]

    @pytest.fixture
    def contract_ctx(self, supernet_checkpoint, tmp_path, backend, make_evaluator):
        return make_context(tmp_path / "run", evaluator=make_evaluator(supernet_checkpoint), backends={"b": backend})


class TestMacsBackend(_Backends, BackendContract):
    @pytest.fixture
    def backend(self):
        from hwaml_spvnas.backends import SparseMacsBackend

        return SparseMacsBackend()


class TestLatencyBackend(_Backends, BackendContract):
    @pytest.fixture
    def backend(self):
        from hwaml_spvnas.backends import CpuLatencyBackend

        return CpuLatencyBackend(repeats=1, warmup=0)


def test_macs_rank_the_largest_above_a_small_candidate(supernet_checkpoint, tmp_path, make_evaluator):
    from hwaml_spvnas.backends import SparseMacsBackend

    ev = make_evaluator(supernet_checkpoint)
    ctx = make_context(tmp_path, evaluator=ev)
    small = {k: {"width": v["width"], "depth": 1, "mid1": 0.125, "mid2": 0.125} for k, v in ev.design.spvcnn_config(0.5).items()}
    b = SparseMacsBackend()
    big_m = b.cost(candidate=Candidate(ev.design.largest()), ctx=ctx).metrics["macs_m"]
    small_m = b.cost(candidate=Candidate(small), ctx=ctx).metrics["macs_m"]
    assert big_m > 2 * small_m > 0


def test_backends_refuse_a_run_without_a_network(tmp_path):
    from hwaml_spvnas.backends import SparseMacsBackend

    with pytest.raises(RuntimeError, match="build_model"):
        SparseMacsBackend().cost(candidate=Candidate({}), ctx=make_context(tmp_path))


def test_per_epoch_values_are_reported_and_a_pruner_stops_the_trial(supernet_checkpoint, tmp_path, make_evaluator):
    import dataclasses

    ev = make_evaluator(supernet_checkpoint, mode="scratch", training={"epochs": 2, "lr": 0.05, "warmup_epochs": 0.0, "bn_calibration_scans": 1})
    seen = []
    ctx = dataclasses.replace(make_context(tmp_path), report=lambda s, v: seen.append((s, v)), should_prune=lambda: True)
    with pytest.raises(TrialPruned, match="epoch 1"):
        ev.evaluate(candidate=Candidate(ev.design.largest(), number=0), ctx=ctx)
    assert [s for s, _ in seen] == [0] and 0 <= seen[0][1] <= 1


def test_deploy_writes_checkpoint_iou_report_and_picture(supernet_checkpoint, tmp_path, make_evaluator):
    from hwaml import Trial, TrialStatus

    ev = make_evaluator(supernet_checkpoint)
    ctx = make_context(tmp_path, evaluator=ev)
    cand = Candidate(ev.design.largest(), number=0)
    res = ev.evaluate(candidate=cand, ctx=ctx)
    trial = Trial(0, cand, TrialStatus.COMPLETE, dict(res.metrics), info={"artifacts": dict(res.artifacts)})
    built = ev.build_model(candidate=cand, trial=trial, ctx=ctx)
    assert built.trained
    out = ev.deploy(trial=trial, ctx=ctx)
    assert out.ok and out.source == "spvnas_lidar"
    report = json.loads(open(out.artifacts["iou_report"]).read())
    assert report["miou"] == pytest.approx(res.metrics["miou"], abs=1e-6)
    from PIL import Image

    assert Image.open(out.artifacts["picture"]).size == (808, 400)


def test_bad_config_keys_are_named(tmp_path, make_evaluator):
    from hwaml.config import ConfigError

    with pytest.raises(ConfigError, match="data.voxel"):
        make_evaluator(tmp_path / "x.pt", data={"voxel": 0.1})
    with pytest.raises(ValueError, match="data.root"):
        make_evaluator(tmp_path / "x.pt", data={"source": "semantickitti"})


def _dict_override(key, d):
    return f"{key}={{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"


def test_hwaml_run_experiment_trains_the_supernet_and_searches_under_macs(tmp_path, tiny_settings):
    run = tmp_path / "run"
    args = [
        "run", "experiment=spvnas_procedural",
        _dict_override("evaluator.data", tiny_settings["data"]), _dict_override("evaluator.space", tiny_settings["space"]),
        _dict_override("evaluator.supernet_training", tiny_settings["supernet_training"]),
        "evaluator.training.bn_calibration_scans=1", "evaluator.cost_scans=1", "evaluator.progress=false",
        f"evaluator.checkpoint={tmp_path / 'supernet.pt'}",
        "budget.trials=2", "searcher.population_size=2", "searcher.parent_ratio=0.5", "searcher.generations=1", "constraints.macs_m=1000",
        "deploy.enabled=true", f"hydra.run.dir={run}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "hwaml.cli", *args], capture_output=True, text=True, timeout=240, env=env)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "hwaml: best trial" in out
    best = json.loads(out.split("hwaml: best trial", 1)[1].split(" ", 2)[2].splitlines()[0])
    assert 0 <= best["miou"] <= 1 and 0 < best["macs_m"] <= 1000
    assert (tmp_path / "supernet.pt").is_file() and (run / "spvnas_deploy" / "bev_gt_vs_pred.png").is_file()


def test_supernet_sampling_shrinks_depth_progressively_and_the_cache_reloads(supernet_checkpoint, tmp_path, make_evaluator):
    import torch

    ev = make_evaluator(supernet_checkpoint, supernet_training={"epochs": 4, "depth_shrink_at": 0.5})
    rng = np.random.default_rng(0)
    early = [ev.sample_arch(rng, 1)["depths"] for _ in range(20)]
    late = [ev.sample_arch(rng, 2)["depths"] for _ in range(20)]
    assert all(d == [2] * 8 for d in early)
    assert any(1 in d for d in late)
    a = make_evaluator(supernet_checkpoint).supernet().state_dict()
    b = make_evaluator(supernet_checkpoint, train_if_missing=False).supernet().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match="train_if_missing"):
        make_evaluator(tmp_path / "missing.pt", train_if_missing=False).supernet()
