"""The DDPG agent and the gcn_rl searcher: learning, resume, transfer, errors."""

import math

import numpy as np
import pytest
import torch

from hwaml import Candidate, RunContext, SearchSpace, Float, Trial
from hwaml.loop import RunError, SearchLoop
from hwaml.plugins import PluginError
from hwaml_gcn_rl_circuit.circuits import get_circuit
from hwaml_gcn_rl_circuit.ddpg import GCNRLAgent
from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator, circuit_space
from hwaml_gcn_rl_circuit.searcher import AGENT_FILE, AgentConfig, ExplorationConfig, GCNRLSearcher
from hwaml_gcn_rl_circuit.technology import TECHNOLOGIES

SMALL = dict(hidden=16, gcn_layers=2, batch_size=16)


def graph(name="two_stage_tia", node="gf180mcu"):
    return circuit_space(get_circuit(name), TECHNOLOGIES[node]).meta["graph"]


def test_agent_learns_a_per_vertex_target():
    # A bandit on the real graph: the reward peaks at a per-component-type action.
    torch.set_num_threads(1)
    g = graph()
    best = {"nmos": [0.5, -0.5], "pmos": [-0.5, 0.5], "resistor": [0.3, 0.0], "capacitor": [0.0, 0.0]}  # fixed caps: masked
    target = np.array([best[t] for t in g.types], np.float32) * g.action_mask

    def reward(a):
        return -float(((a - target) ** 2).sum())

    agent = GCNRLAgent(seed=0, actor_lr=1e-3, hidden=16, gcn_layers=2, batch_size=32)
    agent.set_graph(g)
    rng = np.random.default_rng(0)
    s = g.features()
    for _ in range(200):
        a = rng.uniform(-1, 1, target.shape) * g.action_mask
        agent.observe(s, a, reward(a), s)
    for _ in range(300):
        agent.update(rng)
    held_out = rng.uniform(-1, 1, (100,) + target.shape) * g.action_mask
    q = [agent.q_value(s, a) for a in held_out]
    r = [reward(a) for a in held_out]
    assert np.corrcoef(q, r)[0, 1] > 0.7  # the GCN critic has learned the landscape
    assert reward(agent.act(s)) > np.mean(r) + 1.0  # and the actor climbs it


def test_searcher_improves_over_its_warmup(tmp_path):
    s = GCNRLSearcher(agent=dict(SMALL, updates_per_trial=2, actor_lr=1e-3), exploration=dict(warmup=20, noise_sigma=0.3, noise_decay=0.95))
    loop = SearchLoop({"searcher": s, "evaluator": CircuitEvaluator("two_stage_tia", "gf180mcu")}, tmp_path, {"fom": "max"}, budget_trials=50, seed=0)
    res = loop.run()
    foms = np.array([t.metrics["fom"] for t in res.trials])
    assert [t.candidate.origin for t in res.trials[:20]] == ["gcn_rl_warmup"] * 20
    assert all(t.candidate.origin == "gcn_rl" for t in res.trials[20:])
    # the policy phase beats uniform random sampling on average and finds a design at least as good
    assert foms[20:].mean() > foms[:20].mean()
    assert (tmp_path / AGENT_FILE).is_file()
    assert s.agent.updates == 2 * 30  # trials 19..48 (the last one is never proposed after)


