"""Circuit graph: vertices, shared parameters, adjacency, features, action mapping."""

import networkx as nx
import numpy as np
import pytest

from hwaml_gcn_rl_circuit.circuits import CIRCUITS, get_circuit
from hwaml_gcn_rl_circuit.evaluator import circuit_space, nominal_config
from hwaml_gcn_rl_circuit.graph import ACTION_DIM, FEATURE_DIM, CircuitGraph
from hwaml_gcn_rl_circuit.technology import TECHNOLOGIES


def amp_graph(node="gf180mcu"):
    return CircuitGraph.from_circuit(get_circuit("two_stage_amp"), TECHNOLOGIES[node])


def test_vertices_are_the_components_that_shape_the_loop():
    g = amp_graph()
    assert g.vertices == ["Ib", "M1", "M2", "M3", "M4", "M5", "M8", "M6", "M7", "Cc", "CL"]
    # the fixed load capacitance is a vertex without actions; the test bench's DC-feedback cap is none
    assert g.action_mask[g.vertices.index("CL")].sum() == 0 and "Cdc" not in g.vertices
    assert g.types[g.vertices.index("Ib")] == "current_source"
    assert g.types[g.vertices.index("M3")] == "pmos"
    # the matched pair shares W and L
    assert g.vertex_params[g.vertices.index("M1")] == g.vertex_params[g.vertices.index("M2")] == ("w1", "l1")


def test_edges_follow_signal_nets_not_supplies():
    g = amp_graph()
    nxg = g.nx_graph
    assert nxg.has_edge("M1", "M2")  # the tail net
    assert "tail" in nxg.edges["M1", "M5"]["nets"]
    assert nxg.has_edge("M6", "Cc") and nxg.has_edge("M2", "Cc")  # Miller cap between x2 and out
    assert not nxg.has_edge("M3", "M6") or "vdd" not in nxg.edges["M3", "M6"]["nets"]
    a = g.adjacency
    assert (a == a.T).all() and np.trace(a) == 0
    an = g.normalized_adjacency()
    deg = a.sum(1) + 1
    i, j = g.vertices.index("M1"), g.vertices.index("M2")
    assert an[i, j] == pytest.approx(1.0 / np.sqrt(deg[i] * deg[j]))


def test_features_carry_type_technology_and_sizes():
    g180, g45 = amp_graph("gf180mcu"), amp_graph("sky130")
    circuit = get_circuit("two_stage_amp")
    x = g180.features(nominal_config(circuit, TECHNOLOGIES["gf180mcu"]))
    assert x.shape == (g180.n, FEATURE_DIM)
    assert (x[:, :5].sum(1) == 1).all()
    assert not np.allclose(g180.features(), g45.features())  # technology features differ
    assert np.abs(x).max() <= 2.0
    # the paper's h: each transistor its own polarity's model features, passives none
    x0, tf = g180.features(), g180.tech_features
    n, p, c = (g180.types.index(t) for t in ("nmos", "pmos", "capacitor"))
    assert x0[n, 5:8] == pytest.approx([tf[0], tf[2], tf[4]]) and x0[p, 5:8] == pytest.approx([tf[1], tf[3], tf[5]])
    assert (x0[c, 5:8] == 0).all() and x0[c, 8:10] == pytest.approx(tf[6:8])
    assert (x0[:, -2:] == 0).all() and not (x[:, -2:] == 0).all()  # sizes only when asked for


@pytest.mark.parametrize("name", sorted(CIRCUITS))
def test_actions_and_configs_round_trip(name):
    circuit = get_circuit(name)
    space = circuit_space(circuit, TECHNOLOGIES["sky130"])
    g = space.meta["graph"]
    assert set(g.ranges) == {d.name for d in space.dims}
    cfg = space.sample(np.random.default_rng(1))
    a = g.actions_from_config(cfg)
    assert a.shape == (g.n, ACTION_DIM) and np.abs(a).max() <= 1.0
    back = g.config_from_actions(a)
    space.validate(back)
    for k in cfg:
        assert back[k] == pytest.approx(cfg[k], rel=1e-5)
    assert (a * (1 - g.action_mask) == 0).all()


def test_shared_parameters_take_the_mean_action():
    g = amp_graph()
    a = np.zeros((g.n, ACTION_DIM))
    a[g.vertices.index("M1"), 0] = 1.0
    a[g.vertices.index("M2"), 0] = -1.0
    cfg = g.config_from_actions(a)
    r = g.ranges["w1"]
    assert cfg["w1"] == pytest.approx(r.from_unit(0.5))


def test_the_ldo_feedback_loop_is_in_the_graph():
    """The divider closes the loop through the test bench's loop-break inductor: R1/R2 reach M1."""
    g = CircuitGraph.from_circuit(get_circuit("ldo"), TECHNOLOGIES["sky130"])
    nxg = g.nx_graph
    assert {"R1", "R2", "Cc", "CL", "Mp"} <= set(g.vertices) and "Cinj" not in g.vertices and "Lbrk" not in g.vertices
    assert nxg.has_edge("R1", "M1") and nxg.has_edge("R2", "M1")
    assert nx.has_path(nxg, "M1", "Mp") and nxg.has_edge("Mp", "R1")
    # R1 and R2 share rfb: two vertices, one parameter
    assert g.vertex_params[g.vertices.index("R1")] == g.vertex_params[g.vertices.index("R2")] == ("rfb",)


def test_technology_features_come_from_the_models():
    from hwaml_gcn_rl_circuit.technology import characterize

    g = amp_graph("sky130")
    c = characterize("sky130")
    assert g.tech_features[0] == pytest.approx(c["vth_n"] / 0.5) and g.tech_features[2] == pytest.approx(c["gm_id_n"] / 20.0)
