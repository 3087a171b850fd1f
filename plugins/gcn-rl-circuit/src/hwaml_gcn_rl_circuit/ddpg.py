"""The GCN-RL agent: DDPG whose actor and critic are graph convolutional networks.

Actor: a per-component-type linear encoder lifts each vertex's features to the
hidden size, ``gcn_layers`` graph convolutions ``H <- relu(A_hat H W)`` (Kipf
and Welling, ``A_hat = D^-1/2 (A + I) D^-1/2``) mix information along the wires,
and a per-type linear decoder with ``tanh`` gives each vertex its action in
``[-1, 1]``. Critic: the same encoder/GCN shape on ``[features | action]`` per
vertex, per-vertex value heads averaged over vertices to ``Q``; optionally an
ensemble of such critics with independent weights and bootstrapped minibatches
(``critics > 1``), evaluated in one batched pass. Type-specific
encoders/decoders and vertex-count-free GCN weights are what make the agent
load into another circuit or node (transfer learning).

DDPG (Lillicrap et al.): replay buffer, target actor and critic updated with
soft updates of rate ``tau``, critic regression on ``r + gamma * (1 - done) *
Q'(s', mu'(s'))``, actor ascent on ``Q(s, mu(s))``. GCN-RL treats each sizing
as a one-step episode (``done = 1``), so with the default ``gamma = 0`` the
critic regresses the FoM directly (optionally standardised with the replay
buffer's mean and std).
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .graph import ACTION_DIM, COMPONENT_TYPES, FEATURE_DIM


@contextlib.contextmanager
def torch_threads(n: Optional[int]):
    """Run the tiny GCN maths on ``n`` intra-op threads, restoring the setting after.

    The networks are a few thousand FLOPs per vertex; on a shared CPU, torch's
    default of one thread per core makes an update 10-20x slower than one thread.
    """
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class TypeWiseLinear(nn.Module):
    """A separate linear map per component type, applied vertex by vertex."""

    def __init__(self, n_types: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_types, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n_types, out_dim))
        bound = 1.0 / np.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        # x: (B, N, in), types: (N,) long -> (B, N, out)
        return torch.einsum("bni,nio->bno", x, self.weight[types]) + self.bias[types]


class GCNLayer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        return torch.relu(a_hat @ self.linear(h))


class GCNActor(nn.Module):
    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.encoder = TypeWiseLinear(len(COMPONENT_TYPES), FEATURE_DIM, hidden)
        self.gcn = nn.ModuleList(GCNLayer(hidden) for _ in range(layers))
        self.decoder = TypeWiseLinear(len(COMPONENT_TYPES), hidden, ACTION_DIM)

    def forward(self, x, a_hat, types, mask):
        h = torch.relu(self.encoder(x, types))
        for layer in self.gcn:
            h = h + layer(h, a_hat)
        return torch.tanh(self.decoder(h, types)) * mask


class EnsembleTypeWiseLinear(nn.Module):
    """``TypeWiseLinear`` for ``members`` independent networks evaluated in one batched op."""

    def __init__(self, members: int, n_types: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, n_types, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, n_types, out_dim))
        bound = 1.0 / np.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        # x: (K, B, N, in), types: (N,) long -> (K, B, N, out)
        return torch.einsum("kbni,knio->kbno", x, self.weight[:, types]) + self.bias[:, types][:, None]


class EnsembleLinear(nn.Module):
    """``members`` independent linear maps, one per ensemble member: (K, ..., in) -> (K, ..., out)."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, out_dim))
        bound = 1.0 / np.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[0]
        y = torch.bmm(x.reshape(k, -1, x.shape[-1]), self.weight) + self.bias[:, None]
        return y.reshape(*x.shape[:-1], -1)


class GCNCritic(nn.Module):
    """An ensemble of ``members`` GCN critics with independent weights (bootstrapped DDPG critic).

    Each member encodes ``[features | action]`` per vertex with a per-type linear
    map, runs ``layers`` residual graph convolutions and averages per-vertex value
    heads. ``forward`` returns ``(members, B)``; with ``members = 1`` this is the
    plain DDPG critic.
    """

    def __init__(self, hidden: int, layers: int, members: int = 1):
        super().__init__()
        self.members = int(members)
        self.encoder = EnsembleTypeWiseLinear(self.members, len(COMPONENT_TYPES), FEATURE_DIM + ACTION_DIM, hidden)
        self.gcn = nn.ModuleList(EnsembleLinear(self.members, hidden, hidden) for _ in range(layers))
        self.head1 = EnsembleLinear(self.members, hidden, hidden)
        self.head2 = EnsembleLinear(self.members, hidden, 1)

    def forward(self, x, action, a_hat, types):
        xa = torch.cat([x, action], dim=-1)
        if xa.dim() == 3:  # one batch shared by every member
            xa = xa.unsqueeze(0).expand(self.members, *xa.shape)
        h = torch.relu(self.encoder(xa, types))
        for layer in self.gcn:
            h = h + torch.relu(a_hat @ layer(h))
        # per-vertex value heads, averaged: Q decomposes over components, which the
        # FoM's per-component sensitivities roughly do
        return self.head2(torch.relu(self.head1(h))).mean(dim=2).squeeze(-1)


