"""The evaluator and the memory backend through the hook contract, per-epoch reports,
pruning, deploy, and `hwaml run evaluator=tinytl_fashion 'backend=[tinytl_memory]'` end to end."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from hwaml import Candidate, Trial, TrialPruned, TrialStatus
from hwaml.testing import BackendContract, EvaluatorContract, make_context
from hwaml_tinytl.backend import TinyTLMemoryBackend
from hwaml_tinytl.evaluator import ADAPTED_ARTIFACT, MEMORY_ARTIFACT, TinyTLEvaluator, load_adapted



@pytest.fixture(scope="module")
def shared_evaluator(fashion_root, tmp_path_factory, tiny_evaluator):
    os.environ["HWAML_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    ev = tiny_evaluator(fashion_root)
    ev.pretrained()
    return ev


class TestTinyTLEvaluatorContract(EvaluatorContract):
    n_candidates = 1

    @pytest.fixture
    def evaluator(self, shared_evaluator):
        return shared_evaluator


class TestTinyTLMemoryBackendContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return TinyTLMemoryBackend(batch_size=4)

    @pytest.fixture
    def contract_ctx(self, tmp_path, shared_evaluator):
        return make_context(tmp_path, evaluator=shared_evaluator, backends={"tinytl_memory": TinyTLMemoryBackend(batch_size=4)})

    @pytest.fixture
    def candidates(self, shared_evaluator):
        space = shared_evaluator.space()
        rng = np.random.default_rng(0)
        return [Candidate(shared_evaluator.default_config())] + [Candidate(space.sample(rng)) for _ in range(2)]


def test_bad_config_keys_name_the_key(fashion_root, tiny_evaluator):
    with pytest.raises(ValueError, match="training"):
        tiny_evaluator(fashion_root, training={"epoch": 3})
    with pytest.raises(ValueError, match="not one of"):
        tiny_evaluator(fashion_root, method="tinytl_x")
    with pytest.raises(ValueError, match="mode"):
        TinyTLMemoryBackend(mode="guessed")
    with pytest.raises(ValueError, match="peak_rule"):
        TinyTLMemoryBackend(peak_rule="guessed")
    with pytest.raises(ValueError, match="peak_rule: schedule"):
        TinyTLMemoryBackend(recompute=True)


def test_space_and_published_default(shared_evaluator):
    space = shared_evaluator.space()
    cfg = shared_evaluator.default_config()
    assert space.validate(cfg) == cfg
    assert cfg["block0"]["lite"] is False and all(cfg[f"block{i}"]["lite"] for i in (1, 2, 3))
    assert cfg["block1"]["kernel"] == 3 and cfg["block3"]["kernel"] == 1
    ev_b = TinyTLEvaluator(method="tinytl_b", arch="test", progress=False)
    assert [d.name for d in ev_b.space().dims] == ["method", "lr"]
    # searching methods with and without lite residuals: the blocks' choices exist only with the former
    ev_mix = TinyTLEvaluator(arch="test", progress=False, search={"methods": ["ft_full", "ft_last", "tinytl_lb"]})
    mixed = ev_mix.space()
    rng = np.random.default_rng(0)
    samples = [mixed.sample(rng) for _ in range(40)]
    for c in samples:
        blocks = sorted(k for k in c if k.startswith("block"))
        assert blocks == ([] if c["method"] != "tinytl_lb" else [f"block{i}" for i in range(len(ev_mix.blocks()))]), c
        assert mixed.validate(c) == c
    assert {c["method"] for c in samples} == {"ft_full", "ft_last", "tinytl_lb"}
    with pytest.raises(ValueError, match="block0"):
        mixed.validate({"method": "ft_full", "lr": ev_mix.training.lr, "block0": {"lite": True, "kernel": 3, "groups": 2}})


def test_reports_each_epoch_and_stops_when_pruned(shared_evaluator, tmp_path):
    seen = []
    ctx = replace(make_context(tmp_path), report=lambda step, value: seen.append((step, value)))
    res = shared_evaluator.evaluate(candidate=Candidate(shared_evaluator.default_config(), number=0), ctx=ctx)
    assert [s for s, _ in seen] == [0, 1] and seen[-1][1] == pytest.approx(res.metrics["accuracy"])
    assert 0.0 <= res.metrics["test_accuracy"] <= 1.0
    report = json.loads(open(res.artifacts[MEMORY_ARTIFACT]).read())
    assert report["batch8"]["train_memory_bytes"] > report["batch1"]["train_memory_bytes"]
    prune_ctx = replace(make_context(tmp_path / "p"), should_prune=lambda: True)
    with pytest.raises(TrialPruned, match="epoch 0"):
        shared_evaluator.evaluate(candidate=Candidate(shared_evaluator.default_config(), number=1), ctx=prune_ctx)
    # deploy: the adapted weights (trained parameters + 8-bit codes) rebuild the trained network
    trial = Trial(0, Candidate(shared_evaluator.default_config(), number=0), TrialStatus.COMPLETE, metrics=res.metrics, info={"artifacts": dict(res.artifacts)})
    dep = shared_evaluator.deploy(trial=trial, ctx=make_context(tmp_path))
    assert dep.ok, dep.message
    assert dep.metrics["test_accuracy"] == pytest.approx(res.metrics["test_accuracy"])
    state = torch.load(dep.artifacts["weights"], weights_only=True)
    assert any(k.endswith(".codes") and v.dtype == torch.uint8 for k, v in state.items())
    built = shared_evaluator.build_model(candidate=trial.candidate, trial=trial, ctx=make_context(tmp_path))
    assert built.trained and not built.module.training
    untrained = shared_evaluator.build_model(candidate=trial.candidate, trial=None, ctx=make_context(tmp_path))
    assert not untrained.trained
    missing = Trial(5, trial.candidate, TrialStatus.COMPLETE)
    assert shared_evaluator.deploy(trial=missing, ctx=make_context(tmp_path)).ok is False


def test_memory_backend_ranks_methods_as_the_paper(shared_evaluator, tmp_path):
    backend = TinyTLMemoryBackend(batch_size=8)
    ctx = make_context(tmp_path, evaluator=shared_evaluator, backends={"tinytl_memory": backend})
    mem = {}
    for method in ("ft_full", "ft_last", "tinytl_b", "tinytl_lb"):
        cfg = dict(shared_evaluator.default_config(), method=method)
        mem[method] = backend.cost(candidate=Candidate(cfg), ctx=ctx).metrics["train_memory_kb"]
    assert mem["ft_full"] > 2 * mem["tinytl_lb"] and mem["tinytl_lb"] > mem["tinytl_b"] >= mem["ft_last"]
    measured = TinyTLMemoryBackend(batch_size=8, mode="measured").cost(candidate=Candidate(shared_evaluator.default_config()), ctx=ctx)
    assert measured.metrics["train_activation_kb"] > 0 and measured.info["memory_saving"] is True


def test_hwaml_run_searches_under_a_memory_constraint(fashion_root, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [
        "evaluator=tinytl_fashion",
        "backend=[tinytl_memory]",
        "evaluator.arch=test",
        f"evaluator.data.root={fashion_root}",
        "evaluator.data.n_train=4",
        "evaluator.data.n_val=2",
        "evaluator.data.n_test=2",
        f"evaluator.pretrain.data_root={fashion_root}",
        "evaluator.pretrain.n_train=10",
        "evaluator.pretrain.n_val=5",
        "evaluator.pretrain.epochs=1",
        "evaluator.training.epochs=1",
        "evaluator.progress=false",
        "evaluator.search.methods=[ft_full,tinytl_b,tinytl_lb]",
        "+constraints.train_memory_kb=200",
        "searcher=random",
        "budget.trials=5",
        "deploy.enabled=true",
        f"hydra.run.dir={run}",
    ]
    p = subprocess.run([sys.executable, "-m", "hwaml.cli", "run", *args], capture_output=True, text=True, timeout=240, env=env)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "hwaml: best trial" in out
    best = json.loads(out.split("hwaml: best trial", 1)[1].split(" ", 2)[2].splitlines()[0])
    assert best["train_memory_kb"] <= 200 and "accuracy" in best
    import csv

    rows = list(csv.DictReader(open(run / "trials.csv")))
    status = {(r["status"], r["config.method"]) for r in rows}
    assert ("infeasible", "ft_full") in status  # FT-Full (about 330 KB at batch 8 here) does not fit
    assert any(s == "complete" for s, _ in status)
    assert list((run / "deploy").glob("tinytl_trial*.pt"))


def test_memory_backend_costs_another_evaluators_network(tmp_path):
    """Any NN evaluator's model: an ofa-nas sub-network (all weights trainable: FT-Full)."""
    from hwaml_ofa_nas.evaluator import OFAEvaluator
    from hwaml_ofa_nas.supernet import OFAMobileNetV3

    ev = OFAEvaluator(arch="test_tiny", progress=False, train_if_missing=False)
    base = make_context(tmp_path)
    ctx = replace(base, build_model=lambda c, trial=None: ev.build_model(candidate=c, trial=trial, ctx=base))
    cand = Candidate(OFAMobileNetV3.space_for(ev.arch).sample(np.random.default_rng(0)))
    report = TinyTLMemoryBackend(batch_size=2).cost(candidate=cand, ctx=ctx)
    params = sum(p.numel() for p in ev.build_model(candidate=cand, trial=None, ctx=base).module.parameters())
    assert report.metrics["train_weights_kb"] == pytest.approx(4 * params / 1024)
    assert report.metrics["train_activation_kb"] > 0 and report.source == "tinytl_memory"
    with pytest.raises(RuntimeError, match="build_model"):
        TinyTLMemoryBackend().cost(candidate=cand, ctx=base)


