"""Export (ONNX checked with onnxruntime, state dict + config) and the deploy hook."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hwaml import Candidate
from hwaml.testing import make_context
from hwaml_ofa_nas.evaluator import OFAEvaluator
from hwaml_ofa_nas.export import export_onnx, load_subnet, save_subnet
from hwaml_ofa_nas.supernet import OFAMobileNetV3


def test_onnx_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    net = OFAMobileNetV3("test_tiny")
    net.eval()
    rng = np.random.default_rng(0)
    for i in range(2):
        cfg = net.sample_active_subnet(rng)
        sub = net.get_active_subnet().eval()
        info = export_onnx(sub, tmp_path / f"s{i}.onnx")
        assert info["max_abs_diff"] < 1e-4
        sess = ort.InferenceSession(info["path"], providers=["CPUExecutionProvider"])
        x = np.random.default_rng(i).standard_normal((3, 3, cfg["resolution"], cfg["resolution"])).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"input": x})[0], sub(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_state_dict_and_config_round_trip(tmp_path):
    net = OFAMobileNetV3("test_tiny")
    cfg = net.sample_active_subnet(np.random.default_rng(3))
    sub = net.get_active_subnet().eval()
    files = save_subnet(sub, tmp_path / "best", {"accuracy": 0.5})
    meta = json.loads(open(files["config"]).read())
    assert meta["config"] == cfg and meta["accuracy"] == 0.5
    again = load_subnet(tmp_path / "best")
    x = torch.randn(2, 3, cfg["resolution"], cfg["resolution"])
    with torch.no_grad():
        torch.testing.assert_close(again(x), sub(x))
    (tmp_path / "broken.json").write_text('{"config": {}\n,,}')
    with pytest.raises(ValueError, match=r"broken.json:2"):
        load_subnet(tmp_path / "broken")


def test_evaluator_deploy_writes_checked_artefacts(trained_tiny, tmp_path):
    path, net, _ = trained_tiny
    ev = OFAEvaluator("test_tiny", checkpoint=str(path), train_if_missing=False, calibration_size=100, progress=False)
    ctx = make_context(tmp_path)
    space = ev.search_space(ctx=ctx)
    cfg = space.sample(np.random.default_rng(5))
    res = ev.evaluate(candidate=Candidate(cfg, number=7), ctx=ctx)
    dep = ev.deploy(candidate=Candidate(cfg, number=7), ctx=ctx)
    assert dep.ok and dep.metrics["onnx_max_abs_diff"] < 1e-4
    # the extracted, recalibrated network scores what the supernet scored
    assert dep.metrics["accuracy"] == pytest.approx(res.metrics["accuracy"])
    for key in ("state_dict", "config", "onnx"):
        assert (tmp_path / "deploy").joinpath(dep.artifacts[key].split("/")[-1]).is_file()


def test_missing_checkpoint_without_training_is_clear(tmp_path):
    ev = OFAEvaluator("test_tiny", checkpoint=str(tmp_path / "none.pt"), train_if_missing=False)
    with pytest.raises(FileNotFoundError, match="hwaml-ofa-nas train"):
        ev.search_space(ctx=make_context(tmp_path))
    with pytest.raises(ValueError, match="dataset"):
        OFAEvaluator(dataset="mnist")
