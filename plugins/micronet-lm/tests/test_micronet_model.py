"""The model's parts: adaptive softmax, segment recurrence, cache, Hebbian softmax, pruning, quantization."""

import math

import pytest
import torch

from hwaml_micronet_lm.cache import cache_probability, mix, search_cache
from hwaml_micronet_lm.compress import GradualPruner, enable_quantization, prunable, sparsity_of, zhu_gupta_sparsity
from hwaml_micronet_lm.hebbian import HebbianSoftmax
from hwaml_micronet_lm.model import MicroNetLM, ModelConfig, fake_quant
from hwaml_micronet_lm.train import TrainConfig, evaluate_stream, train_lm

CFG = ModelConfig(n_vocab=300, n_layers=2, d_model=16, n_head=2, d_head=8, d_inner=32, seq_len=8, mem_len=8, cutoffs=(50, 150), bin_widths=(16, 4, 2), n_cache=12)


def _model(**kw):
    torch.manual_seed(0)
    return MicroNetLM(ModelConfig(**{**CFG.to_dict(), **kw})).eval()


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="one width per bin"):
        ModelConfig(n_vocab=100, cutoffs=(10,), bin_widths=(256, 64, 4))
    with pytest.raises(ValueError, match="increase strictly"):
        ModelConfig(n_vocab=100, cutoffs=(50, 200), bin_widths=(256, 64, 4))
    with pytest.raises(ValueError, match="unknown model config"):
        ModelConfig.from_dict({"n_layer": 3})


def test_adaptive_softmax_is_normalised_and_tied():
    m = _model()
    h = torch.randn(20, 16)
    full = m.softmax.full_log_prob(h)
    assert full.shape == (20, 300)
    assert torch.allclose(full.exp().sum(1), torch.ones(20), atol=1e-5)
    target = torch.randint(0, 300, (20,))
    lp, seen = m.softmax.log_prob(h, target)
    assert torch.allclose(lp, full.gather(1, target[:, None]).squeeze(1), atol=1e-5)
    assert m.softmax.tables[1].weight is m.embed.tables[1].weight
    assert sum(len(t) for _, t in seen.values()) == 20


def test_segment_memory_equals_one_long_window():
    m = _model()
    x = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        whole, _ = m(x)  # window of mem_len=8 previous positions inside one sequence
        h1, mems = m(x[:, :8])
        h2, _ = m(x[:, 8:], mems)
    assert torch.allclose(torch.cat([h1, h2], 1), whole, atol=1e-5)


def test_attention_is_causal():
    m = _model()
    x = torch.randint(0, 300, (1, 8))
    y = x.clone()
    y[0, 5] = (y[0, 5] + 1) % 300
    with torch.no_grad():
        a, _ = m(x)
        b, _ = m(y)
    assert torch.allclose(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5:], b[:, 5:])


def test_cache_sees_only_the_past():
    h = torch.randn(1, 6, 4)
    target = torch.tensor([[3, 7, 3, 3, 9, 7]])
    p, state = cache_probability(h, target, None, n_cache=10, theta=torch.tensor(1.0))
    assert p[0, 0] == 0  # nothing before the first position
    assert p[0, 1] == 0  # word 7 has not followed anything yet
    assert p[0, 2] > 0 and p[0, 4] == 0  # 3 followed position 0; 9 is new
    assert state.keys.shape[1] == 6
    mixed = mix(torch.log(torch.full((1, 6), 0.1)), p, torch.tensor(0.2))
    assert torch.allclose(mixed.exp()[0, 0], torch.tensor(0.08))
    # a short cache forgets
    p_short, _ = cache_probability(h, target, None, n_cache=1, theta=torch.tensor(1.0))
    assert p_short[0, 5] == 0  # 7 followed position 0, five positions back


def test_cache_search_picks_the_best_pair():
    torch.manual_seed(0)
    target = torch.randint(0, 5, (200,))
    hidden = torch.nn.functional.one_hot(target, 8).float() + 0.01 * torch.randn(200, 8)
    hidden = torch.roll(hidden, 1, 0)  # h_t encodes the previous word: a repetitive stream
    logp = torch.full((200,), math.log(1 / 300))
    res = search_cache(hidden, logp, target, 50, [0.1, 1.0, 5.0], [0.05, 0.5, 0.9])
    assert res.perplexity == min(g[2] for g in res.grid) and len(res.grid) == 9
    assert res.lam > 0.05


def test_hebbian_softmax_sets_a_new_word_from_its_first_occurrence():
    m = _model()
    hs = HebbianSoftmax([50, 100, 150], T=3, gamma=0.01, match_norm=False)
    h = torch.randn(1, 16)
    hs.update(m.softmax.tables, {0: (h, torch.tensor([7]))})
    assert torch.allclose(m.embed.tables[0].weight[7], h[0])  # lambda = 1 / count = 1
    before = m.embed.tables[0].weight[7].clone()
    for _ in range(3):
        hs.update(m.softmax.tables, {0: (torch.randn(1, 16), torch.tensor([7]))})
    frozen = m.embed.tables[0].weight[7].clone()
    assert not torch.allclose(before, frozen)
    hs.update(m.softmax.tables, {0: (torch.randn(1, 16), torch.tensor([7]))})
    assert torch.equal(frozen, m.embed.tables[0].weight[7])  # count >= T: left to gradient descent


def test_gradual_pruning_follows_the_cubic_schedule_and_holds():
    assert zhu_gupta_sparsity(0, 0.8, 0.0, 0, 100) == 0.0
    assert zhu_gupta_sparsity(50, 0.8, 0.0, 0, 100) == pytest.approx(0.8 * (1 - 0.5**3))
    assert zhu_gupta_sparsity(100, 0.8, 0.0, 0, 100) == 0.8
    m = _model(use_cache=False)
    stream = torch.randint(0, 300, (500,))
    pruner = GradualPruner(m, 0.6, begin=0, end=10, frequency=2)
    train_lm(m, stream, TrainConfig(epochs=1, batch_size=4, lr=1e-3, warmup_steps=1), pruner=pruner, progress=False)
    assert sparsity_of(m) == pytest.approx(0.6, abs=0.01)
    for _, mod in prunable(m):
        assert torch.all(mod.weight[mod.weight_mask == 0] == 0)


def test_fake_quantization_has_the_levels_of_its_bits_and_passes_gradients():
    x = torch.randn(1000, requires_grad=True)
    q = fake_quant(x, 4)
    assert q.detach().unique().numel() <= 2**4 - 1
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones(1000))
    m = _model()
    enable_quantization(m, 9)
    assert m.quant_bits == 9 and m.layers[0].qkv.bits == 9
    with pytest.raises(ValueError, match="bits"):
        enable_quantization(m, 1)


def test_training_lowers_validation_perplexity():
    torch.manual_seed(0)
    pattern = torch.randint(0, 300, (40,))
    stream = pattern.repeat(30)
    m = _model()
    before = evaluate_stream(m, stream[:400])
    train_lm(m, stream, TrainConfig(epochs=2, batch_size=4, lr=3e-3, warmup_steps=2), progress=False)
    assert evaluate_stream(m, stream[:400]) < before / 3