def test_pretrained_lite_residuals_are_trained_where_chosen_and_frozen_elsewhere(shared_evaluator, tmp_path):
    from hwaml_tinytl.lite_residual import LiteResidualModule

    ev = shared_evaluator
    src = ev.pretrained()
    assert any(isinstance(m, LiteResidualModule) for m in src.modules())  # pretrained with the backbone, as published
    state = src.state_dict()
    x = torch.randn(3, *ev.input_shape)

    def features(net):
        net.eval()
        with torch.no_grad():
            return net.feature_mix(net.blocks(net.stem(x)))

    cfg = ev.default_config()
    net, inserted = ev.adapted_network(cfg, pretrained=True)
    assert inserted and all(i["pretrained"] for i in inserted)
    names = {n for n, p in net.named_parameters() if p.requires_grad}
    lite = {n for n, _ in net.named_parameters() if ".lite_residual." in n}
    assert all(torch.equal(p, state[n]) for n, p in net.named_parameters() if n in lite)
    # TinyTL-L+B trains the lite modules but not their last norm shift (the block's own shift does that)
    assert {n for n in lite if not n.endswith("final_norm.bias")} <= names and not any(n.endswith("final_norm.bias") for n in lite & names)
    # a method without lite residuals keeps the pretrained ones, frozen
    last, _ = ev.adapted_network({**cfg, "method": "ft_last"}, pretrained=True)
    assert not any(p.requires_grad for n, p in last.named_parameters() if ".lite_residual." in n)
    assert torch.allclose(features(last), features(src))
    # block1 with other groups: a fresh module around the frozen pretrained one; block2 off: frozen
    other = {**cfg, "block1": {**cfg["block1"], "groups": 4}, "block2": {**cfg["block2"], "lite": False}}
    net2, ins2 = ev.adapted_network(other, pretrained=True)
    assert [(i["block"], i["pretrained"]) for i in ins2] == [(1, False), (3, True)]
    outer = net2.get_submodule(ins2[0]["path"])
    assert isinstance(outer, LiteResidualModule) and isinstance(outer.main_branch, LiteResidualModule)
    assert all(p.requires_grad for p in outer.lite_residual.parameters() if p is not outer.lite_residual.final_norm.bias)
    assert not any(p.requires_grad for p in outer.main_branch.lite_residual.parameters())
    assert not any(p.requires_grad for p in net2.get_submodule(f"blocks.2.main.lite_residual").parameters())
    assert torch.allclose(features(net2), features(src))  # starts as the pretrained function
    # a checkpoint made with lite residuals does not load as one without
    from hwaml_tinytl.training import load_pretrained

    ck = tmp_path / "ck.pt"
    torch.save(state, ck)
    ck.with_suffix(".json").write_text(json.dumps({"arch": ev.arch.to_dict(), "pretrain": {"lite_residual": True}}))
    assert torch.allclose(features(load_pretrained(ck, ev.arch, True)), features(src))
    with pytest.raises(ValueError, match="lite_residual"):
        load_pretrained(ck, ev.arch, False)
    # training.lite_init: random re-initialises the trained pretrained modules (the published ablation flag)
    from hwaml_tinytl.training import TransferRecipe

    with pytest.raises(ValueError, match="lite_init"):
        TransferRecipe(lite_init="zeros")
    fresh = TinyTLEvaluator(**{**_args(ev), "pretrain": {**ev.pretrain.__dict__, "checkpoint": str(ck)}, "training": {**ev.training.__dict__, "lite_init": "random"}})
    net3, _ = fresh.adapted_network(cfg, pretrained=True)
    final = [m.lite_residual.final_norm.weight for m in net3.modules() if isinstance(m, LiteResidualModule)]
    assert final and all(float(w.detach().abs().sum()) == 0.0 for w in final)


def _args(ev):
    return dict(target=ev.target, method=ev.method, arch="test", data=ev.data.__dict__, progress=False)
