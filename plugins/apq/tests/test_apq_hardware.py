import json

import pytest
from hwaml import Candidate
from hwaml.testing import BackendContract, make_context
from hwaml_ofa_nas.supernet import supernet_config

from hwaml_apq.backends import BitFusionBackend
from hwaml_apq.hardware import BitFusionConfig, LayerShape, build_lut, layer_cost, network_layers
from hwaml_apq.network import build_untrained, quantize_subnet
from hwaml_apq.space import extreme_config, joint_space

HW = BitFusionConfig()


def test_fusion_units_run_faster_at_fewer_bits():
    conv = LayerShape(96, 96, 28, 1, 1, 0, 1, 8, 8)
    c8 = layer_cost(conv, HW)
    c4 = layer_cost(LayerShape(96, 96, 28, 1, 1, 0, 1, 4, 4), HW)
    c6 = layer_cost(LayerShape(96, 96, 28, 1, 1, 0, 1, 6, 6), HW)
    assert HW.macs_per_unit_cycle(8, 8) == 1 and HW.macs_per_unit_cycle(4, 4) == 4 and HW.macs_per_unit_cycle(8, 4) == 2
    assert c4.compute_cycles == pytest.approx(c8.compute_cycles / 4)
    assert c6.compute_cycles == pytest.approx(c8.compute_cycles)  # 6-bit runs on 8-bit engines ...
    assert c6.dram_bytes < c8.dram_bytes and c6.energy_mj < c8.energy_mj  # ... but moves fewer bytes
    assert c4.latency_ms < c8.latency_ms


def test_depthwise_convolutions_underuse_the_array():
    dense = layer_cost(LayerShape(96, 96, 14, 3, 1, 1, 1, 8, 8), HW)
    dw = layer_cost(LayerShape(96, 96, 14, 3, 1, 1, 96, 8, 8), HW)
    assert dw.utilisation < 0.5 < dense.utilisation


def test_weights_refetched_when_they_do_not_fit():
    small = BitFusionConfig(wbuf_kb=1, ibuf_kb=1)
    big = LayerShape(256, 256, 28, 1, 1, 0, 1, 8, 8)
    assert layer_cost(big, small).dram_bytes > layer_cost(big, HW).dram_bytes


def test_network_layers_read_the_bits_of_quantized_layers():
    arch = supernet_config("test_tiny")
    space = joint_space(arch)
    res = space.meta["apq"]["resolution"]
    q = quantize_subnet(build_untrained(arch, extreme_config(space, "max", bits=4), res), arch, inplace=True)
    layers = network_layers(q, (3, res, res))
    assert {(l.w_bits, l.a_bits) for l in layers} >= {(4, 4), (8, 8)}
    assert any(l.groups > 1 for l in layers)
    fp = network_layers(build_untrained(arch, extreme_config(space, "max"), res), (3, res, res), default_bits=8)
    assert {(l.w_bits, l.a_bits) for l in fp} == {(8, 8)} and len(fp) == len(layers)


def test_lut_in_the_reference_format(tmp_path):
    path = tmp_path / "lut.json"
    table = build_lut([LayerShape(96, 456, 14, 1, 1, 0, 1, 8, 8)], HW, [(4, 4), (8, 8)], str(path))
    assert set(table) == {"(96, 456, 14, 1, 1, 0, 1)-W4A4", "(96, 456, 14, 1, 1, 0, 1)-W8A8"}
    assert set(table["(96, 456, 14, 1, 1, 0, 1)-W4A4"]) == {"latency", "energy"}
    assert json.loads(path.read_text())["__config__"]["rows"] == 32


def test_lut_command(tmp_path, capsys):
    from hwaml_apq.cli import main

    (tmp_path / "hw.json").write_text(json.dumps({"rows": 16, "cols": 16}))
    assert main(["lut", "--arch", "test_tiny", "--config", str(tmp_path / "hw.json"), "--out", str(tmp_path / "t.json")]) == 0
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["__config__"]["rows"] == 16 and len(table) > 100


def test_bad_config_key_is_named():
    with pytest.raises(Exception, match="wbuf"):
        BitFusionBackend({"wbuf": 3})


