"""The memory stage 1 must fit: the MCU's SRAM and Flash, tightened by the run.

The MCU is a TinyEngine device profile: the evaluator's ``device`` setting, or
else the profile of the run's one TinyEngine backend, read from its config
node (``ctx.cfg.backend.<name>``: its ``profile`` (or ``device``) key, the
profile ``overrides`` it sets, its ``patch`` / ``max_overhead``), with
TinyEngine's own :func:`hwaml_tinyengine.device.load_profile`. The backend
is never instantiated here: components meet only through hooks and ``ctx``,
and a config node is plain data. The run's ``peak_sram_kb`` / ``flash_kb``
constraints then tighten the numbers.

The SRAM a model's activation arena may use is the profile's SRAM minus the
stack the firmware reserves (:data:`hwaml_tinyengine.firmware.STACK_MIN_BYTES`,
1 KB): the backend's ``fits`` check is ``peak_sram_kb + stack <= SRAM``, so a
stage-1 sample that fills the whole SRAM would be infeasible in stage 3. A
``peak_sram_kb`` constraint bounds the arena itself (the metric), so it is not
reduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from hwaml.constraints import normalise_constraints

__all__ = ["MemoryBudget", "tinyengine_backend_nodes", "memory_budget"]


@dataclass(frozen=True)
class MemoryBudget:
    """What a sampled model must fit in stage 1, and how TinyEngine plans it."""

    device: str
    #: SRAM the activation arena may use (the device's SRAM minus the stack reserve, or a tighter constraint)
    sram_kb: float
    flash_kb: float
    patch: bool = True
    max_overhead: float = 0.3


def _get(node: Any, key: str) -> Any:
    return node.get(key) if hasattr(node, "get") else None


def tinyengine_backend_nodes(cfg: Any) -> List[Tuple[str, Any]]:
    """``(name, node)`` of the run's backends whose ``_target_`` is a TinyEngine
    backend class (imported to check its type, not instantiated)."""
    from hydra.utils import get_class

    from hwaml_tinyengine.backend import TinyEngineBackend

    backends = _get(cfg, "backend") if cfg is not None else None
    out = []
    for name, node in (backends or {}).items():
        target = _get(node, "_target_")
        if target and issubclass(get_class(str(target)), TinyEngineBackend):
            out.append((str(name), node))
    return out


def _profile_budget(name: str, node: Optional[Mapping[str, Any]], where: str) -> MemoryBudget:
    from hwaml_tinyengine.device import load_profile

    from omegaconf import DictConfig, OmegaConf

    node = node or {}
    overrides = _get(node, "overrides")
    if isinstance(overrides, DictConfig):
        overrides = OmegaConf.to_container(overrides, resolve=True)
    try:
        profile = load_profile(str(name), dict(overrides) if overrides else None)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    patch = _get(node, "patch")
    overhead = _get(node, "max_overhead")
    from hwaml_tinyengine.firmware import STACK_MIN_BYTES

    return MemoryBudget(str(profile.device), float(profile.sram_kb) - STACK_MIN_BYTES / 1024.0, float(profile.flash_kb), True if patch is None else bool(patch), 0.3 if overhead is None else float(overhead))


def memory_budget(device: Optional[str], cfg: Any, constraints: Optional[Mapping[str, Any]]) -> MemoryBudget:
    """The MCU's memory for stage 1 (see the module doc).

    :param device: a TinyEngine profile name (the evaluator's ``device``), or
        ``None`` for the run's single TinyEngine backend.
    :param cfg: the run config (``ctx.cfg``).
    :param constraints: the run's constraints (``ctx.constraints``).
    """
    if device:
        budget = _profile_budget(str(device), None, "evaluator.device")
    else:
        nodes = tinyengine_backend_nodes(cfg)
        if len(nodes) != 1:
            found = [n for n, _ in nodes]
            raise ValueError(
                f"evaluator tinynas_digits: stage 1 needs exactly one TinyEngine device, the run has {found or 'none'}; "
                f"add backend=[mcu64k] (or another TinyEngine profile) or set evaluator.device=<profile>"
            )
        name, node = nodes[0]
        profile = _get(node, "profile") or _get(node, "device")
        if not profile:
            raise ValueError(f"backend.{name}: stage 1 needs the TinyEngine profile name (a 'profile' or 'device' key) to know the MCU's memory")
        budget = _profile_budget(str(profile), node, f"backend.{name}")
    bounds = normalise_constraints(constraints or {})
    sram, flash = budget.sram_kb, budget.flash_kb
    if "max" in bounds.get("peak_sram_kb", {}):
        sram = min(sram, bounds["peak_sram_kb"]["max"])
    if "max" in bounds.get("flash_kb", {}):
        flash = min(flash, bounds["flash_kb"]["max"])
    return MemoryBudget(budget.device, sram, flash, budget.patch, budget.max_overhead)
