"""The TinyEngine hardware backend: ``cost`` (peak SRAM, Flash, latency, fits,
MACs, energy) and ``deploy`` (a C project, built and checked on the host).

What it costs is the run evaluator's network: ``ctx.build_model(candidate)``
(any NN evaluator's :class:`hwaml.BuiltModel`: its ``module`` and
``input_shape``), imported, planned (in-place depthwise, patch-based first
stage) and costed on one MCU profile. Memory and latency depend only on the
architecture, so costing needs no trained weights.

``deploy`` compiles the trial's trained network:
``ctx.build_model(trial.candidate, trial)`` must say ``trained`` and give
``calibration`` images (int8 calibration); with ``test_data`` the C binary is
also scored on it and checked bit for bit against the Python int8 reference.
Without a trained checkpoint deploy fails, unless the backend is configured
``allow_untrained=true``: then it compiles what it got (random calibration
data drawn with the run seed when there is none) and reports ``ok=False`` with
the reason.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from hwaml import BuiltModel, Candidate, CostReport, DeployResult, RunContext, Trial, hookimpl

from .codegen import build_and_run, check_prefix, run_test_harness
from .firmware import build_firmware, check_toolchain, firmware_target, model_flash_bytes, run_qemu, section_sizes
from .latency import predict_instructions
from .device import DeviceProfile, load_profile
from .engine import COST_METRICS, compile_model, cost_of, plan_model
from .memory_planner import MemoryPlan

__all__ = ["TinyEngineBackend", "PLAN_CACHE_SIZE"]

log = logging.getLogger(__name__)

#: plans kept per backend (one per configuration costed)
PLAN_CACHE_SIZE = 512


class TinyEngineBackend:
    """Cost and deploy the evaluator's network on one MCU profile.

    :param profile: a shipped profile (``stm32f412``, ``stm32f746``,
        ``stm32h743``, ``mcu64k``; see :data:`hwaml_tinyengine.device.PROFILES`).
    :param overrides: fields of the profile to change (``device``, ``core``,
        ``sram_kb``, ``flash_kb``, ``clock_mhz``, ``power_mw``,
        ``cycles_per_mac`` (some layer types or all), ``cycles_per_element``,
        ``layer_overhead_cycles``); an unknown key is an error naming it.
    :param patch, max_overhead: the memory planner's patch-based inference and
        its largest recomputation (a fraction of the network's MACs).
    :param deploy_vectors: calibration images embedded in the C test harness.
    :param allow_untrained: deploy a trial without trained weights anyway
        (reported ``ok=False`` with the reason) instead of failing.
    :param firmware: deploy also cross-compiles the bare-metal firmware for the
        profile's core (``make arm``: the device's linker script, so a model that
        does not fit fails the link), runs it in QEMU (``-icount shift=0``) on the
        test vectors and reports bit-exactness, the real section sizes and the
        instructions per inference (needs arm-none-eabi-gcc and qemu-system-arm).
    :param prefix: the C API's prefix (``<prefix>_run`` ...).
    :param name: the backend's name (``CostReport.source``, ``DeployResult.source``);
        default ``tinyengine_<device>``.
    """

    def __init__(
        self,
        profile: str,
        overrides: Optional[Mapping[str, Any]] = None,
        patch: bool = True,
        max_overhead: float = 0.3,
        deploy_vectors: int = 8,
        allow_untrained: bool = False,
        name: Optional[str] = None,
        firmware: bool = True,
        prefix: str = "model",
    ):
        if float(max_overhead) < 0:
            raise ValueError(f"max_overhead must be >= 0, got {max_overhead}")
        if int(deploy_vectors) < 1:
            raise ValueError(f"deploy_vectors must be >= 1, got {deploy_vectors}")
        self.profile: DeviceProfile = load_profile(profile, overrides)
        self.patch = bool(patch)
        self.max_overhead = float(max_overhead)
        self.deploy_vectors = int(deploy_vectors)
        self.allow_untrained = bool(allow_untrained)
        self.firmware = bool(firmware)
        self.prefix = check_prefix(prefix)
        self.name = name or f"tinyengine_{self.profile.device}"
        self._plans: "OrderedDict[str, MemoryPlan]" = OrderedDict()

    # -- the evaluator's network -------------------------------------------------
    def built_model(self, candidate: Candidate, ctx: RunContext, trial: Optional[Trial] = None) -> BuiltModel:
        """``ctx.build_model(candidate, trial)``, checked."""
        if ctx.build_model is None:
            raise RuntimeError(
                f"backend {self.name} costs the evaluator's neural network, but this run's evaluator builds none "
                f"(ctx.build_model is None: it is not an NN evaluator); use an NN evaluator or drop the backend"
            )
        model = ctx.build_model(candidate) if trial is None else ctx.build_model(candidate, trial)
        if not isinstance(model, BuiltModel):
            raise TypeError(f"backend {self.name}: ctx.build_model returned {type(model).__name__}, expected hwaml.BuiltModel")
        if len(tuple(model.input_shape)) != 3 or not model.input_dtype.startswith(("float", "bfloat")):
            raise ValueError(f"backend {self.name}: TinyEngine compiles image networks; input must be float (C, H, W), got {model.input_dtype} {tuple(model.input_shape)}")
        if not isinstance(model.module, torch.nn.Module):
            raise TypeError(f"backend {self.name}: BuiltModel.module is a {type(model.module).__name__}, expected a torch.nn.Module")
        return model

    def firmware_check(self, compiled: Any) -> Dict[str, Any]:
        """Build the project's firmware for the profile (device linker script) and
        for QEMU, run it on the embedded vectors; the metrics of :meth:`deploy`."""
        path = compiled.project.path
        target = firmware_target(self.profile)
        build_firmware(path, "arm")  # the device's memories: fails at the link when the model does not fit
        build_firmware(path, "firmware_qemu.elf")
        sizes = section_sizes(path / "firmware.elf")
        model_flash = model_flash_bytes(path / "firmware.elf")
        run = run_qemu(path, target.qemu_machine)
        macs = float(compiled.plan.base_macs)
        insns = float(np.mean(run["instructions"]))
        m = {
            "fw_outputs_matched": run["matched"] / max(1, run["total"]),
            "fw_text_bytes": float(sizes.get(".text", 0) + sizes.get(".isr_vector", 0)),
            "fw_rodata_bytes": float(sizes.get(".rodata", 0)),
            "fw_data_bytes": float(sizes.get(".data", 0)),
            "fw_bss_bytes": float(sizes.get(".bss", 0) + sizes.get(".te_arena", 0)),
            "fw_arena_bytes": float(sizes.get(".te_arena", 0)),
            "fw_flash_bytes": float(sizes.get(".isr_vector", 0) + sizes.get(".text", 0) + sizes.get(".rodata", 0) + sizes.get(".ARM.exidx", 0) + sizes.get(".data", 0)),
            "instructions_per_inference": insns,
            "instructions_per_mac": insns / macs if macs else float("nan"),
            "stack_bytes": float(max(v["stack"] for v in run["vectors"])),
            # the model's own Flash in the linked firmware (no harness, startup, vectors) and the search-time estimate's error
            "fw_model_flash_bytes": float(model_flash["model"]),
            "flash_estimate_error": (compiled.plan.flash_bytes - model_flash["model"]) / max(1, model_flash["model"]),
            "predicted_instructions": float(predict_instructions(compiled.plan, target.core)),
        }
        ok = run["matched"] == run["total"] and run["returncode"] == 0
        note = (
            f"firmware ({target.core}, QEMU {target.qemu_machine}): matched {run['matched']}/{run['total']}, "
            f"{insns:.0f} instructions per inference ({m['instructions_per_mac']:.2f} per MAC), stack {m['stack_bytes']:.0f} B, "
            f".text {m['fw_text_bytes']:.0f} B .rodata {m['fw_rodata_bytes']:.0f} B .bss {m['fw_bss_bytes']:.0f} B"
        )
        return {"ok": ok, "metrics": m, "note": note}

    @staticmethod
    def _key(candidate: Candidate, model: BuiltModel) -> str:
        return json.dumps([model.source, list(model.input_shape), candidate.config], sort_keys=True, default=str)

    def plan_for(self, candidate: Candidate, ctx: RunContext) -> Tuple[MemoryPlan, BuiltModel]:
        """The memory plan of the evaluator's network for ``candidate`` (cached
        per configuration and evaluator)."""
        model = self.built_model(candidate, ctx)
        key = self._key(candidate, model)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_model(model.module.eval(), tuple(model.input_shape), patch=self.patch, max_overhead=self.max_overhead)
            self._plans[key] = plan
            if len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan, model

    # -- hooks ---------------------------------------------------------------------
    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return list(COST_METRICS)

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        plan, model = self.plan_for(candidate, ctx)
        metrics = cost_of(plan, self.profile)
        info: Dict[str, Any] = {"device": self.profile.device, "model_source": model.source, **plan.summary(), "arena_bytes": plan.arena_bytes}
        if model.macs is not None:
            info["evaluator_macs_m"] = float(model.macs) / 1e6
        return CostReport(metrics, source=self.name, feasible=bool(metrics["fits"]), info=info)

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> DeployResult:
        model = self.built_model(trial.candidate, ctx, trial)
        shape = tuple(int(s) for s in model.input_shape)
        problems: List[str] = []  # each one makes the result ok=False
        notes: List[str] = []
        if not model.trained:
            why = str(model.info.get("untrained_reason", "")) if model.info else ""
            reason = f"trial {trial.number} has no trained checkpoint" + (f" ({why})" if why else "")
            if not self.allow_untrained:
                raise RuntimeError(
                    f"backend {self.name}: cannot deploy trial {trial.number}: {reason}, so the C project would run "
                    f"untrained weights; deploy a trial that saved a checkpoint, or set allow_untrained=true on the backend "
                    f"to compile the untrained network anyway (reported ok=false)"
                )
            problems.append(f"{reason}: compiled the untrained network (allow_untrained=true)")
        calib = model.calibration
        if calib is None:
            if not self.allow_untrained:
                raise RuntimeError(
                    f"backend {self.name}: cannot deploy trial {trial.number}: the evaluator ({model.source}) gave no calibration data "
                    f"for int8 quantisation; set allow_untrained=true to calibrate on random data (reported ok=false)"
                )
            calib = torch.randn(32, *shape, generator=torch.Generator().manual_seed(int(ctx.seed)))
            problems.append(f"no calibration data: calibrated on 32 random images (run seed {int(ctx.seed)})")
        calib = torch.as_tensor(calib, dtype=torch.float32)
        if self.firmware:
            check_toolchain()
        out_dir = Path(ctx.run_dir) / "deploy" / f"tinyengine_trial_{trial.number}"
        module = model.module.eval()
        compiled = compile_model(
            module, calib, out_dir, self.profile, shape, patch=self.patch, max_overhead=self.max_overhead, test_inputs=calib[: self.deploy_vectors], prefix=self.prefix
        )
        harness = run_test_harness(compiled.project)
        metrics: Dict[str, float] = dict(compiled.cost)
        metrics["arena_bytes"] = float(compiled.plan.arena_bytes)
        metrics["outputs_matched"] = harness["matched"] / max(1, harness["total"])
        ok = bool(harness["ok"])
        if model.test_data is not None:
            x, y = model.test_data
            x = torch.as_tensor(x, dtype=torch.float32)
            y = np.asarray(y)
            xq = compiled.quantize(x)
            c_out = build_and_run(compiled.project, xq)
            ref = compiled.reference(xq)
            exact = bool(np.array_equal(c_out, ref))
            ok = ok and exact
            with torch.no_grad():
                float_pred = torch.cat([module(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)]).numpy()
            metrics["c_accuracy"] = float((c_out.argmax(1) == y).mean())
            metrics["int8_accuracy"] = float((ref.argmax(1) == y).mean())
            metrics["float_accuracy"] = float((float_pred == y).mean())
            if compiled.project.last_ms is not None:
                metrics["host_ms_per_inference"] = float(compiled.project.last_ms)
            notes.append(
                f"C outputs on {len(y)} test images {'match' if exact else 'DIFFER from'} the Python int8 reference; "
                f"C accuracy {metrics['c_accuracy']:.4f} (float {metrics['float_accuracy']:.4f})"
            )
        else:
            notes.append("the evaluator gave no test data: C accuracy not measured")
        last = harness["stdout"].strip().splitlines()[-1] if harness["stdout"].strip() else "harness produced no output"
        if self.firmware:
            fw = self.firmware_check(compiled)
            metrics.update(fw["metrics"])
            ok = ok and fw["ok"]
            notes.append(fw["note"])
        msg = "; ".join([last, *problems, *notes])
        artifacts = {name: str(out_dir / name) for name in compiled.project.files}
        artifacts["project"] = str(out_dir)
        return DeployResult(artifacts, ok=ok and not problems, metrics=metrics, message=msg, source=self.name)
