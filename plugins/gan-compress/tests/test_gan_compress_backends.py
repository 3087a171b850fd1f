"""Cost backends cost the evaluator's network through ctx.build_model."""

import pytest

from hwaml import Candidate
from hwaml.plugins import PluginError
from hwaml.testing import BackendContract, SearcherContract, make_context
from hwaml_gan_compress.backends import GanLatencyBackend, GanMacsBackend
from hwaml_gan_compress.evolution import GanEvolutionSearcher
from hwaml_gan_compress.generators import ChannelConfig, MobileResnetGenerator, ResnetGenerator
from hwaml_gan_compress.macs import count_module_macs


def _candidates():
    return [Candidate(ChannelConfig.uniform(c).to_dict()) for c in (1, 4)] + [Candidate(ChannelConfig(4, 3, 2, 1, 2, 3, 4, 1).to_dict())]


class _Contexts:
    @pytest.fixture
    def candidates(self):
        return _candidates()

    @pytest.fixture
    def contract_ctx(self, tmp_path, paired_evaluator, backend):
        return make_context(tmp_path / "run", evaluator=paired_evaluator, backends={"b": backend})


class TestMacsBackendContract(_Contexts, BackendContract):
    @pytest.fixture
    def backend(self):
        return GanMacsBackend()


class TestLatencyBackendContract(_Contexts, BackendContract):
    @pytest.fixture
    def backend(self):
        return GanLatencyBackend(warmup=1, repeats=3)


def test_macs_backend_counts_the_evaluators_network_and_the_teacher_costs_more(paired_evaluator, tmp_path):
    backend = GanMacsBackend()
    ctx = make_context(tmp_path, evaluator=paired_evaluator, backends={"gan_macs": backend})
    small, big = _candidates()[:2]
    a = backend.cost(candidate=small, ctx=ctx).metrics["macs_m"]
    b = backend.cost(candidate=big, ctx=ctx).metrics["macs_m"]
    assert a < b == pytest.approx(count_module_macs(MobileResnetGenerator(ChannelConfig.uniform(4), 1, 1, 3), (1, 28, 28)) / 1e6)
    assert count_module_macs(ResnetGenerator(1, 1, 4, 3), (1, 28, 28)) / 1e6 > b


def test_latency_is_the_smallest_cpu_or_wall_time_and_bad_options_are_named():
    from hwaml_gan_compress.export import compare_latency, onnx_latency_ms

    small, big = MobileResnetGenerator(ChannelConfig.uniform(1), 1, 1, 3), ResnetGenerator(1, 1, 16, 3)
    (s, b) = compare_latency([small, big], (1, 1, 28, 28), rounds=2, repeats=5)
    assert 0 < s["cpu"] < b["cpu"] and s["cpu"] <= s["wall"] * 1.05 + 0.05  # onnxruntime computes on the calling thread
    assert onnx_latency_ms(big, (1, 1, 28, 28), warmup=1, repeats=3, clock="wall", graph_optimization="extended") > 0
    with pytest.raises(ValueError, match="clock"):
        GanLatencyBackend(clock="gpu")
    with pytest.raises(ValueError, match="graph_optimization"):
        GanLatencyBackend(graph_optimization="max")


def test_backends_need_an_nn_evaluator(tmp_path):
    with pytest.raises(PluginError, match="build_model"):
        GanMacsBackend().cost(candidate=_candidates()[0], ctx=make_context(tmp_path))


class TestGanEvolutionContract(SearcherContract):
    @pytest.fixture
    def searcher_factory(self):
        return lambda: GanEvolutionSearcher(population_size=6, parents=3, mutations=3, crossovers=3)


def test_gan_evolution_breeds_from_the_best_and_rejects_over_budget(paired_evaluator, tmp_path):
    from hwaml.testing import run_search

    result = run_search(
        {"evaluator": paired_evaluator, "searcher": GanEvolutionSearcher(population_size=5, parents=2, mutations=3, crossovers=2), "backend.gan_macs": GanMacsBackend()},
        tmp_path / "run", trials=15, objectives={"fid": "min"}, constraints={"macs_m": 0.4},
    )  # fmt: skip
    trials = result.trials
    origins = [t.candidate.origin for t in trials]
    assert origins[:5] == ["random"] * 5 and {"mutation", "crossover"} <= set(origins[5:])
    assert all(t.cost["macs_m"] <= 0.4 for t in trials)  # rejected before they were proposed
    best = sorted((t for t in trials[:5]), key=lambda t: t.metrics["fid"])[:2]
    for t in trials[5:10]:
        assert set(t.candidate.meta["parents"]) <= {b.number for b in best}
