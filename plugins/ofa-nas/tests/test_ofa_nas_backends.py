"""The backends cost the evaluator's network (ctx.build_model) and nothing else:
MACs equal the evaluator's own count, the latency table decomposes whatever
module it is handed, measures what it lacks and caches it."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from hwaml import BuiltModel, Candidate, Categorical, EvalResult, SearchSpace, hookimpl
from hwaml.plugins import PluginError
from hwaml.testing import make_context
from hwaml_ofa_nas.backends import HostCpuLatencyBackend, MacsBackend
from hwaml_ofa_nas.evaluator import OFAEvaluator
from hwaml_ofa_nas.latency_lut import LatencyLUT, LUTError
from hwaml_ofa_nas.layers import decompose, module_macs
from hwaml_ofa_nas.predictors import count_params
from hwaml_ofa_nas.supernet import OFAMobileNetV3, build_subnet

QUICK = {"warmup": 1, "repeats": 2, "calibrate": 0}


def test_macs_backend_equals_the_evaluators_count(trained_tiny, tmp_path):
    ev = OFAEvaluator("test_tiny", checkpoint=str(trained_tiny[0]), train_if_missing=False, calibration_size=50, progress=False)
    ctx = make_context(tmp_path / "run", evaluator=ev, backends={"macs": MacsBackend()})
    rng = np.random.default_rng(11)
    for _ in range(6):
        cand = Candidate(ctx.space.sample(rng))
        built = ctx.build_model(cand)
        report = ctx.cost_fn(cand)
        assert report.metrics["macs_m"] * 1e6 == pytest.approx(built.macs, abs=1e-6)
        assert round(report.metrics["macs_m"] * 1e6) == built.macs
        assert round(report.metrics["params_m"] * 1e6) == count_params(ev.arch, cand.config)
        assert report.source == "macs" and report.info["macs"]["evaluator_macs_m"] == built.macs / 1e6


# -- a network that is not an OFA sub-network --------------------------------


class _Block(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = torch.relu(self.bn(self.pw(self.dw(x))))
        return x + y if self.res else y


class _TinyNet(nn.Module):
    """torchvision-like: ``features`` (a Sequential of blocks), pooling, ``classifier``."""

    def __init__(self, width):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()),
            _Block(width, width),
            _Block(width, 2 * width, stride=2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width, 10))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3), keepdim=True))


class _TinyNetEvaluator:
    """Any NN evaluator: its own space and networks."""

    @hookimpl
    def metric_names(self, ctx):
        return ["accuracy"]

    @hookimpl
    def search_space(self, ctx):
        return SearchSpace([Categorical("width", [4, 8]), Categorical("resolution", [8, 12])], name="tinynet")

    @hookimpl
    def evaluate(self, candidate, ctx):
        return EvalResult({"accuracy": 0.5})

    @hookimpl
    def build_model(self, candidate, trial, ctx):
        r = candidate.config["resolution"]
        torch.manual_seed(0)
        return BuiltModel(_TinyNet(candidate.config["width"]).eval(), (3, r, r), source="tinynet")


def test_decompose_opens_sequences_of_blocks_only():
    layers = decompose(_TinyNet(4).eval(), (3, 8, 8))
    assert [(l.name, l.kind) for l in layers] == [("features.0", "Sequential"), ("features.1", "_Block"), ("features.2", "_Block"), ("classifier", "Sequential")]
    assert [l.input_shape for l in layers] == [(1, 3, 8, 8), (1, 4, 4, 4), (1, 4, 4, 4), (1, 8, 1, 1)]
    assert layers[-1].output_shape == (1, 10)
    cfg = OFAMobileNetV3("test_tiny").max_config()
    ofa = decompose(build_subnet("test_tiny", cfg).eval(), (3, 16, 16))
    assert [l.name for l in ofa] == ["stem", "first_block"] + [f"blocks.{i}" for i in range(len(ofa) - 3)] + ["head"]
    # the same structure at the same shapes is the same key; another width is another
    assert decompose(_TinyNet(4).eval(), (3, 8, 8))[1].key == layers[1].key != decompose(_TinyNet(8).eval(), (3, 8, 8))[1].key


def test_host_cpu_lut_costs_the_model_it_is_handed(tmp_path):
    path = tmp_path / "lut.yaml"
    backend = HostCpuLatencyBackend(lut_path=str(path), measure=QUICK, progress=False)
    ctx = make_context(tmp_path / "run", evaluator=_TinyNetEvaluator(), backends={"lut": backend})
    small, big = Candidate({"width": 4, "resolution": 8}), Candidate({"width": 8, "resolution": 12})
    rep = backend.cost(candidate=small, ctx=ctx)
    model = ctx.build_model(small)
    layers = decompose(model.module, model.input_shape)
    assert rep.source == "host_cpu_lut" and rep.metrics["latency_ms"] > 0 and rep.info["measured_now"] == len({l.key for l in layers})
    lut = backend.lut(ctx)
    assert set(lut.entries) == {l.key for l in layers}  # what it measured is the network it was handed
    assert rep.metrics["latency_ms"] == pytest.approx(lut.predict(layers, "torch"))
    assert backend.cost(candidate=big, ctx=ctx).info["measured_now"] > 0
    # a handed-in model decides what is costed: swap the evaluator's network for the bigger one
    swapped = replace(ctx, build_model=lambda c, trial=None: ctx.build_model(big))
    assert backend.cost(candidate=small, ctx=swapped).metrics["latency_ms"] == pytest.approx(backend.cost(candidate=big, ctx=ctx).metrics["latency_ms"])
    # the table is cached: a new backend (another process) measures nothing and predicts the same
    again = HostCpuLatencyBackend(lut_path=str(path), measure=QUICK, measure_missing=False, progress=False)
    rep2 = again.cost(candidate=small, ctx=ctx)
    assert rep2.info["measured_now"] == 0 and rep2.metrics == rep.metrics
    assert LatencyLUT.load(path).entries == backend.lut(ctx).entries
    # without measuring, a layer the table lacks is named
    other = Candidate({"width": 8, "resolution": 8})
    fresh = HostCpuLatencyBackend(lut_path=str(tmp_path / "small.yaml"), measure=QUICK, progress=False)
    fresh.cost(candidate=small, ctx=ctx)
    strict = HostCpuLatencyBackend(lut_path=str(tmp_path / "small.yaml"), measure=QUICK, measure_missing=False, progress=False)
    with pytest.raises(LUTError, match="no entry for layer 'features.0'"):
        strict.cost(candidate=other, ctx=ctx)
    with pytest.raises(FileNotFoundError, match="lut build"):
        HostCpuLatencyBackend(lut_path=str(tmp_path / "none.yaml"), measure_missing=False).cost(candidate=small, ctx=ctx)


def test_host_cpu_lut_calibrates_on_networks_of_the_run(tmp_path):
    backend = HostCpuLatencyBackend(lut_path=str(tmp_path / "lut.json"), measure={**QUICK, "calibrate": 3}, progress=False)
    asked = []
    ctx = make_context(tmp_path / "run", evaluator=_TinyNetEvaluator())
    counting = replace(ctx, build_model=lambda c, trial=None: (asked.append(dict(c.config)), ctx.build_model(c))[1])
    backend.cost(candidate=Candidate({"width": 4, "resolution": 8}), ctx=counting)
    cal = backend.lut(counting).calibration["torch"]
    assert cal["n"] == 3 and "tinynet" in cal["source"] and cal["scale"] > 0
    assert len(asked) == 4 and all(ctx.space.validate(c) == c for c in asked)  # 3 calibration networks of the space, then the candidate
    # a second cost does not calibrate again
    backend.cost(candidate=Candidate({"width": 8, "resolution": 12}), ctx=counting)
    assert len(asked) == 5


def test_nn_backends_need_the_evaluators_network(tmp_path):
    ctx = make_context(tmp_path)
    for backend in (MacsBackend(), HostCpuLatencyBackend(lut_path=str(tmp_path / "l.yaml"), measure=QUICK)):
        with pytest.raises(PluginError, match="build_model"):
            backend.cost(candidate=Candidate({"width": 4, "resolution": 8}), ctx=ctx)


def test_macs_of_another_evaluators_network(tmp_path):
    ctx = make_context(tmp_path, evaluator=_TinyNetEvaluator(), backends={"macs": MacsBackend()})
    w, r = 4, 8
    rep = ctx.cost_fn(Candidate({"width": w, "resolution": r}))
    # stem 3x3 conv at 4x4 output, block 1 (dw + pw at 4x4), block 2 (dw at 2x2 + pw), the classifier
    expect = 16 * 3 * w * 9 + 16 * w * 9 + 16 * w * w + 4 * w * 9 + 4 * w * 2 * w + 2 * w * 10
    assert round(rep.metrics["macs_m"] * 1e6) == expect == module_macs(_TinyNet(w).eval(), (3, r, r)) == module_macs(_TinyNet(w).eval(), (3, r, r), whole=True)


class _GlueNet(nn.Module):
    """Arithmetic in the network's own forward, between its layers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.w = nn.Parameter(torch.randn(4, 5))
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)) @ self.w)


def test_layered_macs_count_the_networks_own_arithmetic_too():
    net = _GlueNet().eval()
    assert [l.name for l in decompose(net, (3, 8, 8))] == ["conv", "fc"]
    assert module_macs(net, (3, 8, 8)) == module_macs(net, (3, 8, 8), whole=True) == 6 * 6 * 4 * 3 * 9 + 4 * 5 + 5 * 2


def test_image_backends_refuse_a_token_model_by_its_input_type(tmp_path):
    import torch.nn as nn

    from hwaml import BuiltModel, Candidate
    from hwaml.plugins import PluginError
    from hwaml.testing import make_context
    from hwaml_ofa_nas.backends import MacsBackend

    ctx = make_context(tmp_path)
    lm = BuiltModel(nn.Embedding(10, 4), (16,), input_dtype="int64", source="an_lm")
    from dataclasses import replace

    ctx = replace(ctx, build_model=lambda c, trial=None: lm)
    with pytest.raises(PluginError, match=r"costs image networks.*an_lm.*int64 input of shape \(16,\)"):
        MacsBackend().cost(candidate=Candidate({}), ctx=ctx)
