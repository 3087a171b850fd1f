"""The generated C99 project is bit-exact with the Python int8 reference."""

import numpy as np
import pytest
import torch

from hwaml_tinyengine.codegen import build_and_run, build_project, generate_project, run_test_harness
from hwaml_tinyengine.ir import import_model
from hwaml_tinyengine.latency import plan_features
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
    # the centre tile's window is inside the tensor (te_dwconv.h's direct path), the border tiles pad (the ring)
    dw = [f for _, op, f in plan_features(plan) if op == "dwconv"]
    assert any(f["direct_outputs"] > 0 and f["outputs"] > 0 for f in dw)
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


@pytest.mark.parametrize("net", ["branchy", "mbv3"])
def test_generated_code_is_c99_without_warnings(net, request, tmp_path):
    import subprocess

    model = request.getfixturevalue(net)
    g = import_model(model, model.input_shape)
    qg = quantize_graph(g, torch.randn(4, *model.input_shape))
    generate_project(qg, plan_memory(qg), tmp_path)
    res = subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", "-c", "model.c", "-o", "/dev/null"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_kernels_and_host_programs_are_the_packaged_c_files(branchy, tmp_path):
    from hwaml_tinyengine.codegen import CFLAGS, STATIC_FILES, TEMPLATES, c_source, kernel_templates

    g = import_model(branchy, branchy.input_shape)
    qg = quantize_graph(g, torch.randn(4, *branchy.input_shape))
    plan = plan_memory(qg)
    proj = generate_project(qg, plan, tmp_path)
    used = kernel_templates(plan)
    assert set(used) <= set(TEMPLATES.values()) and "te_conv.h" in used and "te_concat.h" in used
    for name in (*STATIC_FILES, *used):
        assert (tmp_path / name).read_text() == c_source(name), name
    top = {f for f in proj.files if "/" not in f}
    assert top == {*STATIC_FILES, *used, "model.c", "model_config.h", "weights.h", "test_data.h", "te_harness.h", "firmware.mk", "firmware.ld", "qemu.ld"}
    # the Arduino library: the model and the kernels it uses, no host or firmware mains
    lib = {f.split("/", 2)[2] for f in proj.files if f.startswith("arduino/model/")}
    assert {"library.properties", "src/model.c", "src/model.h", "src/weights.h", "src/te_runtime.h", "examples/model_run/model_run.ino"} <= lib
    assert not {"src/main.c", "src/fw_main.c", "src/startup.c", "src/test_main.c"} & lib
    model_c = (tmp_path / "model.c").read_text()
    for t in used:
        assert f'#include "{t}"' in model_c
    assert f"CFLAGS ?= {CFLAGS}" in c_source("Makefile")


def test_mobilenetv3_pieces_hswish_and_squeeze_excite_are_bit_exact(mbv3, tmp_path):
    from hwaml_tinyengine.quantize import dequantize_output
    from hwaml_tinyengine.ir import run_float

    g = import_model(mbv3, mbv3.input_shape)
    ops = [(g.nodes[n]["op"], g.nodes[n]["act"]) for n in g.graph["order"]]
    assert ("mul", "none") in ops and ("conv", "hswish") in ops and ("pwconv", "hsigmoid") in ops and ("dwconv", "hswish") in ops
    x = torch.randn(16, *mbv3.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(run_float(g, x).float(), mbv3(x), rtol=1e-4, atol=1e-4)
    plan, proj, out, ref = _compile_and_compare(mbv3, dict(patch=True), tmp_path, n=16)
    np.testing.assert_array_equal(out, ref)
    assert len(np.unique(ref)) > 3
    assert run_test_harness(proj)["ok"]
    qg = quantize_graph(g, x)
    y_int8 = dequantize_output(qg, run_int8(qg, quantize_input(qg, x)))
    y_float = run_float(g, x).numpy()
    assert np.abs(y_int8 - y_float).max() / np.abs(y_float).max() < 0.15
