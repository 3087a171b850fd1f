"""The ``gcn_rl`` searcher: GCN-RL Circuit Designer's agent behind hwaml's propose hook.

Each proposal is one DDPG step on the circuit graph (``space.meta["graph"]``):

* state: vertex features (component type, the device's technology features,
  index) -- the static circuit graph, as in the paper (``agent.state_sizes``
  adds the best design's sizes);
* action: one vector in ``[-1, 1]`` per vertex (warm-up: uniform random; then
  the actor's output plus truncated-normal exploration noise whose sigma decays
  exponentially), mapped onto every sizing parameter's range;
* reward: the figure of merit (the run's first objective), optionally minus an
  exponential moving-average baseline, or standardised or rank-transformed over
  the replay buffer (``agent.reward_norm``); failed or infeasible trials get
  ``reward.failure_reward``.

A DDPG variant for small simulation budgets, off by default (plain DDPG): with
``exploration.candidates > 1`` each proposal draws that many noisy actions --
around the actor's output and, for a ``exploration.best_fraction`` of them,
around the best design found so far -- and simulates the one a bootstrapped
ensemble of ``agent.critics`` scores highest (mean Q, plus ``exploration.ucb``
times the members' std). The critics are
trained as in DDPG; the actor still ascends their mean Q.

The agent stays in memory between calls. Trials in ``history`` it has not yet
seen -- all of them after a resume -- are pushed into the replay buffer in
trial order, each followed by ``agent.updates_per_trial`` DDPG updates whose
minibatches are drawn from a generator seeded by ``(seed, trial number)``; so a
resumed searcher rebuilds the same agent the killed one had. Exploration draws
from ``ctx.rng``. The agent is saved to ``run_dir/gcn_rl_agent.pt`` after each
step; ``init_from`` loads such a file to fine-tune it on another node or
topology (transfer learning).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from scipy.stats import truncnorm

from hwaml import Candidate, RunContext, SearchSpace, Trial, TrialStatus, hookimpl
from hwaml.config import as_config
from hwaml.plugins import PluginError

from .ddpg import GCNRLAgent, reward_norm_mode, torch_threads
from .graph import CircuitGraph

log = logging.getLogger("hwaml.gcn_rl_circuit")

AGENT_FILE = "gcn_rl_agent.pt"


@dataclass(frozen=True)
class AgentConfig:
    """The DDPG agent: GCN actor and critic(s) and how they learn (``searcher.agent.*``).

    :param hidden: Hidden width of every GCN layer.
    :param gcn_layers: Graph-convolution layers in actor and critic.
    :param actor_lr: Adam learning rate of the actor.
    :param critic_lr: Adam learning rate of the critic.
    :param tau: Soft-update rate of the target networks.
    :param gamma: Discount; 0 for the paper's one-step episodes.
    :param batch_size: Replay minibatch size.
    :param buffer_size: Replay buffer capacity.
    :param critics: Critic ensemble size (bootstrapped DDPG critic; 1: plain DDPG).
    :param reward_norm: Rescale rewards for the critic over the replay buffer: ``none`` (or false),
        ``standard`` (or true: mean and std) or ``rank`` (rank in the buffer, scaled to unit variance).
    :param updates_per_trial: DDPG updates after each observed trial (once warm-up is done).
    :param state_sizes: Put the best design's sizes into every vertex's state (not in the paper,
        whose state is the static circuit graph; default false).
    """

    hidden: int = 64
    gcn_layers: int = 7
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    tau: float = 0.01
    gamma: float = 0.0
    batch_size: int = 64
    buffer_size: int = 10000
    critics: int = 1
    reward_norm: Any = False
    updates_per_trial: int = 4
    state_sizes: bool = False

    def __post_init__(self) -> None:
        if self.updates_per_trial < 0:
            raise ValueError(f"agent.updates_per_trial must be >= 0, got {self.updates_per_trial}")
        if self.critics < 1:
            raise ValueError(f"agent.critics must be >= 1, got {self.critics}")
        reward_norm_mode(self.reward_norm)  # a bad value fails here, naming the choices

    def agent_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :class:`~hwaml_gcn_rl_circuit.ddpg.GCNRLAgent`."""
        kw = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("updates_per_trial", "state_sizes")}
        kw["reward_norm"] = reward_norm_mode(self.reward_norm)
        return kw


@dataclass(frozen=True)
class ExplorationConfig:
    """How actions are drawn (``searcher.exploration.*``).

    :param warmup: Trials of uniform random actions before the actor acts.
    :param noise_sigma: Initial std of the truncated-normal exploration noise.
    :param noise_decay: Per-trial exponential decay of that std after warm-up.
    :param noise_min: Floor of the std.
    :param candidates: Noisy actions drawn around the actor's output per proposal; the one the
        critic ensemble scores highest (mean + ``ucb`` * std over members) is simulated. 1: plain DDPG.
    :param ucb: Weight of the ensemble's disagreement (std) in that score.
    :param best_fraction: Share of those candidates drawn around the best design's action instead
        of the actor's (same noise); 0: all around the actor.
    """

    warmup: int = 100
    noise_sigma: float = 0.5
    noise_decay: float = 0.99
    noise_min: float = 0.02
    candidates: int = 1
    ucb: float = 0.0
    best_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"exploration.warmup must be >= 0, got {self.warmup}")
        if self.candidates < 1:
            raise ValueError(f"exploration.candidates must be >= 1, got {self.candidates}")
        if not 0.0 <= self.best_fraction <= 1.0:
            raise ValueError(f"exploration.best_fraction must be in [0, 1], got {self.best_fraction}")
        if self.best_fraction and self.candidates < 2:
            raise ValueError("exploration.best_fraction needs exploration.candidates >= 2")


