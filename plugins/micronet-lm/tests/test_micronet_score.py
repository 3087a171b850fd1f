"""The MicroNet counting rules, checked against the published figures and by construction."""

import math

import pytest
import torch

from hwaml_micronet_lm.compress import enable_quantization, prune_to, prunable
from hwaml_micronet_lm.lstm import LSTMLM
from hwaml_micronet_lm.model import PUBLISHED, MicroNetLM, ModelConfig
from hwaml_micronet_lm.score import BASELINE_OPS, BASELINE_PARAMS, PUBLISHED_FINAL, micronet_score, score_model

SMALL = ModelConfig(n_vocab=500, n_layers=2, d_model=16, n_head=2, d_head=8, d_inner=32, seq_len=8, mem_len=8, cutoffs=(100, 300), bin_widths=(16, 4, 2), n_cache=10)


def test_published_final_counts_give_the_published_score():
    s = micronet_score(PUBLISHED_FINAL["params_eq"], PUBLISHED_FINAL["ops_eq"])
    assert round(s, 4) == PUBLISHED_FINAL["score"]
    assert math.isclose(s, 1_757_392 / 159e6 + 8_806_715 / 318e6)


def test_published_architecture_has_the_published_parameter_count():
    with torch.device("meta"):
        model = MicroNetLM(PUBLISHED)
    sheet = score_model(model)
    # "8.3M" in the entry's result folders (results/8.3M_cache2000_hebbian)
    assert abs(sheet.raw_params() - 8.3e6) / 8.3e6 < 0.005
    assert sheet.raw_params() == model.num_parameters()
    # tied tables are counted once: the output side adds only biases, clusters and projections
    names = [p.name for p in sheet.params]
    assert not any(n.startswith("softmax.tables") for n in names)
    # nothing quantized: 16 bits for free (stored values, multiplications); additions at 32
    assert sheet.params_eq() == pytest.approx(sheet.raw_params() / 2)
    assert all(o.mult_bits == 16 and o.add_bits == 32 for o in sheet.ops)
    assert sheet.ops_eq() == pytest.approx(sum(o.mults / 2 + o.adds for o in sheet.ops))


def test_quantized_values_count_their_bits_and_nothing_is_free():
    model = MicroNetLM(SMALL)
    dense = score_model(model)
    enable_quantization(model, 9)
    q = score_model(model)
    for p in q.params:
        expected = 9 if p.name.endswith(".weight") and "ln" not in p.name and "norm" not in p.name or p.name.endswith("pos_emb") else 32
        assert p.bits == expected, p.name
        assert p.equivalents == pytest.approx(p.numel * p.bits / 32)
    assert all(o.add_bits == 32 for o in q.ops)
    assert {o.mult_bits for o in q.ops} == {9, 32}
    assert next(o for o in q.ops if "q.k" in o.name).mult_bits == 9
    assert next(o for o in q.ops if "softmax" in o.name).mult_bits == 32
    assert q.params_eq() < dense.params_eq() and q.ops_eq() < dense.ops_eq()


def test_sparse_tensors_count_nonzeros_plus_a_bitmask_and_skip_zero_multiplies():
    model = MicroNetLM(SMALL)
    before = score_model(model)
    ff1 = model.layers[0].ff1
    prune_to(ff1, 0.75)
    after = score_model(model)
    entry = next(p for p in after.params if p.name == "layers.0.ff1.weight")
    n = ff1.weight.numel()
    assert entry.sparse and entry.nonzero == n // 4
    assert entry.equivalents == pytest.approx(n / 4 * 16 / 32 + n / 32)
    op_b = next(o for o in before.ops if o.name == "layers.0.ff1")
    op_a = next(o for o in after.ops if o.name == "layers.0.ff1")
    assert op_b.mults == n and op_a.mults == n // 4
    assert op_a.adds == n // 4  # the bias is the first addend


def test_cache_memory_and_tail_words_cost_operations():
    model = MicroNetLM(SMALL)
    with_cache = score_model(model).ops_eq()
    without = score_model(model, use_cache=False).ops_eq()
    d, n = SMALL.d_model, SMALL.n_cache
    assert with_cache - without == pytest.approx((n * d + 3 * n + 4) / 2 + n * (d - 1) + 2 * n + n + 2)
    longer = MicroNetLM(ModelConfig(**{**SMALL.to_dict(), "mem_len": 16}))
    assert score_model(longer).ops_eq() > with_cache  # more memory: more keys per query
    head_only = score_model(model, [1, 0, 0], [1, 0, 0]).ops_eq()
    rare = score_model(model, [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]).ops_eq()
    assert rare > head_only
    with pytest.raises(ValueError, match="one per bin"):
        score_model(model, [1.0], [1.0])


def test_lstm_baseline_counts():
    lstm = LSTMLM(1000, 32, 64)
    sheet = score_model(lstm)
    assert sheet.raw_params() == lstm.num_parameters()
    gates = 4 * 64 * (32 + 64)
    softmax = 1000 * 32
    assert sheet.raw_ops() > 2 * (gates + softmax)
    assert micronet_score(sheet.raw_params(), sheet.raw_ops(), sheet.raw_params(), sheet.raw_ops()) == 2.0
    with pytest.raises(TypeError, match="MicroNetLM or LSTMLM"):
        score_model(torch.nn.Linear(2, 2))


def test_score_sheet_exports_every_row():
    model = MicroNetLM(SMALL)
    sheet = score_model(model)
    csv_text = sheet.to_csv()
    assert csv_text.count("\nparam,") == len(sheet.params) and csv_text.count("\nop,") == len(sheet.ops)
    assert '"micronet_score"' in sheet.to_json()
    assert sheet.score() == pytest.approx(sheet.params_eq() / BASELINE_PARAMS + sheet.ops_eq() / BASELINE_OPS)


def test_lstm_baseline_trains_and_evaluates_online():
    from hwaml_micronet_lm.lstm import evaluate_lstm, train_lstm

    torch.manual_seed(0)
    stream = torch.randint(0, 50, (25,)).repeat(40)
    lstm = LSTMLM(50, 16, 32, dropout=0.0)
    before = evaluate_lstm(lstm, stream[:300])
    tps = train_lstm(lstm, stream, epochs=3, batch_size=4, bptt=16, lr=1e-2, progress=False)
    assert tps > 0 and evaluate_lstm(lstm, stream[:300]) < before / 3
