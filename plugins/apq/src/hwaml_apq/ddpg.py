"""DDPG (Lillicrap et al., 2016), the agent of AMC and HAQ.

One continuous action in [0, 1] per step (a layer); an actor ``mu(s)`` and a
critic ``Q(s, a)``, each an MLP with two hidden layers, target copies updated
softly with rate ``tau``, a replay buffer, and exploration by a truncated
normal around the actor's action whose width decays after warm-up. Both AMC
and HAQ give every step of an episode the episode's reward (discount 1) and
subtract a moving average of past rewards (AMC's baseline) to reduce the
variance of the critic's targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DDPGConfig", "DDPG"]


@dataclass(frozen=True)
class DDPGConfig:
    """Agent hyper-parameters (``agent:``).

    AMC (He et al., ECCV 2018): hidden 300/300, actor lr 1e-4, critic lr 1e-3,
    tau 0.01, batch 64, 100 warm-up episodes, noise 0.5 decayed by 0.95, buffer
    2000. HAQ (Wang et al., CVPR 2019): hidden 400/300, the same rates, 20
    warm-up episodes, noise decayed by 0.99. The searcher configs carry each
    paper's values.
    """

    hidden1: int = 300
    hidden2: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    batch_size: int = 64
    buffer_size: int = 2000
    warmup_episodes: int = 100
    noise_init: float = 0.5
    noise_decay: float = 0.95
    discount: float = 1.0
    baseline_decay: float = 0.95
    updates_per_episode: Optional[int] = None  # None: one per transition (the references)

    def __post_init__(self) -> None:
        if self.hidden1 < 1 or self.hidden2 < 1 or self.batch_size < 1 or self.buffer_size < 1 or self.warmup_episodes < 0:
            raise ValueError(f"agent: bad sizes {self}")
        if not 0 < self.tau <= 1 or not 0 < self.noise_decay <= 1:
            raise ValueError(f"agent: tau and noise_decay must be in (0, 1]: {self}")


class _Actor(nn.Module):
    def __init__(self, n_state: int, h1: int, h2: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_state, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 1), nn.Sigmoid())

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)


class _Critic(nn.Module):
    def __init__(self, n_state: int, h1: int, h2: int):
        super().__init__()
        self.fs = nn.Linear(n_state, h1)
        self.fa = nn.Linear(1, h1)
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 1))

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.body(self.fs(s) + self.fa(a))


class DDPG:
    """The agent; ``act`` during an episode, ``observe`` the finished episode."""

    def __init__(self, n_state: int, cfg: DDPGConfig, seed: int):
        self.cfg = cfg
        self.n_state = n_state
        self.gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.actor = _Actor(n_state, cfg.hidden1, cfg.hidden2)
            self.critic = _Critic(n_state, cfg.hidden1, cfg.hidden2)
        self.actor_target = _Actor(n_state, cfg.hidden1, cfg.hidden2)
        self.critic_target = _Critic(n_state, cfg.hidden1, cfg.hidden2)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic)
        self.buffer: List[Tuple[np.ndarray, float, float, np.ndarray, bool]] = []
        self.episodes = 0
        self.baseline: Optional[float] = None
        self.noise = cfg.noise_init

    def act(self, state: np.ndarray, rng: np.random.Generator, explore: bool = True) -> float:
        """An action in [0, 1]: uniform during warm-up, then the actor's action
        with truncated-normal noise (while ``explore``)."""
        if explore and self.episodes < self.cfg.warmup_episodes:
            return float(rng.random())
        with torch.no_grad():
            mu = float(self.actor(torch.as_tensor(state, dtype=torch.float32)[None])[0, 0])
        if not explore:
            return mu
        for _ in range(100):  # truncated normal on [0, 1]
            a = rng.normal(mu, self.noise)
            if 0.0 <= a <= 1.0:
                return float(a)
        return float(np.clip(mu, 0.0, 1.0))

    def observe(self, transitions: Sequence[Tuple[np.ndarray, float, np.ndarray, bool]], reward: float) -> None:
        """Store a finished episode (``(state, action, next_state, done)`` per step,
        one reward) and train the agent once warm-up is over."""
        if self.baseline is None:
            self.baseline = float(reward)
        advantage = float(reward) - self.baseline
        self.baseline = self.cfg.baseline_decay * self.baseline + (1 - self.cfg.baseline_decay) * float(reward)
        for s, a, s2, done in transitions:
            self.buffer.append((np.asarray(s, np.float32), float(a), advantage, np.asarray(s2, np.float32), bool(done)))
        if len(self.buffer) > self.cfg.buffer_size:
            self.buffer = self.buffer[-self.cfg.buffer_size :]
        self.episodes += 1
        if self.episodes > self.cfg.warmup_episodes:
            self.noise *= self.cfg.noise_decay
            for _ in range(self.cfg.updates_per_episode or len(transitions)):
                self._update()

    def _update(self) -> None:
        n = len(self.buffer)
        if n < 2:
            return
        idx = torch.randint(n, (min(self.cfg.batch_size, n),), generator=self.gen).tolist()
        s = torch.as_tensor(np.stack([self.buffer[i][0] for i in idx]))
        a = torch.as_tensor([[self.buffer[i][1]] for i in idx], dtype=torch.float32)
        r = torch.as_tensor([[self.buffer[i][2]] for i in idx], dtype=torch.float32)
        s2 = torch.as_tensor(np.stack([self.buffer[i][3] for i in idx]))
        done = torch.as_tensor([[float(self.buffer[i][4])] for i in idx])
        with torch.no_grad():
            target = r + self.cfg.discount * (1 - done) * self.critic_target(s2, self.actor_target(s2))
        loss_c = F.mse_loss(self.critic(s, a), target)
        self.opt_critic.zero_grad(set_to_none=True)
        loss_c.backward()
        self.opt_critic.step()
        loss_a = -self.critic(s, self.actor(s)).mean()
        self.opt_actor.zero_grad(set_to_none=True)
        loss_a.backward()
        self.opt_actor.step()
        with torch.no_grad():
            for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    tp.mul_(1 - self.cfg.tau).add_(p, alpha=self.cfg.tau)
