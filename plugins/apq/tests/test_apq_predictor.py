import numpy as np
import pytest
import torch

from hwaml_apq.predictor import (
    FullPrecisionPredictor,
    PredictorTraining,
    fit_fp_predictor,
    fit_quant_predictor,
    load_predictor,
    pairwise_ranking_accuracy,
    rmse,
    save_predictor,
    transfer,
)


def _data(n, rng, n_arch=20, n_quant=12):
    A = (rng.random((n, n_arch)) < 0.5).astype(np.float32)
    Q = (rng.random((n, n_quant)) < 0.5).astype(np.float32)
    wa, wq = np.linspace(-1, 1, n_arch), np.linspace(0.5, 1, n_quant)
    return A, Q, 0.6 + 0.02 * (A @ wa), 0.6 + 0.02 * (A @ wa) + 0.01 * (Q @ wq)


def test_shape_is_three_layers_of_400():
    m = FullPrecisionPredictor(10)
    assert m.first.out_features == 400 and len(m.body) == 2 and m.out.in_features == 400


def test_transfer_starts_as_the_fp_predictor_and_learns_the_quantization_branch():
    rng = np.random.default_rng(0)
    A, Q, y_fp, y_q = _data(200, rng)
    t = PredictorTraining(epochs=60, hidden=64)
    fp = fit_fp_predictor(A, y_fp, t, seed=0)
    q0 = transfer(fp, Q.shape[1])
    assert np.allclose(q0.predict(A[:10], Q[:10]), fp.predict(A[:10]), atol=1e-6)
    q = fit_quant_predictor(A[:100], Q[:100], y_q[:100], init=fp, training=t, seed=0)
    assert rmse(q.predict(A[100:], Q[100:]), y_q[100:]) < rmse(fp.predict(A[100:]), y_q[100:])
    with pytest.raises(ValueError, match="quantization part"):
        q.forward_normalised(torch.zeros(1, A.shape[1]))


def test_ranking_accuracy_and_rmse():
    y = np.array([0.1, 0.2, 0.3, 0.4])
    assert pairwise_ranking_accuracy(y, y) == 1.0
    assert pairwise_ranking_accuracy(-y, y) == 0.0
    assert rmse(y, y + 0.1) == pytest.approx(0.1)


def test_nan_targets_are_refused_and_files_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    A, Q, y_fp, _ = _data(20, rng)
    with pytest.raises(ValueError, match="NaN"):
        fit_fp_predictor(A, np.full(20, np.nan), PredictorTraining(epochs=1, hidden=8))
    m = fit_quant_predictor(A, Q, y_fp, training=PredictorTraining(epochs=2, hidden=8))
    save_predictor(m, tmp_path / "p.pt", {"samples": 20})
    back, meta = load_predictor(tmp_path / "p.pt")
    assert meta == {"samples": 20} and np.allclose(back.predict(A, Q), m.predict(A, Q))
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a predictor"):
        load_predictor(tmp_path / "bad.pt")


def test_transfer_restandardised_on_the_quantized_targets_keeps_the_fp_ranking():
    rng = np.random.default_rng(2)
    A, Q, y_fp, y_q = _data(60, rng)
    fp = fit_fp_predictor(A, y_fp, PredictorTraining(epochs=20, hidden=32), seed=0)
    targets = y_q[:10] - 0.2  # quantized accuracies: lower and more spread than fp32
    q0 = transfer(fp, Q.shape[1], targets)
    z = (fp.predict(A) - float(fp.y_mean)) / float(fp.y_std)
    assert np.allclose(q0.predict(A, Q), np.mean(targets) + max(np.std(targets), 1e-3) * z, atol=1e-5)
    # restandardise=True re-standardises; the default keeps fp32's scale (APQ's plain transfer)
    a = fit_quant_predictor(A[:10], Q[:10], targets, init=fp, training=PredictorTraining(epochs=0, hidden=32), restandardise=True)
    b = fit_quant_predictor(A[:10], Q[:10], targets, init=fp, training=PredictorTraining(epochs=0, hidden=32))
    assert np.allclose(a.predict(A, Q), q0.predict(A, Q), atol=1e-5) and np.allclose(b.predict(A, Q), fp.predict(A), atol=1e-5)
