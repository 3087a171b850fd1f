"""Circuit -> graph -> GCN inputs.

The GCN-RL state is the circuit graph: one vertex per transistor, resistor and
capacitor -- sized or fixed (a load or photodiode capacitance, the LDO's feedback
divider) -- and per sized bias source, an edge wherever two components share a net
(a wire). Test-bench elements are no vertices; a loop-break inductor is a wire, so
the nets it joins are one net and a feedback path closed through the bench stays an
edge (the LDO's divider R1/R2 to the OTA input M1). Supply and ground nets are left
out -- every device touches them, so they would connect everything to everything and
carry no topology. Fixed components have their action slots masked.

Each vertex has a feature vector

    [one-hot component type t | its device's technology features h | Vdd, Lmin | index k/N | sizes]

-- the paper's ``(k, t, h)``: a transistor's ``h`` are its own polarity's features measured with
the real models (threshold, gm/Id, intrinsic gain: an nMOS vertex carries the nMOS figures, a
pMOS vertex the pMOS ones), a passive's or bias source's are zero; the node's supply and minimum
length are on every vertex. The state is static, as in the paper (a one-step episode sees the
same state every time); the last slots hold the best design's sizes only when the searcher asks
for them (``agent.state_sizes``, not in the paper) and are zero otherwise. Each vertex has an action
of :data:`ACTION_DIM` numbers in ``[-1, 1]``: ``(W, L)`` for a transistor, the
value for a passive or a current source (the second slot masked). Actions map
linearly onto each parameter's (log-)range. Matched devices (a differential
pair) are separate vertices that share their parameters; the sizing takes the
mean of their actions -- the paper's "refine" step that enforces matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import networkx as nx
import numpy as np

from .netlist import SUPPLY_NETS, Element
from .technology import N_TECH_FEATURES, Technology

#: the vertex types every circuit draws from (fixed, so agents transfer between topologies)
COMPONENT_TYPES = ("nmos", "pmos", "resistor", "capacitor", "current_source")
ACTION_DIM = 2
#: per-vertex technology slots: the device's (Vth, gm/Id, log gain) and the node's (Vdd, Lmin)
VERTEX_TECH = 5
FEATURE_DIM = len(COMPONENT_TYPES) + VERTEX_TECH + 1 + ACTION_DIM
# which of Technology.features() (vth n/p, gm/Id n/p, log gain n/p, Vdd, Lmin) a vertex type gets
_DEVICE_FEATURES = {"nmos": (0, 2, 4), "pmos": (1, 3, 5)}
_NODE_FEATURES = (6, 7)
assert N_TECH_FEATURES == 8


@dataclass(frozen=True)
class ParamRange:
    low: float
    high: float
    log: bool

    def to_unit(self, v: float) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(1.0, max(0.0, float(u)))
        if self.log:
            return float(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return float(self.low + u * (self.high - self.low))


@dataclass
class CircuitGraph:
    """The sized components of a circuit as a graph, with everything the agent needs.

    ``vertices`` are component names, ``types`` their component type,
    ``vertex_params[i]`` the sizing parameters behind vertex i's action slots,
    ``adjacency`` the symmetric 0/1 matrix (no self loops), ``nx_graph`` the
    networkx graph (vertex attributes: ``type``, ``params``; edge attribute
    ``nets``).
    """

    name: str
    technology: str
    vertices: List[str]
    types: List[str]
    vertex_params: List[Tuple[str, ...]]
    ranges: Dict[str, ParamRange]
    tech_features: List[float]
    nx_graph: nx.Graph = field(repr=False)

    # -- construction --------------------------------------------------------

    @classmethod
    def from_elements(cls, name: str, elements: Sequence[Element], ranges: Mapping[str, ParamRange], tech: Technology,
                      bench: Optional[Mapping[str, bool]] = None) -> "CircuitGraph":
        """Vertices: every transistor, resistor and capacitor (sized or fixed) and every sized
        bias source; edges: every signal net two of them share. ``bench`` names test-bench
        elements that are not vertices; those marked ``True`` are wires (a loop-break
        inductor), so the nets they join are one net and the feedback loop stays closed."""
        bench = {k.lower(): v for k, v in dict(bench or {}).items()}
        parent: Dict[str, str] = {}

        def find(n: str) -> str:
            while parent.get(n, n) != n:
                n = parent[n]
            return n

        for e in elements:
            if bench.get(e.name.lower()):
                a, b = find(e.nets[0]), find(e.nets[1])
                if a != b:
                    parent[max(a, b)] = min(a, b)
        verts = []
        for e in elements:
            if e.name.lower() in bench:
                continue
            sized = any(p in ranges for p in e.params)
            if e.kind in ("nmos", "pmos", "resistor", "capacitor") or (e.kind == "current_source" and sized):
                verts.append(e)
        for e in verts:
            if e.kind not in COMPONENT_TYPES:
                raise ValueError(f"{name}: element {e.name} (line {e.line}) is a {e.kind}; sized components must be one of {COMPONENT_TYPES}")
            want = 2 if e.kind in ("nmos", "pmos") else 1
            n_sized = len([p for p in e.params if p in ranges])
            if n_sized not in (0, want) or (e.kind in ("nmos", "pmos") and n_sized != 2):
                raise ValueError(f"{name}: element {e.name} (line {e.line}) uses {n_sized} sizing parameters {e.params}; a {e.kind} takes {want}")
        # bipartite component--net graph, projected onto components over signal nets
        nets_of = {e.name: {find(n) for n in e.nets if n not in SUPPLY_NETS} for e in verts}
        g = nx.Graph()
        for e in verts:
            g.add_node(e.name, type=e.kind, params=tuple(p for p in e.params if p in ranges))
        members: Dict[str, List[str]] = {}
        for e in verts:
            for net in nets_of[e.name]:
                if net not in SUPPLY_NETS:
                    members.setdefault(net, []).append(e.name)
        for net, ms in members.items():
            ms = sorted(set(ms))
            for i, a in enumerate(ms):
                for b in ms[i + 1 :]:
                    if g.has_edge(a, b):
                        g.edges[a, b]["nets"].append(net)
                    else:
                        g.add_edge(a, b, nets=[net])
        return cls(
            name=name,
            technology=tech.name,
            vertices=[e.name for e in verts],
            types=[e.kind for e in verts],
            vertex_params=[tuple(p for p in e.params if p in ranges) for e in verts],
            ranges=dict(ranges),
            tech_features=list(tech.features()),
            nx_graph=g,
        )

    @classmethod
    def from_circuit(cls, circuit, tech: Technology) -> "CircuitGraph":
        ranges = {}
        for p in circuit.params:
            lo, hi, _ = p.bounds(tech)
            ranges[p.name] = ParamRange(lo, hi, p.log)
        return cls.from_elements(circuit.name, circuit.template().elements, ranges, tech, circuit.bench_elements)

    # -- GCN inputs ----------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self.vertices)

    @property
    def adjacency(self) -> np.ndarray:
        return nx.to_numpy_array(self.nx_graph, nodelist=self.vertices, dtype=np.float32)

    def normalized_adjacency(self) -> np.ndarray:
        """``D^-1/2 (A + I) D^-1/2`` (Kipf and Welling's renormalisation)."""
        a = self.adjacency + np.eye(self.n, dtype=np.float32)
        d = 1.0 / np.sqrt(a.sum(axis=1))
        return (a * d[:, None] * d[None, :]).astype(np.float32)

    @property
    def action_mask(self) -> np.ndarray:
        m = np.zeros((self.n, ACTION_DIM), dtype=np.float32)
        for i, ps in enumerate(self.vertex_params):
            m[i, : len(ps)] = 1.0
        return m

    def features(self, config: Mapping[str, float] | None = None) -> np.ndarray:
        """Vertex features ``(t, h, k)``; ``config`` fills the size slots (zeros if None)."""
        x = np.zeros((self.n, FEATURE_DIM), dtype=np.float32)
        off = len(COMPONENT_TYPES)
        tf = self.tech_features
        for i, (t, ps) in enumerate(zip(self.types, self.vertex_params)):
            x[i, COMPONENT_TYPES.index(t)] = 1.0
            for j, f in enumerate(_DEVICE_FEATURES.get(t, ())):
                x[i, off + j] = tf[f]
            for j, f in enumerate(_NODE_FEATURES):
                x[i, off + 3 + j] = tf[f]
            x[i, off + VERTEX_TECH] = i / max(1, self.n - 1)
            if config is not None:
                for j, p in enumerate(ps):
                    x[i, off + VERTEX_TECH + 1 + j] = 2.0 * self.ranges[p].to_unit(float(config[p])) - 1.0
        return x

    # -- actions <-> sizing --------------------------------------------------

    def config_from_actions(self, actions: np.ndarray) -> Dict[str, float]:
        """Per-vertex actions in [-1, 1] -> a sizing (mean over vertices sharing a parameter)."""
        actions = np.asarray(actions, dtype=np.float64).reshape(self.n, ACTION_DIM)
        acc: Dict[str, List[float]] = {}
        for i, ps in enumerate(self.vertex_params):
            for j, p in enumerate(ps):
                acc.setdefault(p, []).append(float(actions[i, j]))
        missing = [p for p in self.ranges if p not in acc]
        if missing:
            raise ValueError(f"{self.name}: parameters {missing} belong to no vertex of the graph")
        return {p: self.ranges[p].from_unit((float(np.mean(v)) + 1.0) / 2.0) for p, v in acc.items()}

    def actions_from_config(self, config: Mapping[str, float]) -> np.ndarray:
        a = np.zeros((self.n, ACTION_DIM), dtype=np.float32)
        for i, ps in enumerate(self.vertex_params):
            for j, p in enumerate(ps):
                a[i, j] = 2.0 * self.ranges[p].to_unit(float(config[p])) - 1.0
        return np.clip(a, -1.0, 1.0)

    def describe(self) -> Dict[str, object]:
        return {
            "vertices": self.vertices,
            "types": self.types,
            "params": {v: list(p) for v, p in zip(self.vertices, self.vertex_params)},
            "edges": [(a, b, d["nets"]) for a, b, d in self.nx_graph.edges(data=True)],
        }

    def __repr__(self) -> str:
        return f"CircuitGraph({self.name} on {self.technology}: {self.n} vertices, {self.nx_graph.number_of_edges()} edges)"
