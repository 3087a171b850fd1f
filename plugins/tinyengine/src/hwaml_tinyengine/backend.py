"""The TinyEngine hardware backend: ``cost`` (peak SRAM, Flash, latency, fits)
and ``deploy`` (a C project, built and checked on the host).

The backend needs a torch model for a candidate. It calls a **model factory**:
``model_factory`` is a dotted path (or, from Python, a callable) taking the
candidate's config plus ``model_kwargs`` and returning an ``nn.Module`` whose
``input_shape`` attribute is ``(C, H, W)`` (or give ``input_shape``). The default,
``hwaml_tinyengine.models.mcunet_from_config``, builds the MCUNet-like family of
the ``tinyengine_digits`` evaluator; another plugin (tinynas) passes its own.

Memory and latency depend only on the architecture, so ``cost`` needs no trained
weights. ``deploy`` compiles trained weights when the evaluator left a
checkpoint at ``<run_dir>/<checkpoint_dir>/trial_<n>.pt`` (a dict with
``state_dict`` and ``calib``, optionally ``x_test``/``y_test``); otherwise it
compiles the untrained network with random calibration data and says so.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch

from hwaml import Candidate, CostReport, DeployResult, RunContext, hookimpl

from .codegen import build_and_run, run_test_harness
from .device import DeviceProfile, load_profile
from .engine import compile_model, cost_of, input_shape_of, plan_model

__all__ = ["TinyEngineBackend", "resolve_factory"]

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "hwaml_tinyengine.models.mcunet_from_config"


def resolve_factory(factory: Union[str, Callable[..., Any]]) -> Callable[..., Any]:
    if callable(factory):
        return factory
    module, _, attr = str(factory).rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"model_factory {factory!r} cannot be imported: {exc}") from exc


class TinyEngineBackend:
    """Cost and deploy on one MCU profile.

    Give either ``profile`` (a shipped profile name: stm32f412, stm32f746,
    stm32h743, mcu64k) or the profile's numbers; numbers given override the
    named profile's.
    """

    def __init__(
        self,
        profile: Optional[str] = None,
        device: Optional[str] = None,
        core: str = "",
        sram_kb: Optional[float] = None,
        flash_kb: Optional[float] = None,
        clock_mhz: Optional[float] = None,
        cycles_per_mac: Optional[Dict[str, float]] = None,
        cycles_per_element: Optional[float] = None,
        layer_overhead_cycles: Optional[float] = None,
        model_factory: Any = DEFAULT_FACTORY,
        model_kwargs: Optional[Dict[str, Any]] = None,
        input_shape: Optional[List[int]] = None,
        patch: bool = True,
        max_overhead: float = 0.3,
        checkpoint_dir: str = "tinyengine",
        deploy_vectors: int = 8,
        name: Optional[str] = None,
    ):
        base: Dict[str, Any] = {}
        if profile is not None:
            p = load_profile(profile)
            base = dict(device=p.device, core=p.core, sram_kb=p.sram_kb, flash_kb=p.flash_kb, clock_mhz=p.clock_mhz, cycles_per_mac=dict(p.cycles_per_mac), cycles_per_element=p.cycles_per_element, layer_overhead_cycles=p.layer_overhead_cycles)
        given = dict(device=device, core=core or None, sram_kb=sram_kb, flash_kb=flash_kb, clock_mhz=clock_mhz, cycles_per_mac=cycles_per_mac, cycles_per_element=cycles_per_element, layer_overhead_cycles=layer_overhead_cycles)
        base.update({k: v for k, v in given.items() if v is not None})
        missing = [k for k in ("device", "sram_kb", "flash_kb", "clock_mhz", "cycles_per_mac") if k not in base]
        if missing:
            raise ValueError(f"TinyEngineBackend needs profile=<name> or {missing}")
        self.profile = DeviceProfile.from_mapping(base)
        self.model_factory = resolve_factory(model_factory)
        self.model_kwargs = dict(model_kwargs or {})
        self.input_shape = input_shape
        self.patch = patch
        self.max_overhead = max_overhead
        self.checkpoint_dir = checkpoint_dir
        self.deploy_vectors = deploy_vectors
        self.name = name or f"tinyengine_{self.profile.device}"
        self._plans: Dict[str, Any] = {}

    # -- model for a candidate -------------------------------------------------
    def model_for(self, candidate: Candidate) -> torch.nn.Module:
        model = self.model_factory(dict(candidate.config), **self.model_kwargs)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model_factory returned {type(model).__name__}, expected a torch.nn.Module")
        return model.eval()

    def plan_for(self, candidate: Candidate) -> Any:
        key = json.dumps(candidate.config, sort_keys=True, default=str)
        if key not in self._plans:
            model = self.model_for(candidate)
            self._plans[key] = plan_model(model, input_shape_of(model, self.input_shape), patch=self.patch, max_overhead=self.max_overhead)
            if len(self._plans) > 512:
                self._plans.pop(next(iter(self._plans)))
        return self._plans[key]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        plan = self.plan_for(candidate)
        metrics = cost_of(plan, self.profile)
        info = {"device": self.profile.device, **plan.summary(), "arena_bytes": plan.arena_bytes}
        return CostReport(metrics, source=self.name, feasible=bool(metrics["fits"]), info=info)

    # -- deployment ------------------------------------------------------------
    def _checkpoint(self, candidate: Candidate, ctx: RunContext) -> Optional[Dict[str, Any]]:
        path = Path(ctx.run_dir) / self.checkpoint_dir / f"trial_{candidate.number}.pt"
        if candidate.number is None or not path.exists():
            return None
        return torch.load(path, weights_only=False)

    @hookimpl
    def deploy(self, candidate: Candidate, ctx: RunContext) -> DeployResult:
        model = self.model_for(candidate)
        shape = input_shape_of(model, self.input_shape)
        ckpt = self._checkpoint(candidate, ctx)
        notes = []
        if ckpt is not None:
            model.load_state_dict(ckpt["state_dict"])
            calib = ckpt["calib"]
        else:
            notes.append("no trained checkpoint found: compiled the untrained network with random calibration data")
            calib = torch.randn(32, *shape, generator=torch.Generator().manual_seed(int(ctx.seed)))
        out_dir = Path(ctx.run_dir) / "deploy" / f"tinyengine_trial_{candidate.number}"
        compiled = compile_model(model, calib, out_dir, self.profile, shape, patch=self.patch, max_overhead=self.max_overhead, test_inputs=calib[: self.deploy_vectors])
        harness = run_test_harness(compiled.project)
        metrics: Dict[str, float] = dict(compiled.cost)
        metrics["arena_bytes"] = float(compiled.plan.arena_bytes)
        metrics["outputs_matched"] = harness["matched"] / max(1, harness["total"])
        ok = bool(harness["ok"])
        if ckpt is not None and "x_test" in ckpt:
            xq = compiled.quantize(ckpt["x_test"])
            c_out = build_and_run(compiled.project, xq)
            ref = compiled.reference(xq)
            exact = bool(np.array_equal(c_out, ref))
            ok = ok and exact
            y = np.asarray(ckpt["y_test"])
            metrics["c_accuracy"] = float((c_out.argmax(1) == y).mean())
            metrics["float_accuracy"] = float(ckpt.get("float_accuracy", float("nan")))
            metrics["host_ms_per_inference"] = float(getattr(compiled.project, "last_ms", 0.0))
            notes.append(f"C outputs on {len(y)} test images {'match' if exact else 'DIFFER from'} the Python int8 reference; C accuracy {metrics['c_accuracy']:.4f}")
        msg = f"{harness['stdout'].strip().splitlines()[-1] if harness['stdout'].strip() else 'harness produced no output'}; " + "; ".join(notes)
        artifacts = {name: str(out_dir / name) for name in ("model.c", "model.h", "weights.h", "Makefile", "main.c", "test_main.c")}
        artifacts["project"] = str(out_dir)
        return DeployResult(artifacts, ok=ok, metrics=metrics, message=msg, source=self.name)
