import json
import pickle
from pathlib import Path

import pytest
import torch

from hwaml import BuiltModel, Candidate, Trial, TrialStatus
from hwaml.config import ConfigError
from hwaml.testing import EvaluatorContract, make_context
from hwaml_ofa_nas.predictors import count_macs
from hwaml_tinynas.evaluator import TinyNASDigits


def _trial(number, cand, res):
    return Trial(number, cand.with_number(number), TrialStatus.COMPLETE, dict(res.metrics), info={"artifacts": dict(res.artifacts)})


class _Payload:
    """Unpickling this object would create ``marker`` (what a crafted checkpoint would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _craft(path, marker):
    with open(path, "wb") as fh:
        pickle.dump({"stem.conv.weight": _Payload(marker)}, fh, protocol=2)


def test_search_space_runs_both_stages_and_caches_them(prepared_run, make_evaluator):
    ev, ctx, space = prepared_run
    state = ctx.run_dir / "tinynas"
    for name in ("space_opt.json", "space_opt.csv", "space_opt_samples.csv", "space_opt.png", "supernet.pt", "supernet.json", "training.json"):
        assert (state / name).is_file(), name
    assert not (state / "arch.json").exists()  # the shape travels through build_model, not a file
    chosen = json.loads((state / "space_opt.json").read_text())
    assert space.meta["tinynas"]["width"] == chosen["width"] and space.meta["ofa"]["resolutions"] == [chosen["resolution"]]
    assert space.meta["tinynas"]["device"] == "mcu64k" and space.meta["tinynas"]["arch"] == ev.supernet().arch.to_dict()
    phases = [p["name"] for p in json.loads((state / "training.json").read_text())["phases"]]
    assert phases == ["full", "kernel", "depth_1", "expand_1"]
    # the weights file is tensors only; shape and settings are JSON beside it
    assert all(isinstance(v, torch.Tensor) for v in torch.load(state / "supernet.pt", weights_only=True).values())
    assert json.loads((state / "supernet.json").read_text())["arch"] == ev.supernet().arch.to_dict()
    # a second evaluator on the same run directory loads instead of re-training
    mtime = (state / "supernet.pt").stat().st_mtime
    again = make_evaluator()
    assert again.search_space(ctx=ctx).describe() == space.describe()
    assert (state / "supernet.pt").stat().st_mtime == mtime
    torch.testing.assert_close(again.supernet().state_dict()["stem.conv.weight"], ev.supernet().state_dict()["stem.conv.weight"])


def test_build_model_while_costing_is_the_untrained_subnet_of_the_chosen_space(prepared_run, make_evaluator):
    from hwaml_tinynas.baselines import count_model_macs

    ev, ctx, space = prepared_run
    arch = ev.supernet().arch
    for cfg in (ev.supernet().min_config(), ev.supernet().max_config(), space.sample(ctx.rng)):
        built = ctx.build_model(Candidate(cfg))
        assert isinstance(built, BuiltModel) and not built.trained and built.source == "tinynas_digits"
        assert built.input_shape == (1, arch.resolutions[0], arch.resolutions[0])
        assert not built.module.training
        assert {type(m).__name__ for m in built.module.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Hardswish))} == {"ReLU6"}
        # the evaluator's own MAC count is the one TinyEngine's IR counts
        assert built.macs == count_macs(arch, cfg) == count_model_macs(built.module)
        with torch.no_grad():
            assert built.module(torch.zeros(2, *built.input_shape)).shape == (2, 10)
    # an executor worker (fresh object, no search_space call) builds it from ctx.space,
    # and without ctx.space from stage 1's saved result; neither needs the supernet
    cand = Candidate(ev.supernet().max_config())
    for wctx in (ctx, make_context(ctx.run_dir)):
        worker = make_evaluator()
        got = worker.build_model(candidate=cand, trial=None, ctx=wctx)
        assert got.input_shape == ctx.build_model(cand).input_shape and got.macs == ctx.build_model(cand).macs
        assert worker._net is None


def test_evaluate_lists_its_checkpoint_and_build_model_loads_the_trained_subnet(prepared_run, make_evaluator):
    ev, ctx, space = prepared_run
    cand = Candidate(ev.supernet().max_config(), number=7)
    res = ev.evaluate(candidate=cand, ctx=ctx)
    assert 0.3 < res.metrics["accuracy"] <= 1.0  # trained supernet, far above chance (0.1)
    assert set(res.artifacts) == {"checkpoint", "checkpoint_meta"}
    weights = torch.load(res.artifacts["checkpoint"], weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    meta = json.loads(Path(res.artifacts["checkpoint_meta"]).read_text())
    assert meta["config"] == dict(cand.config) and meta["float_accuracy"] == res.metrics["test_accuracy"]
    # deploy: a fresh evaluator (as `hwaml deploy` builds it) finds the weights through the trial
    trial = _trial(7, cand, res)
    built = make_evaluator().build_model(candidate=trial.candidate, trial=trial, ctx=make_context(ctx.run_dir))
    assert built.trained and built.calibration.shape == (64, *built.input_shape)
    x, y = built.test_data
    with torch.no_grad():
        acc = float((built.module(x).argmax(1) == y).double().mean())
    assert acc == pytest.approx(res.metrics["test_accuracy"])
    assert built.macs == count_macs(ev.supernet().arch, cand.config)
    # a trial without the artifacts, or another candidate's, is refused with the reason
    with pytest.raises(ValueError, match="no 'checkpoint' artifact"):
        ev.build_model(candidate=cand, trial=Trial(7, cand, TrialStatus.COMPLETE), ctx=ctx)
    other = Candidate(ev.supernet().min_config(), number=7)
    with pytest.raises(ValueError, match="not the candidate's"):
        ev.build_model(candidate=other, trial=trial, ctx=ctx)


def test_crafted_pickles_are_refused(prepared_run, make_evaluator, tmp_path):
    from hwaml_tinynas.training import load_supernet

    ev, ctx, space = prepared_run
    marker = tmp_path / "pwned"
    # the supernet: the shape and settings JSON are genuine, the weights file is a crafted pickle
    run = tmp_path / "run"
    (run / "tinynas").mkdir(parents=True)
    for name in ("space_opt.json", "supernet.json"):
        (run / "tinynas" / name).write_bytes((ctx.run_dir / "tinynas" / name).read_bytes())
    _craft(run / "tinynas" / "supernet.pt", marker)
    with pytest.raises(pickle.UnpicklingError):
        load_supernet(run / "tinynas")
    with pytest.raises(pickle.UnpicklingError):
        make_evaluator().evaluate(candidate=Candidate(space.sample(ctx.rng), number=0), ctx=make_context(run))
    # a trial checkpoint
    cand = Candidate(ev.supernet().min_config(), number=3)
    res = ev.evaluate(candidate=cand, ctx=ctx)
    bad = tmp_path / "trial_3.pt"
    _craft(bad, marker)
    trial = _trial(3, cand, res)
    trial = Trial(3, trial.candidate, trial.status, trial.metrics, info={"artifacts": {**res.artifacts, "checkpoint": str(bad)}})
    with pytest.raises(pickle.UnpicklingError):
        ev.build_model(candidate=cand, trial=trial, ctx=ctx)
    assert not marker.exists()  # the payload never ran


def test_evaluator_in_a_fresh_process_loads_the_run_state(prepared_run, make_evaluator, tmp_path):
    ev, ctx, space = prepared_run
    worker = make_evaluator()  # as an executor worker: no search_space call
    cand = Candidate(space.sample(ctx.rng), number=1)
    assert worker.evaluate(candidate=cand, ctx=ctx).metrics["accuracy"] == pytest.approx(ev.evaluate(candidate=cand, ctx=ctx).metrics["accuracy"])
    with pytest.raises(FileNotFoundError, match="space_opt.json"):
        make_evaluator().evaluate(candidate=cand, ctx=make_context(tmp_path))
    with pytest.raises(RuntimeError, match="not built yet"):
        make_evaluator().supernet()


def _backend_node(name, **extra):
    from omegaconf import OmegaConf

    from importlib import resources

    text = resources.files("hwaml_tinyengine.conf.backend").joinpath(f"{name}.yaml").read_text()
    node = OmegaConf.create(text)
    for k, v in extra.items():
        node[k] = v
    return node


def test_stage1_reads_the_run_backend_profile_and_tighter_constraints(make_evaluator, tmp_path):
    from omegaconf import OmegaConf

    ev = make_evaluator(device=None)
    # a shipped tinyengine profile, as `backend=[stm32f412]` puts it in the run config
    cfg = OmegaConf.create({"backend": {"stm32f412": _backend_node("stm32f412")}})
    budget = ev.memory_budget(make_context(tmp_path, cfg=cfg, constraints={"peak_sram_kb": 100}))
    assert (budget.device, budget.sram_kb, budget.flash_kb) == ("stm32f412", 100.0, 1024.0)
    # the node's own numbers and planner settings count; other backends are not TinyEngine's
    cfg = OmegaConf.create(
        {
            "backend": {
                "mcu": {"_target_": "hwaml_tinyengine.backend.TinyEngineBackend", "profile": "mcu64k", "overrides": {"sram_kb": 48}, "patch": False},
                "other": {"_target_": "collections.OrderedDict"},
            }
        }
    )
    budget = ev.memory_budget(make_context(tmp_path, cfg=cfg, constraints={"flash_kb": 200}))
    # the arena gets the device's SRAM less the firmware's 1 KB stack reserve (TinyEngine's fits check)
    assert (budget.device, budget.sram_kb, budget.flash_kb, budget.patch) == ("mcu64k", 47.0, 200.0, False)
    # a peak_sram_kb constraint bounds the arena itself: not reduced again
    budget = ev.memory_budget(make_context(tmp_path, cfg=cfg, constraints={"peak_sram_kb": 30}))
    assert budget.sram_kb == 30.0
    # the evaluator's own device wins over the run's backends
    assert make_evaluator(device="stm32h743").memory_budget(make_context(tmp_path, cfg=cfg)).sram_kb == 511.0
    with pytest.raises(ValueError, match="exactly one TinyEngine device.*none"):
        ev.memory_budget(make_context(tmp_path))
    two = OmegaConf.create({"backend": {"a": _backend_node("mcu64k"), "b": _backend_node("stm32f746")}})
    with pytest.raises(ValueError, match="exactly one TinyEngine device"):
        ev.memory_budget(make_context(tmp_path, cfg=two))
    with pytest.raises(ValueError, match="evaluator.device: unknown device profile 'nope'"):
        make_evaluator(device="nope").memory_budget(make_context(tmp_path))
    nameless = OmegaConf.create({"backend": {"mcu": {"_target_": "hwaml_tinyengine.backend.TinyEngineBackend"}}})
    with pytest.raises(ValueError, match="backend.mcu: stage 1 needs the TinyEngine profile name"):
        ev.memory_budget(make_context(tmp_path, cfg=nameless))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="samples_per_space"):
        TinyNASDigits(stage1={"samples_per_space": 0})
    with pytest.raises(ValueError, match="min_fit_fraction"):
        TinyNASDigits(stage1={"min_fit_fraction": 2})
    with pytest.raises(ConfigError, match="stage1.widthz.*did you mean 'widths'"):
        TinyNASDigits(stage1={"widthz": [1.0]})
    with pytest.raises(ConfigError, match="training.epoch"):
        TinyNASDigits(training={"epoch": 3})
    with pytest.raises(ValueError, match="training.epochs.bogus"):
        TinyNASDigits(training={"epochs": {"full": 1, "kernel": 1, "depth": 1, "expand": 1, "bogus": 1}})
    with pytest.raises(ValueError, match="finetune.epochs"):
        TinyNASDigits(finetune={"epochs": -1})
    with pytest.raises(ValueError, match="val_fraction"):
        TinyNASDigits(val_fraction=1.5)


def test_the_shipped_configs_check_and_a_misspelled_key_is_named():
    from hwaml.config import check_run_config
    from hwaml.testing import compose_config

    cfg = compose_config(["experiment=mcunet_digits"])
    check_run_config(cfg)
    assert list(cfg.backend) == ["mcu64k"] and cfg.evaluator.stage1.samples_per_space == 40
    with pytest.raises(ConfigError, match="evaluator.stage1.widthz"):
        check_run_config(compose_config(["experiment=mcunet_digits", "+evaluator.stage1.widthz=[1.0]"]))


class TestTinyNASEvaluatorContract(EvaluatorContract):
    @pytest.fixture
    def evaluator(self, make_evaluator):
        return make_evaluator()

    @pytest.fixture
    def contract_ctx(self, prepared_run):
        # the session's run directory: the contract's evaluators load its supernet instead of training one each
        return make_context(prepared_run[1].run_dir)


def test_finetuning_reports_validation_accuracy_per_epoch_and_can_be_pruned(prepared_run, make_evaluator):
    from dataclasses import replace

    from hwaml import TrialPruned
    from hwaml.pruning import Reporter

    ev, ctx, space = prepared_run
    tuned = make_evaluator(finetune={"epochs": 2, "lr": 0.01})
    tuned.search_space(ctx)  # the run's cached stage 1 and supernet
    cand = Candidate(ev.supernet().min_config(), number=11)
    rep = Reporter(11)
    res = tuned.evaluate(candidate=cand, ctx=replace(ctx, report=rep.report, should_prune=rep.should_prune))
    assert [s for s, _ in rep.history] == [0, 1]
    assert rep.history[-1][1] == pytest.approx(res.metrics["accuracy"])
    # a pruner that says stop: the trial ends after the first epoch
    rep = Reporter(12)
    with pytest.raises(TrialPruned, match="epoch 0"):
        tuned.evaluate(candidate=Candidate(cand.config, number=12), ctx=replace(ctx, report=rep.report, should_prune=lambda: True))
    assert len(rep.history) == 1