def _history(space, n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cfg = space.sample(rng)
        out.append(Trial(i, Candidate(cfg, number=i), "complete" if i % 7 else "failed", {"fom": float(rng.normal())} if i % 7 else {}))
    return out


def test_resumed_searcher_rebuilds_the_same_agent(tmp_path):
    space = circuit_space(get_circuit("two_stage_amp"), TECHNOLOGIES["sky130"])
    hist = _history(space, 30)
    kw = dict(agent=dict(SMALL, updates_per_trial=1), exploration=dict(warmup=10), save_agent=False)

    def ctx(step):
        return RunContext(cfg=None, run_dir=tmp_path, seed=3, rng=np.random.default_rng([3, step]), objectives={"fom": "max"})

    live = GCNRLSearcher(**kw)
    for k in range(10, 31, 5):  # sees the history grow step by step
        proposal = live.propose(space, hist[:k], 1, ctx(k))
    fresh = GCNRLSearcher(**kw)  # a resumed run: the whole history at once
    again = fresh.propose(space, hist, 1, ctx(30))
    assert again[0].config == pytest.approx(proposal[0].config)
    assert fresh.agent.updates == live.agent.updates == 21


def test_state_is_the_static_circuit_graph_unless_sizes_are_asked_for(tmp_path):
    """The paper's state is the circuit graph (the same every one-step episode); the best
    design's sizes enter it only with agent.state_sizes."""
    space = circuit_space(get_circuit("two_stage_amp"), TECHNOLOGIES["sky130"])
    hist = _history(space, 12)
    ctx = RunContext(cfg=None, run_dir=tmp_path, seed=0, rng=np.random.default_rng(0), objectives={"fom": "max"})
    for sizes in (False, True):
        s = GCNRLSearcher(agent=dict(SMALL, state_sizes=sizes), exploration=dict(warmup=20), save_agent=False)
        s.propose(space, hist, 1, ctx)
        stored = s.agent.buffer.s[: len(s.agent.buffer)]
        assert (stored[:, :, -2:] != 0).any() == sizes
        if not sizes:
            assert (stored == space.meta["graph"].features()).all()


def test_transfer_between_topologies_and_nodes(tmp_path):
    g2, g3 = graph("two_stage_tia", "gf180mcu"), graph("three_stage_tia", "sky130")
    a = GCNRLAgent(seed=1, **SMALL)
    a.set_graph(g2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a.observe(g2.features(), rng.uniform(-1, 1, (g2.n, 2)), rng.normal(), g2.features())
        a.update(rng)
    path = a.save(tmp_path / "agent.pt")
    b = GCNRLAgent(seed=99, **SMALL).load(path)
    b.set_graph(g3)
    for p, q in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(p, q)
    act = b.act(g3.features())
    assert act.shape == (g3.n, 2) and np.abs(act).max() <= 1.0
    assert b.loaded_from == "two_stage_tia@gf180mcu"
    with pytest.raises(ValueError, match="hidden=16"):
        GCNRLAgent(hidden=32, gcn_layers=2).load(path)
    with pytest.raises(FileNotFoundError):
        GCNRLAgent(**SMALL).load(tmp_path / "nope.pt")


def test_searcher_init_from_fine_tunes_on_another_circuit(tmp_path):
    src = tmp_path / "src"
    s1 = GCNRLSearcher(agent=dict(SMALL, updates_per_trial=1), exploration=dict(warmup=8))
    SearchLoop({"searcher": s1, "evaluator": CircuitEvaluator("two_stage_tia", "gf180mcu")}, src, {"fom": "max"}, budget_trials=12).run()
    s2 = GCNRLSearcher(agent=dict(SMALL, updates_per_trial=1), exploration=dict(warmup=0, noise_sigma=0.1), init_from=str(src / AGENT_FILE))
    res = SearchLoop({"searcher": s2, "evaluator": CircuitEvaluator("three_stage_tia", "gf180mcu")}, tmp_path / "dst", {"fom": "max"}, budget_trials=4).run()
    assert len(res.trials) == 4 and all(t.candidate.origin == "gcn_rl" for t in res.trials)
    assert s2.agent.loaded_from == "two_stage_tia@gf180mcu"


def test_searcher_without_graph_fails_clearly(tmp_path):
    space = SearchSpace([Float("x", 0.0, 1.0)])
    ctx = RunContext(cfg=None, run_dir=tmp_path, seed=0, rng=np.random.default_rng(0))
    with pytest.raises(PluginError, match="needs a circuit graph.*circuit_two_stage_tia"):
        GCNRLSearcher().propose(space, [], 1, ctx)
    other = circuit_space(get_circuit("two_stage_amp"), TECHNOLOGIES["sky130"])
    wrong = SearchSpace([Float("x", 0.0, 1.0)], meta={"graph": other.meta["graph"]})
    with pytest.raises(PluginError, match="graph and search space disagree"):
        GCNRLSearcher().propose(wrong, [], 1, ctx)


def test_run_with_a_non_circuit_evaluator_fails_at_start(tmp_path):
    # gcn_rl composed with evaluator=analytic: the run stops before its first
    # trial, naming both components and what the searcher needs
    from hwaml.builtin import AnalyticEvaluator
    from hwaml.testing import run_search

    with pytest.raises(RunError) as err:
        run_search({"searcher": GCNRLSearcher(agent=SMALL), "evaluator": AnalyticEvaluator("nas_toy")}, tmp_path / "run", trials=3)
    msg = str(err.value)
    assert msg.startswith("searcher") and "evaluator" in msg  # the loop names both components
    assert "gcn_rl needs a circuit graph in space.meta['graph']" in msg and "evaluator=circuit_two_stage_tia" in msg
    from hwaml.store import TrialStore

    with TrialStore(tmp_path / "run" / TrialStore.FILENAME) as store:
        assert store.trials() == []  # nothing was proposed or evaluated
    assert not (tmp_path / "run" / AGENT_FILE).exists()


def test_agent_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    # torch.load(weights_only=True): a crafted file cannot run code when loaded
    import pickle

    path, marker = tmp_path / "evil.pt", tmp_path / "code_ran"
    torch.save({"format": 1, "payload": _RunsCodeWhenUnpickled(str(marker))}, path)
    with pytest.raises(pickle.UnpicklingError):
        GCNRLAgent(**SMALL).load(path)
    assert not marker.exists()


class _RunsCodeWhenUnpickled:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


def test_critic_ensemble_members_are_independent_and_bootstrapped(tmp_path):
    torch.set_num_threads(1)
    g = graph("ldo")
    agent = GCNRLAgent(seed=0, critics=3, reward_norm=True, **SMALL)
    agent.set_graph(g)
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (40, g.n, 2))
    for a in acts:
        agent.observe(g.features(), a, 100.0 + 10.0 * float(a[0, 0]), g.features())  # a large offset and scale
    q = agent.q_values(g.features(), acts[:5])
    assert q.shape == (3, 5)
    assert np.ptp(q, axis=0).min() > 0  # members start from different weights
    before = [p.detach().clone() for p in agent.critic.parameters()]
    for _ in range(100):
        loss = agent.update(rng)
    assert all(not torch.equal(b, p) for b, p in zip(before, agent.critic.parameters()))
    # reward_norm: the critic regresses standardised rewards, so Q stays O(1) and ranks a[0, 0]
    q = agent.q_values(g.features(), acts)
    assert np.abs(q).max() < 5.0 and loss["critic_loss"] < 1.0
    assert np.corrcoef(q.mean(axis=0), acts[:, 0, 0])[0, 1] > 0.7
    path = agent.save(tmp_path / "a.pt")
    with pytest.raises(ValueError, match="critics=3"):
        GCNRLAgent(critics=1, **SMALL).load(path)


def test_candidate_selection_picks_the_critics_favourite(tmp_path):
    space = circuit_space(get_circuit("two_stage_tia"), TECHNOLOGIES["gf180mcu"])
    hist = _history(space, 20)
    kw = dict(
        agent=dict(SMALL, updates_per_trial=2, critics=2, reward_norm=True),
        exploration=dict(warmup=10, candidates=16, ucb=0.5, best_fraction=0.25),
        reward=dict(baseline_decay=0.0),
        save_agent=False,
    )

    def ctx(step):
        return RunContext(cfg=None, run_dir=tmp_path, seed=5, rng=np.random.default_rng([5, step]), objectives={"fom": "max"})

    s = GCNRLSearcher(**kw)
    cand = s.propose(space, hist, 1, ctx(20))[0]
    g = s._graph
    # redo the draw with the same generator: the chosen action has the best ensemble score
    from scipy.stats import truncnorm

    rng = np.random.default_rng([5, 20])
    state = s.state()
    mu = s.agent.act(state).astype(np.float64)
    sigma = s.sigma(20)
    centres = np.repeat(mu[None], 16, axis=0)
    centres[12:] = g.actions_from_config(s._best_config)  # a quarter around the best design so far
    acts = truncnorm.rvs((-1 - centres) / sigma, (1 - centres) / sigma, loc=centres, scale=sigma, random_state=rng) * g.action_mask
    q = s.agent.q_values(state, acts)
    score = q.mean(0) + 0.5 * q.std(0)
    chosen = g.actions_from_config(cand.config)
    dist = np.abs(acts - chosen[None]).reshape(16, -1).max(axis=1)
    assert int(np.argmin(dist)) == int(np.argmax(score)) and dist.min() < 1e-4
    assert cand.meta["q_mean"] == pytest.approx(q[:, np.argmax(score)].mean(), rel=1e-5)
    assert cand.meta["around"] == ("best" if np.argmax(score) >= 12 else "actor")
    # and a resumed searcher proposes the same design
    again = GCNRLSearcher(**kw).propose(space, hist, 1, ctx(20))[0]
    assert again.config == pytest.approx(cand.config)


def test_bad_ensemble_settings_fail_clearly():
    with pytest.raises(ValueError, match="exploration.candidates must be >= 1"):
        GCNRLSearcher(exploration={"candidates": 0})
    with pytest.raises(ValueError, match="agent.critics must be >= 1"):
        GCNRLSearcher(agent={"critics": 0})
    with pytest.raises(ValueError, match="best_fraction needs exploration.candidates"):
        GCNRLSearcher(exploration={"best_fraction": 0.5})
    with pytest.raises(ValueError, match="ucb needs an ensemble"):
        GCNRLSearcher(agent={"critics": 1}, exploration={"ucb": 1.0})


def test_settings_groups_name_a_misplaced_or_misspelled_key():
    from hwaml.config import ConfigError

    with pytest.raises(ConfigError, match=r"exploration\.critics.*is not a field of ExplorationConfig") as err:
        GCNRLSearcher(exploration={"critics": 5})  # it belongs in agent
    assert err.value.key == "exploration.critics"
    with pytest.raises(ConfigError, match="did you mean 'warmup'"):
        GCNRLSearcher(exploration={"warmpu": 5})
    with pytest.raises(ConfigError, match=r"agent\.hidden.*expected int"):
        GCNRLSearcher(agent={"hidden": "big"})
    s = GCNRLSearcher(agent=AgentConfig(hidden=8), reward={"objective": "gain_db"})
    assert s.agent_config.hidden == 8 and s.reward.objective == "gain_db" and s.exploration == ExplorationConfig()


def test_rank_reward_norm_ignores_outliers_and_keeps_the_order():
    torch.set_num_threads(1)
    g = graph("two_stage_amp")
    agent = GCNRLAgent(seed=0, critics=2, reward_norm="rank", **SMALL)
    agent.set_graph(g)
    rng = np.random.default_rng(1)
    acts = rng.uniform(-1, 1, (60, g.n, 2)) * g.action_mask
    rewards = 2.0 + acts[:, 0, 0]
    rewards[:10] = -50.0  # failed simulations: far below everything else
    for a, r in zip(acts, rewards):
        agent.observe(g.features(), a, float(r), g.features())
    ranks = agent.buffer.reward_ranks(rewards.astype(np.float32))
    assert ranks.mean() == pytest.approx(0.0, abs=0.05) and ranks.std() == pytest.approx(1.0, abs=0.1)
    assert np.all(np.diff(ranks[np.argsort(rewards)]) >= 0)  # monotone in the reward
    assert np.ptp(ranks[:10]) == 0  # ties share their mid-rank, however low the reward
    for _ in range(400):
        agent.update(rng)
    ok = slice(10, None)  # the critic ranks the simulated designs by the size that drives the reward
    q = agent.q_values(g.features(), acts[ok]).mean(axis=0)
    assert np.corrcoef(q, acts[ok, 0, 0])[0, 1] > 0.6


def test_bad_reward_norm_fails_clearly():
    with pytest.raises(ValueError, match="reward_norm must be one of"):
        GCNRLSearcher(agent={"reward_norm": "minmax"})
    assert GCNRLAgent(reward_norm=True, **SMALL).reward_norm == "standard"
    assert GCNRLAgent(reward_norm=None, **SMALL).reward_norm == "none"