class ReplayBuffer:
    """A ring buffer of (state, action, reward, next_state, done) for one graph."""

    def __init__(self, capacity: int, n: int):
        self.capacity = int(capacity)
        self.s = np.zeros((self.capacity, n, FEATURE_DIM), np.float32)
        self.a = np.zeros((self.capacity, n, ACTION_DIM), np.float32)
        self.r = np.zeros(self.capacity, np.float32)
        self.s2 = np.zeros((self.capacity, n, FEATURE_DIM), np.float32)
        self.d = np.zeros(self.capacity, np.float32)
        self.size = 0
        self.pos = 0

    def push(self, s, a, r, s2, done) -> None:
        i = self.pos
        self.s[i], self.a[i], self.r[i], self.s2[i], self.d[i] = s, a, r, s2, float(done)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator, members: Optional[int] = None):
        """A minibatch drawn with replacement; ``members``: one independent draw per member, stacked."""
        shape = (min(batch, self.size),) if members is None else (int(members), min(batch, self.size))
        idx = rng.integers(0, self.size, size=shape)
        return self.s[idx], self.a[idx], self.r[idx], self.s2[idx], self.d[idx]

    def reward_ranks(self, r: np.ndarray) -> np.ndarray:
        """Each reward replaced by its mid-rank among the buffer's rewards, scaled to mean 0 and variance 1.

        Ranks keep the critic's targets on one scale whatever the circuit, and a
        failed simulation's very low reward counts as "worst", not as an outlier
        that dominates the squared error.
        """
        ref = np.sort(self.r[: self.size])
        mid = 0.5 * (np.searchsorted(ref, r, side="left") + np.searchsorted(ref, r, side="right"))
        return ((mid / max(1, self.size) - 0.5) * np.sqrt(12.0)).astype(np.float32)

    def reward_stats(self):
        r = self.r[: self.size]
        return float(r.mean()), float(r.std())

    def __len__(self) -> int:
        return self.size


HPARAM_KEYS = ("hidden", "gcn_layers", "critics")
FORMAT = "hwaml-gcn-rl-agent/3"  # /3: per-device technology features (13 per vertex)
REWARD_NORMS = ("none", "standard", "rank")


def reward_norm_mode(value: Any) -> str:
    """``reward_norm`` as one of :data:`REWARD_NORMS` (``True``/``False`` mean standard/none)."""
    if value is True:
        return "standard"
    if value is False or value is None:
        return "none"
    if value not in REWARD_NORMS:
        raise ValueError(f"reward_norm must be one of {list(REWARD_NORMS)} (or true/false), got {value!r}")
    return str(value)


