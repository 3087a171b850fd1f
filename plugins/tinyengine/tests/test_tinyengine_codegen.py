"""The generated C99 project is bit-exact with the Python int8 reference."""

import numpy as np
import torch

from hwaml_tinyengine.codegen import build_and_run, build_project, generate_project, run_test_harness
from hwaml_tinyengine.ir import import_model
from hwaml_tinyengine.memory_planner import patch_candidates, plan_memory
from hwaml_tinyengine.quantize import quantize_graph, quantize_input, run_int8


def _compile_and_compare(model, plan_kwargs, tmp_path, n=12):
    g = import_model(model, model.input_shape)
    x = torch.randn(n, *model.input_shape, generator=torch.Generator().manual_seed(1))
    qg = quantize_graph(g, x)
    plan = plan_memory(qg, **plan_kwargs)
    xq = quantize_input(qg, x)
    proj = generate_project(qg, plan, tmp_path, xq[:3])
    build_project(proj)
    out = build_and_run(proj, xq)
    ref = run_int8(qg, xq)
    return plan, proj, out, ref


def test_branchy_net_bit_exact_with_patches(branchy, tmp_path):
    g = import_model(branchy, branchy.input_shape)
    # split after the residual add so the patch stage holds a whole inverted
    # residual block (in-place depthwise inside, residual tile reused by the add)
    splits = [s for s, _ in patch_candidates(g)]
    assert "add" in splits
    plan, proj, out, ref = _compile_and_compare(branchy, dict(patch=True, split="add", n_patches=3), tmp_path)
    assert plan.patch is not None and plan.patch.n == 3 and plan.patch.recompute_macs > 0
    assert plan.inplace, "the block's depthwise layer should run in place"
    np.testing.assert_array_equal(out, ref)
    assert len(np.unique(ref)) > 3  # not a degenerate constant output
    harness = run_test_harness(proj)
    assert harness["ok"] and harness["matched"] == 3, harness["stdout"]
    # the arena in the C file is exactly the planned size
    assert f"int8_t bytes[{plan.arena_bytes}]" in (tmp_path / "model.c").read_text()


def test_patch_stage_with_concat_relu_and_pooling_is_bit_exact(branchy, tmp_path):
    plan, _, out, ref = _compile_and_compare(branchy, dict(patch=True, split="dw2", n_patches=2), tmp_path)
    ops = {plan.graph.nodes[n]["op"] for n in plan.patch.layers}
    assert {"concat", "relu", "avgpool", "add", "dwconv", "conv"} <= ops
    np.testing.assert_array_equal(out, ref)


def test_mcunet_like_bit_exact_auto_plan(mcunet_small, tmp_path):
    plan, proj, out, ref = _compile_and_compare(mcunet_small, dict(patch=True), tmp_path)
    assert plan.patch is not None
    np.testing.assert_array_equal(out, ref)


def test_harness_detects_a_wrong_reference(branchy, tmp_path):
    g = import_model(branchy, branchy.input_shape)
    x = torch.randn(2, *branchy.input_shape)
    qg = quantize_graph(g, x)
    proj = generate_project(qg, plan_memory(qg, patch=False), tmp_path, quantize_input(qg, x))
    text = (tmp_path / "test_data.h").read_text()
    head, tail = text.split("test_expected", 1)
    tail = tail.replace("{", "{1 + ", 2).replace("{1 + ", "{", 1)  # corrupt the first expected value
    (tmp_path / "test_data.h").write_text(head + "test_expected" + tail)
    res = run_test_harness(proj)
    assert not res["ok"] and res["matched"] < res["total"]


def test_generated_code_is_c99_without_warnings(branchy, tmp_path):
    import subprocess

    g = import_model(branchy, branchy.input_shape)
    qg = quantize_graph(g, torch.randn(4, *branchy.input_shape))
    generate_project(qg, plan_memory(qg), tmp_path)
    res = subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", "-c", "model.c", "-o", "/dev/null"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
