"""OFA evolution (predictor-driven, constraint rejection) and searches through the loop."""

import json

import numpy as np
import pytest

from hwaml import Candidate, CostReport, Trial
from hwaml.builtin import AnalyticEvaluator, OptunaSearcher, RandomSearch, RegularizedEvolution
from hwaml.loop import SearchLoop
from hwaml.testing import make_context
from hwaml_ofa_nas.backends import MacsBackend
from hwaml_ofa_nas.evaluator import OFAEvaluator
from hwaml_ofa_nas.evolution import OFAEvolutionSearcher, SearchInfeasible, evolution_search
from hwaml_ofa_nas.predictors import ArchEncoder, count_macs
from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config


def _ctx(tmp_path, constraints=None, seed=0, arch="tiny_digits"):
    """A context whose cost_fn is OFA's analytic MACs count, as a merged CostReport
    (equal to the macs backend's, tested in test_ofa_nas_backends; fast)."""
    from dataclasses import replace

    arch = supernet_config(arch)
    ctx = make_context(tmp_path, seed=seed, constraints=constraints)
    return replace(ctx, cost_fn=lambda cand: CostReport({"macs_m": count_macs(arch, cand.config) / 1e6}, source="macs"))


def test_evolution_improves_the_predicted_score_and_respects_the_constraint():
    arch = supernet_config("tiny_digits")
    space = OFAMobileNetV3.space_for(arch)
    enc = ArchEncoder(space.meta["ofa"])
    # score = MACs: the best feasible architecture sits on the constraint boundary
    limit = 1.4e6
    macs_of = lambda X_configs: np.array([count_macs(arch, c) for c in X_configs], float)
    predict = lambda X: macs_of([_decode(enc, row) for row in X]) / 1e6
    feasible = lambda cfg: count_macs(arch, cfg) <= limit
    res = evolution_search(enc, predict, np.random.default_rng(0), feasible, population_size=20, generations=15)
    assert len(res.best_per_generation) == 15
    assert res.best_per_generation[-1] >= res.best_per_generation[0]
    assert count_macs(arch, res.best_config) <= limit
    assert res.best_score > 0.9 * limit / 1e6
    assert all(count_macs(arch, c) <= limit for _, c in res.population)
    assert res.n_rejected > 0


def _decode(enc, row):
    # invert the one-hot encoding (test helper; the searcher keeps genomes instead)
    cfg = {enc.resolution_key: enc.resolutions[int(np.argmax(row[: len(enc.resolutions)]))]}
    for s, key in enumerate(enc.stage_keys):
        base = len(enc.resolutions) + s * enc.stage_width
        depth = enc.depths[int(np.argmax(row[base : base + len(enc.depths)]))]
        blocks = []
        for b in range(depth):
            off = base + len(enc.depths) + b * (len(enc.kernels) + len(enc.expands))
            blocks.append({"kernel": enc.kernels[int(np.argmax(row[off : off + len(enc.kernels)]))], "expand": enc.expands[int(np.argmax(row[off + len(enc.kernels) : off + len(enc.kernels) + len(enc.expands)]))]})
        cfg[key] = blocks
    return cfg


def test_impossible_constraint_is_a_clear_error():
    space = OFAMobileNetV3.space_for(supernet_config("test_tiny"))
    enc = ArchEncoder(space.meta["ofa"])
    with pytest.raises(SearchInfeasible, match="too tight"):
        evolution_search(enc, lambda X: X.sum(1), np.random.default_rng(0), lambda cfg: False, population_size=4, generations=1, max_rejections=20)


def test_searcher_warms_up_then_proposes_feasible_predicted_best(tmp_path, accuracy_fn):
    arch = supernet_config("tiny_digits")
    space = OFAMobileNetV3.space_for(arch)
    searcher = OFAEvolutionSearcher(population_size=16, generations=8, warmup_trials=6, predictor_hidden=32, predictor_epochs=60)
    ctx = _ctx(tmp_path, constraints={"macs_m": 1.5})
    first = searcher.propose(space=space, history=[], n=3, ctx=ctx)
    assert [c.origin for c in first] == ["random"] * 3
    rng = np.random.default_rng(0)
    history = []
    for i in range(8):
        cfg = space.sample(rng)
        history.append(Trial(i, Candidate(cfg, number=i), "complete", {"accuracy": accuracy_fn(arch, cfg)}))
    props = searcher.propose(space=space, history=history, n=4, ctx=ctx)
    assert len(props) == 4 and props[0].origin == "ofa_evolution"
    seen = {json.dumps(t.config, sort_keys=True) for t in history}
    for c in props:
        space.validate(c.config)
        assert count_macs(arch, c.config) / 1e6 <= 1.5
        assert json.dumps(c.config, sort_keys=True) not in seen
    assert "predicted_accuracy" in props[0].meta


