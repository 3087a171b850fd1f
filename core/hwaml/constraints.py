"""Objectives and constraints: parsing, feasibility and violations.

One module that the loop, the built-in searchers and plugin searchers share, so
that "feasible" means the same thing everywhere::

    from hwaml.constraints import is_feasible, normalise_constraints, violations

    bounds = normalise_constraints(ctx.constraints)     # {"peak_sram_kb": {"max": 256.0}}
    report = ctx.cost_fn(candidate)                     # merged CostReport of every backend
    if is_feasible(report, bounds):
        ...

A constraint is an upper bound (``peak_sram_kb: 256``) or a mapping with ``min``
and/or ``max`` (``fits: {min: 1}``). A candidate is feasible when every bound on a
reported metric holds and no backend reported ``feasible=False``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

__all__ = ["normalise_constraints", "violations", "is_feasible", "check_directions"]


def normalise_constraints(constraints: Optional[Mapping[str, Any]]) -> Dict[str, Dict[str, float]]:
    """``{m: 5}`` -> ``{m: {"max": 5.0}}``; ``{m: {min: 1}}`` passes through as floats."""
    out: Dict[str, Dict[str, float]] = {}
    for name, bound in (constraints or {}).items():
        if isinstance(bound, Mapping):
            out[str(name)] = {str(k): float(v) for k, v in bound.items()}
        else:
            out[str(name)] = {"max": float(bound)}
    return out


def violations(values: Mapping[str, float], constraints: Mapping[str, Any], only_present: bool = True) -> List[str]:
    """Human-readable violated constraints (``"peak_sram_kb=300 > 256"``).

    ``constraints`` may be raw (``{m: 5}``) or normalised. With ``only_present``
    (the default) a bound on a metric missing from ``values`` is not a
    violation (another component may report it later); otherwise it is.
    """
    out = []
    for name, bound in normalise_constraints(constraints).items():
        if name not in values:
            if not only_present:
                out.append(f"{name} is not reported")
            continue
        v = float(values[name])
        if "max" in bound and not v <= bound["max"]:
            out.append(f"{name}={v:g} > {bound['max']:g}")
        if "min" in bound and not v >= bound["min"]:
            out.append(f"{name}={v:g} < {bound['min']:g}")
    return out


def is_feasible(report: Any, constraints: Mapping[str, Any], only_present: bool = True) -> bool:
    """Whether a cost (a merged :class:`hwaml.CostReport` or a plain metric mapping)
    meets ``constraints``; a report whose backends said ``feasible=False`` is not."""
    metrics = getattr(report, "metrics", report)
    if getattr(report, "feasible", None) is False:
        return False
    return not violations(metrics, constraints, only_present=only_present)


def check_directions(objectives: Mapping[str, Any]) -> Dict[str, str]:
    """``{name: "max"|"min"}`` or ``ValueError`` naming the bad entry."""
    out = {}
    for name, direction in objectives.items():
        if str(direction) not in ("max", "min"):
            raise ValueError(f"objectives.{name} must be 'max' or 'min', got {direction!r}")
        out[str(name)] = str(direction)
    return out
