"""The bare-metal firmware: cross-compiled for Cortex-M, run in QEMU bit-exactly,
two models in one firmware, and a model that does not fit fails at the link."""

import pytest
import torch

from hwaml_tinyengine.codegen import generate_project
from hwaml_tinyengine.device import load_profile
from hwaml_tinyengine.firmware import build_firmware, firmware_target, linker_script, run_qemu, section_sizes
from hwaml_tinyengine.ir import import_model
from hwaml_tinyengine.latency import plan_features
from hwaml_tinyengine.memory_planner import plan_memory
from hwaml_tinyengine.quantize import quantize_graph, quantize_input


def _project(model, path, profile, prefix="model", n=3, patch=True, **plan_kwargs):
    g = import_model(model, model.input_shape)
    x = torch.randn(8, *model.input_shape, generator=torch.Generator().manual_seed(2))
    qg = quantize_graph(g, x)
    plan = plan_memory(qg, patch=patch, **plan_kwargs)
    return generate_project(qg, plan, path, quantize_input(qg, x[:n]), profile=profile, prefix=prefix), plan


def test_every_op_runs_bit_exactly_on_cortex_m4_in_qemu_and_two_models_link_into_one_firmware(branchy, mbv3, tmp_path):
    # branchy: conv, depthwise (in place), pointwise, add, concat, avgpool, relu, linear;
    # mbv3: h-swish / h-sigmoid tables, squeeze-and-excite scaling. DSP kernels on the M4.
    # 3 x 3 patches: the depthwise layer's centre tile takes the direct path, the border tiles the padded ring
    a, plan = _project(branchy, tmp_path / "a", "stm32f412", prefix="branchy", split="add", n_patches=3)
    dw = [f for _, op, f in plan_features(plan) if op == "dwconv"]
    assert any(f["direct_outputs"] > 0 and f["outputs"] > 0 for f in dw)
    b, _ = _project(mbv3, tmp_path / "b", "stm32f412", prefix="mbv3")
    assert (a.path / "branchy.h").is_file() and "void branchy_run(void);" in (a.path / "branchy.h").read_text()
    assert "#define BRANCHY_ARENA_BYTES" in (a.path / "branchy_config.h").read_text()
    # both models' sources in one firmware, with branchy's harness
    for name in b.files:
        if name.startswith(("mbv3", "te_")) and name not in ("te_harness.h",):
            (a.path / name).write_text((b.path / name).read_text())
    (a.path / "firmware.mk").write_text((a.path / "firmware.mk").read_text().replace("MODEL_SRC = branchy.c", "MODEL_SRC = branchy.c mbv3.c"))
    log = build_firmware(a.path, "arm") + build_firmware(a.path, "firmware_qemu.elf")
    assert "warning" not in log, log  # -std=c99 -Wall -Wextra -pedantic, both models, DSP kernels
    run = run_qemu(a.path, "mps2-an386")
    assert run["matched"] == run["total"] == 3 and run["returncode"] == 0, run["stdout"]
    assert all(v > 1000 for v in run["instructions"]) and 0 < max(v["stack"] for v in run["vectors"]) < 1024
    # both models were in the link (no clashing names; the unused one is garbage-collected)
    linked = (a.path / "firmware.map").read_text()
    assert "mbv3_run" in linked and "branchy_run" in linked
    sizes = section_sizes(a.path / "firmware.elf")
    assert sizes[".te_arena"] >= plan.arena_bytes  # both arenas, in the arena section
    # the second model's harness on the Cortex-M7 build
    b.path.joinpath("firmware.mk").write_text(b.path.joinpath("firmware.mk").read_text().replace("cortex-m4", "cortex-m7").replace("fpv4-sp-d16", "fpv5-sp-d16").replace("mps2-an386", "mps2-an500"))
    build_firmware(b.path, "firmware_qemu.elf")
    run = run_qemu(b.path, "mps2-an500")
    assert run["matched"] == run["total"] == 3, run["stdout"]


def test_a_model_that_does_not_fit_fails_at_the_link(mcunet_small, tmp_path):
    small = load_profile("mcu64k", {"sram_kb": 1, "flash_kb": 256})
    proj, plan = _project(mcunet_small, tmp_path, small, n=1)
    assert plan.arena_bytes > 1024
    with pytest.raises(RuntimeError, match="will not fit in region|overflowed|does not fit"):
        build_firmware(proj.path, "arm")


def test_linker_scripts_carry_the_profiles_memories():
    h7 = firmware_target(load_profile("stm32h743"))
    assert h7.qemu_machine == "mps2-an500" and "-mfpu=fpv5-d16" in h7.cpu_flags
    ld = linker_script(h7)
    assert "ORIGIN = 0x08000000, LENGTH = 2097152" in ld and "AXISRAM" in ld and 'REGION_ALIAS("ARENA", AXISRAM)' in ld
    assert "ORIGIN = 0x24000000, LENGTH = 524288" in ld and "ORIGIN = 0x20000000, LENGTH = 131072" in ld
    q = linker_script(h7, qemu=True)
    assert "ORIGIN = 0x00000000, LENGTH = 2097152" in q and "LENGTH = 524288" in q
    f4 = firmware_target(load_profile("stm32f412", {"sram_kb": 128}))
    assert f4.qemu_machine == "mps2-an386" and "-mcpu=cortex-m4" in f4.cpu_flags
    assert "ORIGIN = 0x20000000, LENGTH = 131072" in linker_script(f4)