@dataclass(frozen=True)
class RewardConfig:
    """What the agent is rewarded with (``searcher.reward.*``).

    :param objective: Metric used as reward (default: the run's first objective).
    :param baseline_decay: Decay of the moving-average reward baseline (0 disables it).
    :param failure_reward: Reward of failed/infeasible trials; ``None``: the worst reward seen minus 1.
    """

    objective: Optional[str] = None
    baseline_decay: float = 0.95
    failure_reward: Optional[float] = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"reward.baseline_decay must be in [0, 1), got {self.baseline_decay}")


class GCNRLSearcher:
    """DDPG with GCN actor and critic (Wang et al., DAC 2020).

    The settings come in three groups, each a mapping (what Hydra passes; an
    unknown key is an error naming it) or the dataclass itself; ``None`` gives
    that group's defaults, which are plain DDPG (the shipped ``searcher=gcn_rl``
    config is the sample-efficient variant)::

        GCNRLSearcher(agent={"hidden": 32, "critics": 5, "reward_norm": "rank"},
                      exploration={"warmup": 20, "candidates": 32, "best_fraction": 0.5})

    :param agent: :class:`AgentConfig` -- networks, optimisers, replay, critic ensemble, updates.
    :param exploration: :class:`ExplorationConfig` -- warm-up, noise schedule, candidate actions.
    :param reward: :class:`RewardConfig` -- objective, baseline, failure reward.
    :param init_from: Path of a saved agent (``gcn_rl_agent.pt``) to start from.
    :param save_agent: Save the agent to ``run_dir/gcn_rl_agent.pt`` after each step.
    :param torch_threads: Intra-op threads for the agent's maths (``null``: torch's default).
    """

    def __init__(
        self,
        agent: Optional[AgentConfig] = None,
        exploration: Optional[ExplorationConfig] = None,
        reward: Optional[RewardConfig] = None,
        init_from: Optional[str] = None,
        save_agent: bool = True,
        torch_threads: Optional[int] = 1,
    ):
        self.agent_config: AgentConfig = as_config(AgentConfig, agent, "agent")
        self.exploration: ExplorationConfig = as_config(ExplorationConfig, exploration, "exploration")
        self.reward: RewardConfig = as_config(RewardConfig, reward, "reward")
        if self.exploration.ucb and self.agent_config.critics < 2:
            raise ValueError("exploration.ucb needs an ensemble of critics (agent.critics >= 2)")
        self.init_from = init_from
        self.save_agent = save_agent
        self.torch_threads = torch_threads
        self.agent: Optional[GCNRLAgent] = None
        self._graph: Optional[CircuitGraph] = None
        self._seen: set = set()
        self._best_config: Optional[Dict[str, float]] = None
        self._best_reward = -math.inf
        self._worst_reward = math.inf
        self._baseline: Optional[float] = None
        self.losses: List[Dict[str, float]] = []

    # -- set-up ------------------------------------------------------------------

    @staticmethod
    def graph_of(space: SearchSpace) -> CircuitGraph:
        """The circuit graph the agent acts on, from ``space.meta["graph"]``.

        :raises hwaml.plugins.PluginError: when the space has no (or a mismatched)
            circuit graph -- the searcher was composed with an evaluator it cannot
            search; the loop reports it at start, naming searcher and evaluator.
        """
        graph = space.meta.get("graph")
        if graph is None:
            raise PluginError(
                "searcher gcn_rl needs a circuit graph in space.meta['graph']; compose it with a circuit evaluator "
                "(evaluator=circuit_two_stage_tia, circuit_two_stage_amp, circuit_three_stage_tia or circuit_ldo)"
            )
        if not isinstance(graph, CircuitGraph):
            raise PluginError(f"searcher gcn_rl: space.meta['graph'] is a {type(graph).__name__}, expected hwaml_gcn_rl_circuit.graph.CircuitGraph")
        dims = {d.name for d in space.dims}
        missing, unsized = sorted(set(graph.ranges) - dims), sorted(dims - set(graph.ranges))
        if missing or unsized:
            raise PluginError(
                f"searcher gcn_rl: graph and search space disagree (graph only: {missing}, space only: {unsized})"
            )
        return graph

    def _setup(self, space: SearchSpace, ctx: RunContext) -> None:
        graph = self.graph_of(space)
        if self.agent is not None and self._graph is graph:
            return
        self.agent = GCNRLAgent(seed=ctx.seed, **self.agent_config.agent_kwargs())
        if self.init_from:
            self.agent.load(self.init_from)
            log.info("gcn_rl: starting from agent %s (trained on %s)", self.init_from, self.agent.loaded_from)
        self.agent.set_graph(graph)
        self._graph = graph
        self._seen = set()
        self._best_config, self._best_reward, self._worst_reward, self._baseline = None, -math.inf, math.inf, None

    def _objective(self, ctx: RunContext):
        objectives = dict(ctx.objectives) or {"fom": "max"}
        name = self.reward.objective or next(iter(objectives))
        sign = -1.0 if objectives.get(name, "max") == "min" else 1.0
        return name, sign

    # -- learning from history -----------------------------------------------------

    def state(self, config: Optional[Dict[str, float]] = None) -> np.ndarray:
        """The vertex features the agent sees: the static circuit graph (the paper's state), with
        the best design's sizes (or ``config``'s) only under ``agent.state_sizes``."""
        if not self.agent_config.state_sizes:
            return self._graph.features()
        return self._graph.features(config if config is not None else self._best_config)

    def _reward(self, trial: Trial, name: str, sign: float) -> Optional[float]:
        if trial.status == TrialStatus.COMPLETE:
            v = trial.value(name)
            if math.isfinite(v):
                return sign * v
        return None

    def _ingest(self, history: Sequence[Trial], ctx: RunContext) -> None:
        name, sign = self._objective(ctx)
        graph, agent = self._graph, self.agent
        for t in sorted(history, key=lambda t: t.number):
            if t.number in self._seen or t.status == TrialStatus.PENDING:
                continue
            self._seen.add(t.number)
            try:
                action = graph.actions_from_config(t.config)
            except (KeyError, ValueError, TypeError):
                continue  # a trial from another space (should not happen in one run)
            state = self.state()
            r = self._reward(t, name, sign)
            if r is None:
                r = self.reward.failure_reward if self.reward.failure_reward is not None else (self._worst_reward - 1.0 if math.isfinite(self._worst_reward) else -1.0)
            else:
                self._worst_reward = min(self._worst_reward, r)
                if r > self._best_reward:
                    self._best_reward, self._best_config = r, dict(t.config)
            baseline = self._baseline if self._baseline is not None else r
            decay = self.reward.baseline_decay
            shaped = r - baseline if decay > 0 else r
            if decay > 0:
                self._baseline = decay * baseline + (1.0 - decay) * r
            agent.observe(state, action, shaped, self.state(), True)
            if len(self._seen) >= self.exploration.warmup and len(agent.buffer) > 0:
                rng = np.random.default_rng([int(ctx.seed), int(t.number), 0x67636E])
                for _ in range(self.agent_config.updates_per_trial):
                    self.losses.append(agent.update(rng))

    # -- proposing -----------------------------------------------------------------

    def sigma(self, index: int) -> float:
        e = self.exploration
        return max(e.noise_min, e.noise_sigma * e.noise_decay ** max(0, index - e.warmup))

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        with torch_threads(self.torch_threads):
            return self._propose(space, history, n, ctx)

    def _propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        self._setup(space, ctx)
        self._ingest(history, ctx)
        graph, rng, e = self._graph, ctx.rng, self.exploration
        mask = graph.action_mask
        out: List[Candidate] = []
        done = len(history)
        for i in range(n):
            index = done + i
            if index < e.warmup:
                action = rng.uniform(-1.0, 1.0, size=mask.shape) * mask
                origin, meta = "gcn_rl_warmup", {}
            else:
                state = self.state()
                mu = self.agent.act(state).astype(np.float64)
                sigma = self.sigma(index)
                lo, hi = (-1.0 - mu) / sigma, (1.0 - mu) / sigma
                origin, meta = "gcn_rl", {"sigma": sigma}
                if e.candidates == 1:
                    action = truncnorm.rvs(lo, hi, loc=mu, scale=sigma, random_state=rng) * mask
                else:
                    n_best = int(round(e.best_fraction * e.candidates)) if self._best_config is not None else 0
                    centres = np.repeat(mu[None], e.candidates, axis=0)
                    if n_best:
                        centres[e.candidates - n_best :] = graph.actions_from_config(self._best_config)
                    lo, hi = (-1.0 - centres) / sigma, (1.0 - centres) / sigma
                    acts = truncnorm.rvs(lo, hi, loc=centres, scale=sigma, random_state=rng) * mask
                    q = self.agent.q_values(state, acts)
                    score = q.mean(axis=0) + e.ucb * q.std(axis=0)
                    best = int(np.argmax(score))
                    action = acts[best]
                    meta["q_mean"], meta["q_std"] = float(q[:, best].mean()), float(q[:, best].std())
                    meta["around"] = "best" if best >= e.candidates - n_best else "actor"
            cfg = graph.config_from_actions(action)
            out.append(Candidate({k: float(v) for k, v in cfg.items()}, origin=origin, meta=meta))
        if self.save_agent and ctx.run_dir is not None:
            try:
                self.agent.save(Path(ctx.run_dir) / AGENT_FILE)
            except OSError as exc:  # a read-only run dir must not stop the search
                log.warning("gcn_rl: could not save the agent: %s", exc)
        return out
