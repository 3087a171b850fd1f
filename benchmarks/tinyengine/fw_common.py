"""Shared by the firmware benchmarks: random networks with realistic batch-norm
statistics, the tinynas search space, and one QEMU measurement of a network."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List

import torch

from hwaml_tinyengine.codegen import generate_project
from hwaml_tinyengine.firmware import build_firmware, model_flash_bytes, profile_layers, run_qemu, section_sizes
from hwaml_tinyengine.ir import import_model
from hwaml_tinyengine.memory_planner import plan_memory
from hwaml_tinyengine.quantize import quantize_graph, quantize_input


def calibrate_bn(model, shape, seed=0):
    """Batch-norm statistics of random images (a forward pass in train mode), so
    activations keep their scale through a randomly initialised network."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(16, *shape, generator=gen))
    return model.eval()


def tinynas_networks(n: int, seed: int, base: str = "mcunet_imagenet", width: float = 0.35, resolution: int = 96) -> List[Any]:
    """``n`` sub-networks sampled uniformly from the tinynas space S(width, resolution)."""
    from hwaml_tinynas.space_optimization import sample_space
    from hwaml_tinynas.supernet import space_arch, static_subnet

    arch = space_arch(base, width, resolution)
    return [(cfg, static_subnet(arch, cfg)) for cfg in sample_space(base, width, resolution, n, seed)]


def measure(model: Any, profile: Any, vectors: int = 1, layers: bool = False, patch: bool = True, seed: int = 0) -> Dict[str, Any]:
    """Quantise (random calibration images), plan, cross-compile for the profile
    and run in QEMU: whole-inference instructions (the plain firmware), the
    linked sizes, the plan, and with ``layers`` the per-layer profile."""
    shape = tuple(model.input_shape)
    model = calibrate_bn(model, shape, seed)
    g = import_model(model, shape)
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(seed))
    qg = quantize_graph(g, x)
    plan = plan_memory(qg, patch=patch)
    with tempfile.TemporaryDirectory() as d:
        proj = generate_project(qg, plan, Path(d), quantize_input(qg, x[:vectors]), profile=profile)
        build_firmware(proj.path, "arm")
        build_firmware(proj.path, "firmware_qemu.elf")
        run = run_qemu(proj.path, proj.qemu_machine)
        if run["matched"] != run["total"]:
            raise RuntimeError(f"firmware not bit-exact: {run['stdout'][-500:]}")
        out = {"plan": plan, "graph": qg, "instructions": sum(run["instructions"]) / len(run["instructions"]),
               "stack": max(v["stack"] for v in run["vectors"]), "sizes": section_sizes(proj.path / "firmware.elf"),
               "model_flash": model_flash_bytes(proj.path / "firmware.elf")}
        if layers:
            out["profile"] = profile_layers(proj, plan)
    return out