class GCNRLAgent:
    """DDPG with GCN actor and critic on one circuit graph at a time.

    ``set_graph`` points the agent at a circuit (adjacency, vertex types, action
    mask) and gives it a fresh replay buffer; the network weights do not depend
    on the graph, so an agent trained on one circuit or node continues on another.

    ``critics > 1`` makes the critic a bootstrapped ensemble: every member
    regresses its own minibatch (drawn independently with replacement) and the
    actor ascends the members' mean Q. ``reward_norm`` rescales the rewards before
    the regression, so the critic's targets keep one scale whatever the circuit's
    FoM range: ``"standard"`` (or ``True``) with the replay buffer's mean and
    standard deviation, ``"rank"`` by each reward's rank in the buffer (rank-based
    fitness shaping, robust to the very low rewards of failed simulations).
    """

    def __init__(
        self,
        hidden: int = 64,
        gcn_layers: int = 7,
        actor_lr: float = 1e-4,
        critic_lr: float = 1e-3,
        tau: float = 0.01,
        gamma: float = 0.0,
        batch_size: int = 64,
        buffer_size: int = 10000,
        critics: int = 1,
        reward_norm: Any = False,
        seed: int = 0,
    ):
        if int(critics) < 1:
            raise ValueError(f"critics must be >= 1, got {critics}")
        self.hidden, self.gcn_layers, self.critics = int(hidden), int(gcn_layers), int(critics)
        self.tau, self.gamma, self.batch_size, self.buffer_size = float(tau), float(gamma), int(batch_size), int(buffer_size)
        self.reward_norm = reward_norm_mode(reward_norm)
        torch.manual_seed(int(seed))  # weight init only; all later randomness comes from numpy generators
        self.actor = GCNActor(self.hidden, self.gcn_layers)
        self.critic = GCNCritic(self.hidden, self.gcn_layers, self.critics)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_lr, self.critic_lr = float(actor_lr), float(critic_lr)
        self._make_optimisers()
        self.buffer: Optional[ReplayBuffer] = None
        self.updates = 0

    def _make_optimisers(self) -> None:
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.critic_lr)

    # -- graph -----------------------------------------------------------------

    def set_graph(self, graph) -> None:
        self.graph_name = f"{graph.name}@{graph.technology}"
        self.a_hat = torch.from_numpy(graph.normalized_adjacency())
        self.types = torch.tensor([COMPONENT_TYPES.index(t) for t in graph.types], dtype=torch.long)
        self.mask = torch.from_numpy(graph.action_mask)
        self.buffer = ReplayBuffer(self.buffer_size, graph.n)

    # -- acting and learning ---------------------------------------------------

    @torch.no_grad()
    def act(self, state: np.ndarray) -> np.ndarray:
        """Deterministic policy action (N, ACTION_DIM) for one state (N, FEATURE_DIM)."""
        x = torch.from_numpy(np.asarray(state, np.float32))[None]
        return self.actor(x, self.a_hat, self.types, self.mask)[0].numpy()

    @torch.no_grad()
    def q_values(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Every critic member's Q of ``actions`` (M, N, ACTION_DIM) in one state: shape (critics, M)."""
        a = torch.from_numpy(np.asarray(actions, np.float32)) * self.mask
        x = torch.from_numpy(np.asarray(state, np.float32))[None].expand(a.shape[0], -1, -1)
        return self.critic(x, a, self.a_hat, self.types).numpy()

    def q_value(self, state: np.ndarray, action: np.ndarray) -> float:
        """Mean Q over the critic ensemble of one action."""
        return float(self.q_values(state, np.asarray(action)[None]).mean())

    def observe(self, state, action, reward, next_state, done: bool = True) -> None:
        if self.buffer is None:
            raise RuntimeError("call set_graph before observe")
        self.buffer.push(state, np.asarray(action, np.float32) * self.mask.numpy(), reward, next_state, done)

    def update(self, rng: np.random.Generator) -> Dict[str, float]:
        """One DDPG update (every critic member, then the actor) from minibatches drawn with ``rng``."""
        k = self.critics
        s, a, r, s2, d = (torch.from_numpy(v) for v in self.buffer.sample(self.batch_size, rng, members=k))
        if self.reward_norm == "standard":
            mean, std = self.buffer.reward_stats()
            r = (r - mean) / max(std, 1e-6)
        elif self.reward_norm == "rank":
            r = torch.from_numpy(self.buffer.reward_ranks(r.numpy()))
        with torch.no_grad():
            target = r
            if self.gamma > 0:
                flat = s2.reshape(-1, *s2.shape[2:])
                a2 = self.actor_target(flat, self.a_hat, self.types, self.mask).reshape(a.shape)
                q_next = self.critic_target(s2, a2, self.a_hat, self.types)
                target = r + self.gamma * (1.0 - d) * q_next
        q = self.critic(s, a, self.a_hat, self.types)  # (K, B): member k on its own minibatch
        critic_loss = torch.mean((q - target) ** 2) * k  # sum over members of each member's MSE
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        states = s[0]  # the actor ascends the ensemble's mean Q on one minibatch of states
        actor_loss = -self.critic(states, self.actor(states, self.a_hat, self.types, self.mask), self.a_hat, self.types).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        self._soft_update(self.actor_target, self.actor)
        self._soft_update(self.critic_target, self.critic)
        self.updates += 1
        return {"critic_loss": critic_loss.item() / k, "actor_loss": actor_loss.item()}

    @torch.no_grad()
    def _soft_update(self, target: nn.Module, source: nn.Module) -> None:
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(1.0 - self.tau).add_(s, alpha=self.tau)

    # -- transfer ----------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT,
            "hparams": {k: getattr(self, k) for k in HPARAM_KEYS},
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "trained_on": getattr(self, "graph_name", None),
            "updates": self.updates,
            "component_types": list(COMPONENT_TYPES),
        }

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)  # atomic: a killed run never leaves half a checkpoint
        return path

    def load(self, path) -> "GCNRLAgent":
        """Load weights saved by :meth:`save` (from any circuit or node); optimisers restart."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"GCN-RL agent checkpoint {str(path)!r} does not exist")
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a GCN-RL agent checkpoint of format {FORMAT} (saved by GCNRLAgent.save)")
        if list(data.get("component_types", [])) != list(COMPONENT_TYPES):
            raise ValueError(f"{path}: component types {data.get('component_types')} differ from {list(COMPONENT_TYPES)}")
        hp = data["hparams"]
        for k in HPARAM_KEYS:
            if int(hp.get(k, 1)) != getattr(self, k):
                raise ValueError(f"{path} was trained with {k}={hp[k]}, this agent has {k}={getattr(self, k)}; set the searcher's {k} to match")
        self.actor.load_state_dict(data["actor"])
        self.critic.load_state_dict(data["critic"])
        self.actor_target.load_state_dict(data["actor_target"])
        self.critic_target.load_state_dict(data["critic_target"])
        self.loaded_from = data.get("trained_on")
        self._make_optimisers()
        return self
