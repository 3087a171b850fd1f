"""Memory planner invariants: no live overlap, lifetimes cover every use,
patch-based peak below the layer-by-layer peak, receptive fields cover patches."""

import pytest

from hwaml_tinyengine.ir import import_model, inputs_of, macs_of
from hwaml_tinyengine.memory_planner import (
    Buffer,
    live_overlaps,
    patch_candidates,
    place_buffers,
    plan_layer_by_layer,
    plan_memory,
    trace_patches,
)
from hwaml_tinyengine.models import mcunet_from_config, mcunet_imagenet_like, mobilenetv2_like


def _assert_valid(plan):
    g = plan.graph
    assert live_overlaps(plan) == []
    assert all(b.offset >= 0 and b.offset + b.size <= plan.arena_bytes for b in plan.buffers)
    buf = {b.name: b for b in plan.buffers}
    step = {n: i for i, n in enumerate(plan.steps)}
    for n in plan.steps:
        # every layer's output and inputs are live while it runs
        b = buf[plan.tensor_buffer[n]]
        assert b.start <= step[n] <= b.end
        for src in inputs_of(g, n):
            bs = buf[plan.tensor_buffer[src]]
            assert bs.start <= step[n] <= bs.end, (src, n)
    # the arena holds at least what is simultaneously live
    assert plan.arena_bytes >= max(r["live_bytes"] for r in plan.per_layer)


@pytest.mark.parametrize("patch,inplace", [(False, False), (False, True), (True, True)])
def test_plans_are_valid(mcunet_small, branchy, patch, inplace):
    for model in (mcunet_small, branchy):
        g = import_model(model, model.input_shape)
        _assert_valid(plan_memory(g, patch=patch, inplace=inplace))


def test_placement_never_overlaps_live_buffers():
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(20):
        bufs = []
        for i in range(30):
            s = int(rng.integers(0, 20))
            bufs.append(Buffer(f"b{i}", int(rng.integers(1, 500)), s, s + int(rng.integers(0, 5))))
        arena = place_buffers(bufs)
        for i, a in enumerate(bufs):
            for b in bufs[i + 1 :]:
                if a.overlaps(b):
                    assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
        # never worse than the sum of all, never better than the peak live sum
        assert arena <= sum((b.size + 3) // 4 * 4 for b in bufs)
        assert arena >= max(sum(b.size for b in bufs if b.start <= t <= b.end) for t in range(25))


def test_inplace_depthwise_shares_its_input_buffer(mcunet_small):
    g = import_model(mcunet_small, mcunet_small.input_shape)
    plan = plan_memory(g, patch=False, inplace=True)
    assert plan.inplace
    for n in plan.inplace:
        src = inputs_of(g, n)[0]
        assert plan.tensor_buffer[n] == plan.tensor_buffer[src]
        assert plan.scratch_offset(n) is not None  # the one-channel temporary is in the arena
    plain = plan_memory(g, patch=False, inplace=False)
    assert plan.arena_bytes <= plain.arena_bytes


def test_patch_plan_beats_layer_by_layer_on_mcunet_like():
    for model in (mcunet_imagenet_like(0.5, 160), mobilenetv2_like(0.35, 144)):
        g = import_model(model, model.input_shape)
        base = plan_layer_by_layer(g)
        plan = plan_memory(g, patch=True)
        _assert_valid(plan)
        assert plan.patch is not None
        assert plan.arena_bytes < base.arena_bytes / 1.8
        assert plan.patch.recompute_macs > 0
        assert plan.patch.recompute_macs <= 0.3 * plan.base_macs
        assert plan.macs == plan.base_macs + plan.patch.recompute_macs


def test_receptive_field_trace_covers_every_patch():
    model = mcunet_from_config({"resolution": 32, "width": 0.5, "blocks": [{"kernel": 5, "expand": 3}] * 4})
    g = import_model(model, model.input_shape)
    split, layers = patch_candidates(g)[-1]
    regions = trace_patches(g, split, layers, 3)
    _, h, w = g.nodes[split]["shape"]
    covered = set()
    for y0, y1, x0, x1 in regions[split]:
        covered |= {(y, x) for y in range(y0, y1) for x in range(x0, x1)}
    assert covered == {(y, x) for y in range(h) for x in range(w)}
    # each conv's input region contains its window for every output pixel of the patch
    for m in layers:
        d = g.nodes[m]
        if d["op"] not in ("conv", "dwconv", "pwconv"):
            continue
        src = inputs_of(g, m)[0]
        _, ih, iw = g.nodes[src]["shape"]
        for (y0, y1, x0, x1), (iy0, iy1, ix0, ix1) in zip(regions[m], regions[src]):
            k, s, p = d["kernel"], d["stride"], d["padding"]
            assert iy0 <= max(0, y0 * s - p) and iy1 >= min(ih, (y1 - 1) * s - p + k)
            assert ix0 <= max(0, x0 * s - p) and ix1 >= min(iw, (x1 - 1) * s - p + k)
    # overlapping regions mean recomputation: patched MACs exceed the stage's
    stage = sum(macs_of(g, m) for m in layers)
    patched = sum(macs_of(g, m, (r[1] - r[0], r[3] - r[2])) for m in layers for r in regions[m])
    assert patched > stage


def test_split_must_be_a_valid_cut(mcunet_small):
    g = import_model(mcunet_small, mcunet_small.input_shape)
    inner = [n for n in g.graph["order"] if g.nodes[n]["op"] == "pwconv"][1]  # inside a residual block
    valid = [s for s, _ in patch_candidates(g)]
    if inner not in valid:
        with pytest.raises(ValueError, match="cannot end a patch stage"):
            plan_memory(g, split=inner, n_patches=2)
    with pytest.raises(ValueError, match="cannot end a patch stage"):
        plan_memory(g, split=g.graph["output"], n_patches=2)


def test_per_layer_breakdown_and_table(mcunet_small):
    g = import_model(mcunet_small, mcunet_small.input_shape)
    plan = plan_memory(g)
    assert [r["layer"] for r in plan.per_layer] == plan.steps
    assert any(r["patch"] for r in plan.per_layer)
    text = plan.table()
    assert "arena:" in text and plan.steps[0][:40] in text
    assert plan.flash_kb > 0


def test_imports_go_one_way_planner_below_device():
    """ir <- flash <- memory_planner <- device: the planner does not import the device module."""
    import subprocess
    import sys

    code = "import sys, hwaml_tinyengine.memory_planner; assert 'hwaml_tinyengine.device' not in sys.modules, 'memory_planner imports device'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