def test_searcher_needs_an_ofa_space(tmp_path):
    from hwaml.loop import RunError
    from hwaml.plugins import PluginError

    space = AnalyticEvaluator().search_space(ctx=make_context(tmp_path))
    with pytest.raises(PluginError, match="evaluator=ofa_digits"):
        OFAEvolutionSearcher().propose(space=space, history=[], n=1, ctx=make_context(tmp_path))
    # through the loop: a start-up error naming the searcher and the evaluator
    loop = SearchLoop(components={"searcher": OFAEvolutionSearcher(), "evaluator": AnalyticEvaluator("nas_toy")}, run_dir=tmp_path / "run", objectives={"accuracy": "max"}, budget_trials=2)
    try:
        with pytest.raises(RunError, match="OFA sub-network space"):
            loop.run()
    finally:
        loop.close()


def test_searcher_rejects_what_a_backend_says_does_not_fit(tmp_path):
    """Without constraints, a backend's own verdict (feasible=False) still rejects proposals."""
    from dataclasses import replace

    arch = supernet_config("test_tiny")
    space = OFAMobileNetV3.space_for(arch)
    limit = count_macs(arch, OFAMobileNetV3.extreme_config(arch, "min")) * 1.5
    fits = lambda cfg: count_macs(arch, cfg) <= limit
    ctx = replace(make_context(tmp_path), cost_fn=lambda c: CostReport({}, source="mcu", feasible=fits(c.config)))
    searcher = OFAEvolutionSearcher(population_size=8, generations=2, warmup_trials=2, predictor_hidden=8, predictor_epochs=5)
    warm = searcher.propose(space=space, history=[], n=3, ctx=ctx)
    assert len(warm) == 3 and all(fits(c.config) for c in warm)
    rng = np.random.default_rng(1)
    history = [Trial(i, Candidate(cfg, number=i), "complete", {"accuracy": float(count_macs(arch, cfg))}) for i, cfg in enumerate(space.sample(rng) for _ in range(4))]
    props = searcher.propose(space=space, history=history, n=2, ctx=ctx)
    assert props and all(fits(c.config) for c in props)


def test_searcher_with_a_saved_predictor_mismatch(tmp_path):
    from hwaml_ofa_nas.predictors import AccuracyPredictor

    AccuracyPredictor(5, 8, 1).save(tmp_path / "p.pt")
    space = OFAMobileNetV3.space_for(supernet_config("test_tiny"))
    with pytest.raises(ValueError, match="another supernet shape"):
        OFAEvolutionSearcher(predictor_path=str(tmp_path / "p.pt")).propose(space=space, history=[], n=1, ctx=make_context(tmp_path))


@pytest.mark.parametrize(
    "searcher",
    [RandomSearch(), RegularizedEvolution(population_size=4, tournament_size=2), OptunaSearcher("tpe"), OFAEvolutionSearcher(population_size=8, generations=3, warmup_trials=3, predictor_hidden=16, predictor_epochs=20)],
    ids=["random", "evolution", "optuna_tpe", "ofa_evolution"],
)
def test_short_search_through_the_loop(trained_tiny, tmp_path, searcher):
    path, _, _ = trained_tiny
    evaluator = OFAEvaluator("test_tiny", checkpoint=str(path), train_if_missing=False, calibration_size=100, progress=False)
    loop = SearchLoop(
        components={"searcher": searcher, "evaluator": evaluator, "backend.macs": MacsBackend("test_tiny")},
        run_dir=tmp_path / "run",
        objectives={"accuracy": "max"},
        constraints={"macs_m": 0.4},
        budget_trials=6,
    )
    try:
        result = loop.run()
    finally:
        loop.close()
    assert len(result.trials) == 6
    done = [t for t in result.trials if t.status == "complete"]
    assert done and all(0.0 <= t.metrics["accuracy"] <= 1.0 for t in done)
    assert all(t.cost["macs_m"] <= 0.4 for t in done)
    assert not [t for t in result.trials if t.status == "failed"]