class TestBitFusionContract(BackendContract):
    @pytest.fixture
    def backend(self):
        return BitFusionBackend()

    @pytest.fixture
    def candidates(self, synthetic_joint):
        import numpy as np

        ev = synthetic_joint()
        rng = np.random.default_rng(0)
        return [Candidate(ev.space.sample(rng)) for _ in range(2)]

    @pytest.fixture
    def contract_ctx(self, tmp_path, synthetic_joint):
        return make_context(tmp_path / "run", evaluator=synthetic_joint(), backends={"bitfusion": BitFusionBackend()})


def test_backend_costs_another_plugins_network(tmp_path, tiny_checkpoint):
    """The same backend on ofa-nas's full-precision networks (through build_model)."""
    from hwaml_ofa_nas.evaluator import OFAEvaluator

    ev = OFAEvaluator(arch="test_tiny", checkpoint=str(tiny_checkpoint), train_if_missing=False, progress=False)
    ctx = make_context(tmp_path, evaluator=ev, backends={"bitfusion": BitFusionBackend()})
    cfg = ctx.space.sample(__import__("numpy").random.default_rng(0))
    rep = ctx.cost_fn(Candidate(cfg))
    assert rep.metrics["latency_ms"] > 0 and rep.metrics["energy_mj"] > 0


def test_cost_table_gives_the_backends_costs_without_building_networks(tmp_path, synthetic_joint):
    import numpy as np

    from hwaml_apq.costmodel import CostModelMismatch, JointCostTable

    ev = synthetic_joint()
    ctx = make_context(tmp_path, evaluator=ev, backends={"bitfusion": BitFusionBackend()})
    table = JointCostTable(ev.arch, ev.res)
    rng = np.random.default_rng(7)
    configs = [ev.space.sample(rng) for _ in range(4)] + [extreme_config(ev.space, "max", bits=8), extreme_config(ev.space, "min", bits=4)]
    for cfg in configs:
        net = quantize_subnet(build_untrained(ev.arch, cfg, ev.res), ev.arch, inplace=True)
        assert table.layers(cfg) == network_layers(net, (3, ev.res, ev.res))
    table.check(configs, ctx.cost_fn, ["latency_ms", "energy_mj"], rel_tol=1e-12)
    other = JointCostTable(ev.arch, ev.res, BitFusionConfig(frequency_mhz=250))
    with pytest.raises(CostModelMismatch, match="searcher.hardware"):
        other.check(configs[:1], ctx.cost_fn, ["latency_ms"])
    with pytest.raises(CostModelMismatch, match="macs_m"):
        table.check(configs[:1], ctx.cost_fn, ["macs_m"])


def test_evolution_with_the_table_ends_at_the_budget(tmp_path, synthetic_joint):
    """The evolution's best sits within 5% below a latency budget that half the
    random configurations meet, when accuracy grows with capacity."""
    import numpy as np

    from hwaml_apq.evolution import EvolutionConfig, evolve, make_feasibility

    ev = synthetic_joint()
    ctx = make_context(tmp_path, evaluator=ev, backends={"bitfusion": BitFusionBackend()})
    rng = np.random.default_rng(0)
    feasible = make_feasibility(ev.space, ctx, {"latency_ms": 1.0}, "table", None, "test")
    lat = [feasible.table.cost(ev.space.sample(rng))["latency_ms"] for _ in range(50)]
    budget = float(np.median(lat))
    feasible = make_feasibility(ev.space, ctx, {"latency_ms": budget}, "table", None, "test")
    cfg = EvolutionConfig(population=40, parents=10, mutations=20, crossovers=20, generations=25)
    from hwaml_apq.space import BIT_KEYS, stage_blocks

    def capacity(c):  # grows with every width, kernel and bit (the synthetic accuracy without its cap)
        return sum(b["width"] / 8 + b["kernel"] + sum(b[k] for k in BIT_KEYS) for st in ev.space.meta["apq"]["stages"] for b in stage_blocks(c, st["name"]))

    res = evolve(ev.space, lambda cs: np.array([capacity(c) for c in cs], dtype=float), rng, cfg, feasible)
    best = feasible.table.cost(res.best)["latency_ms"] / budget
    assert 0.95 <= best <= 1.0, best
    with pytest.raises(Exception, match="cost_model=backend"):
        make_feasibility(ev.space, ctx, {"macs_m": 1.0}, "table", None, "test")
