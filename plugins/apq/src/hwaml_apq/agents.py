"""AMC and HAQ as hwaml searchers: a DDPG agent walks the network layer by
layer, each episode is one proposed candidate, and the evaluator's accuracy
of that candidate is the episode's reward.

**AMC** (He et al., ECCV 2018), ``searcher=amc``: the action of a layer is its
preserve ratio, here the position along the layer's allowed widths (APQ's
middle widths from 4x to 6x in steps of 8, or OFA's expand ratios on
``evaluator=ofa_digits``). The state is AMC's layer embedding (index, output
and input channels, feature size, stride, kernel, MACs, MACs already
removed, MACs of the layers still to come, previous action), each feature
normalised over the network's layers. *Resource-constrained action
bounding*: the action is lowered until the network, with this layer at the
chosen width and every later layer at its smallest, meets the run's
constraints through the hardware model (``ctx.cost_fn``). The channels kept
are the most important ones by weight magnitude; the evaluator's
``reconstruct`` option refits each pruned block's projection by least squares
to the unpruned network's outputs (AMC's reconstruction), and batch norm is
recalibrated. Reward: accuracy
(AMC's ``R_err = -error``, up to a constant).

**HAQ** (Wang et al., CVPR 2019), ``searcher=haq``: four actions per block,
the bit-widths of the point-wise weights and activations and of the
depth-wise weights and activations (state: index, channels, stride, kernel,
feature size, parameters, depth-wise flag, weight/activation flag, previous
action). After the episode, *bits are reduced until the budget holds*: the
layers' bit-widths are lowered one step at a time, layer after layer, until
the hardware model's latency/energy meets the constraints. Reward:
``0.1 x (quantized accuracy - full-precision accuracy)`` (HAQ's lambda = 0.1),
the full-precision accuracy being the evaluator's ``accuracy_fp32`` of the
same network.

Both keep the rest of the configuration from ``base_config`` (default: the
largest network at 8 bits), so they run on any evaluator whose space exposes
the layers they act on; without a constraint they refuse to start (the
budget is what both are about). Every candidate carries its episode's states
and actions, so a resumed run rebuilds the agent exactly.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hwaml import Candidate, RunContext, SearchSpace, Trial, hookimpl
from hwaml.config import as_config
from hwaml.constraints import is_feasible, normalise_constraints
from hwaml.plugins import PluginError

from .ddpg import DDPG, DDPGConfig
from .space import BIT_KEYS, extreme_config

__all__ = ["AMCSearcher", "HAQSearcher", "LayerChoice", "pruning_layers", "quant_layers_of", "set_choice"]

AMC_AGENT = DDPGConfig(hidden1=300, hidden2=300, warmup_episodes=100, noise_decay=0.95, buffer_size=2000)
HAQ_AGENT = DDPGConfig(hidden1=400, hidden2=300, warmup_episodes=20, noise_decay=0.99, buffer_size=2000)


class LayerChoice:
    """One decision: where it lives in the configuration, its allowed values, and its features."""

    def __init__(self, path: Tuple[Any, ...], choices: Sequence[Any], features: Dict[str, float], macs: Callable[[Any], float] = lambda v: 0.0):
        self.path = path
        self.choices = list(choices)
        self.features = features
        self.macs = macs

    def index_of(self, action: float) -> int:
        return int(round(float(np.clip(action, 0, 1)) * (len(self.choices) - 1)))


def _get(config: Mapping[str, Any], path: Sequence[Any]) -> Any:
    v: Any = config
    for p in path:
        v = v[p]
    return v


def set_choice(config: Dict[str, Any], layer: LayerChoice, value: Any) -> None:
    parent = _get(config, layer.path[:-1])
    parent[layer.path[-1]] = value


def _apq_block_paths(config: Mapping[str, Any], meta: Mapping[str, Any]) -> List[Tuple[Tuple[Any, ...], List[int], int]]:
    out = []
    for s, st in enumerate(meta["stages"]):
        out.append(((st["name"], "first"), st["first_widths"], s))
        for j in range(len(config[st["name"]]["rest"])):
            out.append(((st["name"], "rest", j), st["rest_widths"], s))
    return out


def _block_shapes(space: SearchSpace, config: Mapping[str, Any]) -> List[Any]:
    from hwaml_ofa_nas.supernet import supernet_config

    from .space import joint_blocks

    arch = supernet_config(space.meta["arch"])
    return joint_blocks(arch, config, space.meta["apq"]["resolution"])


def pruning_layers(space: SearchSpace, config: Mapping[str, Any]) -> List[LayerChoice]:
    """AMC's decisions for ``config``: the middle width of every block (APQ's
    space) or its expand ratio (an OFA space)."""
    if "apq" in space.meta:
        meta = space.meta["apq"]
        shapes = _block_shapes(space, config)
        out = []
        for (path, widths, _), b in zip(_apq_block_paths(config, meta), shapes):
            o = (b.size - 1) // b.stride + 1

            def macs(mid, b=b, o=o):
                return float(b.size * b.size * b.cin * mid + o * o * mid * b.kernel**2 + o * o * mid * b.cout)

            feats = {"cout": b.cout, "cin": b.cin, "size": b.size, "stride": b.stride, "kernel": b.kernel}
            out.append(LayerChoice(path + ("width",), widths, feats, macs))
        return out
    if "ofa" in space.meta and "arch" in space.meta:
        from hwaml_ofa_nas.supernet import layer_specs, supernet_config

        arch = supernet_config(space.meta["arch"])
        expands = sorted(space.meta["ofa"]["expand_choices"])
        specs = layer_specs(arch, config)[2:-1]  # the elastic blocks
        out = []
        i = 0
        for name in space.meta["ofa"]["stage_keys"]:
            for j in range(len(config[name])):
                sp = specs[i]
                i += 1

                def macs(e, sp=sp):
                    mid = round(sp.cin * e)
                    o = sp.out_size
                    return float(sp.size**2 * sp.cin * mid + o * o * mid * sp.kernel**2 + o * o * mid * sp.cout)

                feats = {"cout": sp.cout, "cin": sp.cin, "size": sp.size, "stride": sp.stride, "kernel": sp.kernel}
                out.append(LayerChoice((name, j, "expand"), expands, feats, macs))
        return out
    raise PluginError(
        f"searcher amc needs a space whose layers have a width to prune (APQ's joint space, space.meta['apq'], or an OFA "
        f"space, space.meta['ofa']), but {space.name!r} has neither; compose it with evaluator=apq_fashion, apq_digits or ofa_digits"
    )


def quant_layers_of(space: SearchSpace, config: Mapping[str, Any]) -> List[LayerChoice]:
    """HAQ's decisions for ``config``: four bit-widths per block of APQ's space."""
    if "apq" not in space.meta:
        raise PluginError(
            f"searcher haq needs a space with per-layer bit-widths (APQ's joint space, space.meta['apq']), but {space.name!r} has "
            f"none; compose it with evaluator=apq_fashion or apq_digits"
        )
    meta = space.meta["apq"]
    shapes = _block_shapes(space, config)
    out = []
    for (path, _, _), b in zip(_apq_block_paths(config, meta), shapes):
        for key in BIT_KEYS:
            dw = key.startswith("dw")
            params = b.mid * b.kernel**2 if dw else b.mid * (b.cin + b.cout)
            feats = {"cin": b.mid if dw else b.cin, "cout": b.mid if dw else b.cout, "size": b.size, "stride": b.stride if dw else 1, "kernel": b.kernel if dw else 1, "params": params, "depthwise": float(dw), "weight": float(key.endswith("w_bits"))}
            out.append(LayerChoice(path + (key,), meta["bit_choices"], feats))
    return out


def _normalise(rows: List[Dict[str, float]]) -> np.ndarray:
    keys = list(rows[0])
    m = np.asarray([[float(r[k]) for k in keys] for r in rows], dtype=np.float32)
    span = m.max(0) - m.min(0)
    return np.where(span > 0, (m - m.min(0)) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def _scaled_constraints(constraints: Mapping[str, Any], scale: float) -> Dict[str, Dict[str, float]]:
    out = {}
    for k, b in normalise_constraints(constraints).items():
        out[k] = {kk: (v * scale if kk == "max" else v) for kk, v in b.items()}
    return out


class _AgentSearcher:
    """Shared episode bookkeeping of AMC and HAQ."""

    kind = "agent"

    def __init__(self, episodes: int, agent: Optional[Mapping[str, Any]], defaults: DDPGConfig, base_config: Optional[Mapping[str, Any]], metric: str, budget_scale: float):
        if episodes < 1:
            raise ValueError(f"{self.kind}: episodes must be >= 1, got {episodes}")
        self.episodes = int(episodes)
        self.agent_cfg = defaults if agent is None else as_config(DDPGConfig, {**defaults.__dict__, **dict(agent)}, "agent")
        self.base_config = copy.deepcopy(dict(base_config)) if base_config else None
        self.metric = metric
        self.budget_scale = float(budget_scale)
        self.agent: Optional[DDPG] = None
        self._started = 0
        self._observed = 0
        #: ``config -> config`` applied to each episode's network before it is proposed
        #: (the separate pipeline quantizes AMC's pruned networks to fit the budget)
        self.postprocess: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
        self.rewards: List[float] = []

    # subclasses: layers(space, base) and episode(...)
    def base(self, space: SearchSpace) -> Dict[str, Any]:
        if self.base_config is not None:
            return space.validate(self.base_config)
        if "apq" in space.meta:
            return extreme_config(space, "max", bits=max(space.meta["apq"]["bit_choices"]))
        if "ofa" in space.meta:
            from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config

            return space.validate(OFAMobileNetV3.extreme_config(supernet_config(space.meta["arch"]), "max"))
        raise PluginError(f"searcher {self.kind}: no base configuration for space {space.name!r}; set base_config")

    def _constraints(self, ctx: RunContext) -> Dict[str, Dict[str, float]]:
        if not ctx.constraints:
            raise PluginError(f"searcher {self.kind} searches under a resource budget: set constraints (e.g. constraints.latency_ms=0.02) and a cost backend (backend=bitfusion)")
        if ctx.cost_fn is None:
            raise PluginError(f"searcher {self.kind} needs a cost backend (e.g. backend=bitfusion) to check its budget")
        return _scaled_constraints(ctx.constraints, self.budget_scale)

    def feasible(self, ctx: RunContext, bounds) -> Callable[[Mapping[str, Any]], bool]:
        return lambda cfg: bool(is_feasible(ctx.cost_fn(Candidate(dict(cfg))), bounds))

    def reward(self, trial: Trial) -> float:
        raise NotImplementedError

    def _learn(self, history: Sequence[Trial]) -> None:
        """Feed the agent the finished episodes it has not seen, in episode order.
        Each candidate carries its episode's states and actions in its meta, so a
        resumed run rebuilds the agent exactly."""
        mine = sorted((t for t in history if t.candidate.meta.get("agent") == self.kind), key=lambda t: int(t.candidate.meta["episode"]))
        for t in mine:
            ep = int(t.candidate.meta["episode"])
            self._started = max(self._started, ep + 1)
            if ep != self._observed:
                continue
            steps = t.candidate.meta.get("transitions") or []
            states = [np.asarray(s, np.float32) for s, _ in steps]
            transitions = [(states[i], float(a), states[i + 1] if i + 1 < len(states) else states[i], i + 1 == len(states)) for i, (_, a) in enumerate(steps)]
            r = self.reward(t)
            self.rewards.append(r)
            self.agent.observe(transitions, r)
            self._observed = ep + 1

    def episode(self, space: SearchSpace, base: Dict[str, Any], ctx: RunContext, bounds) -> Tuple[Dict[str, Any], List[Tuple[np.ndarray, float, np.ndarray, bool]]]:
        raise NotImplementedError

    def n_state(self, space: SearchSpace, base: Dict[str, Any]) -> int:
        raise NotImplementedError

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        base = self.base(space)
        bounds = self._constraints(ctx)
        if self.agent is None:
            self.agent = DDPG(self.n_state(space, base), self.agent_cfg, seed=int(ctx.seed))
        self._learn(history)
        out = []
        while len(out) < n and self._started < self.episodes:
            cfg, transitions = self.episode(space, base, ctx, bounds)
            if self.postprocess is not None:
                cfg = self.postprocess(cfg)
            ep = self._started
            self._started += 1
            steps = [[[round(float(x), 6) for x in s], round(float(a), 6)] for s, a, _, _ in transitions]
            out.append(Candidate(space.validate(cfg), origin=self.kind, meta={"agent": self.kind, "episode": ep, "transitions": steps}))
        return out


class AMCSearcher(_AgentSearcher):
    """``searcher=amc``: DDPG channel pruning under the run's constraints.

    :param episodes: episodes (= trials) in all (AMC: 100 warm-up + 300).
    :param agent: :class:`~hwaml_apq.ddpg.DDPGConfig` fields to change (defaults: AMC's).
    :param base_config: the network to prune (default: the space's largest).
    :param budget_scale: the constraints' upper bounds are multiplied by it (the
        separate pipeline prunes to a looser budget before quantizing).
    """

    kind = "amc"

    def __init__(self, episodes: int = 400, agent: Optional[Mapping[str, Any]] = None, base_config: Optional[Mapping[str, Any]] = None, metric: str = "accuracy", budget_scale: float = 1.0):
        super().__init__(episodes, agent, AMC_AGENT, base_config, metric, budget_scale)

    def n_state(self, space, base):
        return 10  # index, 5 shape features, MACs; reduced, rest, previous action

    def reward(self, trial: Trial) -> float:
        v = trial.value(self.metric) if trial.ok else 0.0
        return float(v) if math.isfinite(v) else 0.0

    def episode(self, space, base, ctx, bounds):
        layers = pruning_layers(space, base)
        feasible = self.feasible(ctx, bounds)
        static = _normalise([{"t": i, **l.features, "macs": l.macs(l.choices[-1])} for i, l in enumerate(layers)])
        total = sum(l.macs(l.choices[-1]) for l in layers) or 1.0
        cfg = copy.deepcopy(base)
        for l in layers:  # start from the smallest everywhere: bounding looks ahead with it
            set_choice(cfg, l, l.choices[0])
        transitions = []
        reduced, prev = 0.0, 1.0
        states = []
        for i, l in enumerate(layers):
            rest = sum(x.macs(x.choices[-1]) for x in layers[i + 1 :]) / total
            s = np.concatenate([static[i], np.asarray([reduced / total, rest, prev], np.float32)])
            idx = l.index_of(self.agent.act(s, ctx.rng))
            # resource-constrained action bounding: later layers at their smallest must still fit
            while idx > 0:
                set_choice(cfg, l, l.choices[idx])
                if feasible(cfg):
                    break
                idx -= 1
            set_choice(cfg, l, l.choices[idx])
            a = idx / max(1, len(l.choices) - 1)
            reduced += l.macs(l.choices[-1]) - l.macs(l.choices[idx])
            prev = a
            states.append((s, a))
        for i, (s, a) in enumerate(states):
            s2 = states[i + 1][0] if i + 1 < len(states) else s
            transitions.append((s, a, s2, i + 1 == len(states)))
        return cfg, transitions


class HAQSearcher(_AgentSearcher):
    """``searcher=haq``: DDPG mixed-precision quantization under the run's constraints.

    :param episodes: episodes (= trials) in all (HAQ: 600).
    :param agent: :class:`~hwaml_apq.ddpg.DDPGConfig` fields to change (defaults: HAQ's).
    :param base_config: the network to quantize (default: the space's largest).
    :param reward_scale: HAQ's lambda (0.1).
    """

    kind = "haq"

    def __init__(self, episodes: int = 600, agent: Optional[Mapping[str, Any]] = None, base_config: Optional[Mapping[str, Any]] = None, metric: str = "accuracy", reward_scale: float = 0.1, budget_scale: float = 1.0):
        super().__init__(episodes, agent, HAQ_AGENT, base_config, metric, budget_scale)
        self.reward_scale = float(reward_scale)

    def n_state(self, space, base):
        return 10

    def reward(self, trial: Trial) -> float:
        if not trial.ok:
            return -self.reward_scale
        acc = trial.value(self.metric)
        ref = trial.value("accuracy_fp32")
        if not math.isfinite(ref):
            ref = 1.0
        return self.reward_scale * (acc - ref) if math.isfinite(acc) else -self.reward_scale

    def _allowed(self, cfg, l: LayerChoice) -> List[int]:
        if l.path[-1] == "dw_a_bits" and _get(cfg, l.path[:-1])["kernel"] == 7:
            return [b for b in l.choices if b != 4]
        return list(l.choices)

    def episode(self, space, base, ctx, bounds):
        layers = quant_layers_of(space, base)
        feasible = self.feasible(ctx, bounds)
        static = _normalise([{"t": i, **l.features} for i, l in enumerate(layers)])
        cfg = copy.deepcopy(base)
        prev = 1.0
        states = []
        for i, l in enumerate(layers):
            s = np.concatenate([static[i], np.asarray([prev], np.float32)])
            a = self.agent.act(s, ctx.rng)
            allowed = self._allowed(cfg, l)
            value = allowed[int(round(a * (len(allowed) - 1)))]
            set_choice(cfg, l, value)
            prev = a
            states.append((s, a))
        # reduce bits layer after layer until the budget holds (HAQ)
        for _ in range(len(space.meta["apq"]["bit_choices"]) * len(layers)):
            if feasible(cfg):
                break
            changed = False
            for l in layers:
                if feasible(cfg):
                    break
                allowed = self._allowed(cfg, l)
                cur = _get(cfg, l.path)
                lower = [b for b in allowed if b < cur]
                if lower:
                    set_choice(cfg, l, max(lower))
                    changed = True
            if not changed:
                break
        # the actions actually taken (after the reduction) are what the agent learns from
        transitions = []
        for i, (s, _) in enumerate(states):
            l = layers[i]
            allowed = self._allowed(cfg, l)
            a = allowed.index(_get(cfg, l.path)) / max(1, len(allowed) - 1) if _get(cfg, l.path) in allowed else states[i][1]
            s2 = states[i + 1][0] if i + 1 < len(states) else s
            transitions.append((s, float(a), s2, i + 1 == len(states)))
        return cfg, transitions
