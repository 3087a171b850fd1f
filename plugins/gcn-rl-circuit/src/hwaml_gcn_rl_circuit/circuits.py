"""The four benchmark circuits of GCN-RL Circuit Designer.

Each :class:`Circuit` couples a netlist template (``netlists/<name>.cir``) with

* its sizing parameters and their bounds (transistor W and L scale with the
  node's minimum length, so the same normalised action means the same relative
  size on every node -- which is what makes node-to-node transfer meaningful);
* its test benches (one deck per excitation, e.g. the LDO's line, load and
  loop-gain benches), simulated with ngspice;
* the measurements taken from the simulated vectors;
* the figure of merit of the paper: a weighted sum of metrics normalised to
  [0, 1] between a worst and a best value (log scale for quantities spanning
  decades; better-than-best is capped, as the paper's ``min(m, m_bound)``),
  minus a penalty for each violated hard spec (graded by how far it is
  violated, at most 1 per spec). A simulation that fails gets ``failure_fom``,
  below anything a simulated design can score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .netlist import Template, parse_template
from .technology import Technology

# unit of each parameter kind in the search space -> SI factor
UNITS = {"w": ("um", 1e-6), "l": ("um", 1e-6), "r": ("kohm", 1e3), "c": ("pF", 1e-12), "i": ("uA", 1e-6)}


@dataclass(frozen=True)
class Param:
    """One sizing parameter. ``w``/``l`` bounds are multiples of the node's Lmin."""

    name: str
    kind: str  # w, l, r, c, i
    low: float
    high: float
    nominal: float
    log: bool = True

    def bounds(self, tech: Technology) -> Tuple[float, float, float]:
        """(low, high, nominal) in the space's units (um, kohm, pF, uA) on ``tech``."""
        if self.kind in ("w", "l"):
            lmin_um = tech.lmin * 1e6
            return self.low * lmin_um, self.high * lmin_um, self.nominal * lmin_um
        return self.low, self.high, self.nominal

    def to_si(self, value: float) -> float:
        return float(value) * UNITS[self.kind][1]


@dataclass(frozen=True)
class Metric:
    """A term of the figure of merit."""

    name: str
    direction: str  # "max" or "min"
    worst: float
    best: float
    weight: float = 1.0
    log: bool = True

    def normalised(self, value: float) -> float:
        lo, hi, v = self.worst, self.best, value
        if self.log:
            v = math.log10(max(v, 1e-30))
            lo, hi = math.log10(lo), math.log10(hi)
        return float(min(1.0, max(0.0, (v - lo) / (hi - lo))))


@dataclass(frozen=True)
class Spec:
    """A hard spec: ``metric >= bound`` or ``metric <= bound``; ``scale`` grades the penalty."""

    metric: str
    op: str  # ">=" or "<="
    bound: float
    scale: float

    def violation(self, value: float) -> float:
        gap = (self.bound - value) if self.op == ">=" else (value - self.bound)
        return float(min(1.0, max(0.0, gap / self.scale)))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


Measure = Callable[[Dict[str, Dict[str, Dict[str, np.ndarray]]], Technology, Mapping[str, float]], Dict[str, float]]


@dataclass
class Circuit:
    """A parameterised circuit: template, sizing, test benches, measurements, FoM."""

    name: str
    title: str
    template_file: str
    params: List[Param]
    metrics: List[Metric]
    specs: List[Spec]
    benches: Dict[str, Dict[str, float]]  # bench name -> extra placeholder values
    fixed: Callable[[Technology], Dict[str, float]]  # technology-derived placeholder values
    measure: Measure
    measurements: Tuple[str, ...]  # the names ``measure`` returns
    penalty: float = 1.0
    _template: Optional[Template] = field(default=None, repr=False)

    @property
    def param_names(self) -> List[str]:
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def variables(self) -> List[str]:
        names = {"models", "vdd"} | set(self.fixed(_ANY_TECH))
        for bench in self.benches.values():
            names |= set(bench)
        return sorted(names)

    def template(self) -> Template:
        """The parsed netlist template (read from the package on the first call, then kept)."""
        if self._template is None:
            text = resources.files("hwaml_gcn_rl_circuit.netlists").joinpath(self.template_file).read_text()
            self._template = parse_template(text, self.template_file, self.param_names, self.variables())
        return self._template

    def use_template_text(self, text: str, source: str) -> None:
        """Replace the shipped template (a user's variant); checked immediately."""
        self._template = parse_template(text, source, self.param_names, self.variables())

    def decks(self, sizes_si: Mapping[str, float], tech: Technology) -> Dict[str, str]:
        """One rendered deck per test bench."""
        base = {"models": tech.model_cards(), "vdd": tech.vdd, **self.fixed(tech), **sizes_si}
        return {bench: self.template().render({**base, **extra}) for bench, extra in self.benches.items()}

    @property
    def failure_fom(self) -> float:
        return -self.penalty * len(self.specs) - 1.0

    def metric_names(self) -> List[str]:
        """Every metric an evaluation of this circuit can report: the figure of merit and
        its bookkeeping (``fom``, ``specs_met``, ``sim_failed``, ``sim_ms``), the areas and
        every measurement (which include all FoM terms and spec metrics)."""
        names = ["fom", "specs_met", "sim_failed", "sim_ms", "area_um2", "area_scaled_um2", *self.measurements]
        return list(dict.fromkeys(names))

    def fom(self, values: Mapping[str, float]) -> Tuple[float, List[str]]:
        """Figure of merit and the list of violated specs."""
        score = sum(m.weight * m.normalised(values[m.name]) for m in self.metrics)
        violated = []
        for s in self.specs:
            v = s.violation(values[s.metric])
            if v > 0:
                violated.append(str(s))
            score -= self.penalty * v
        return float(score), violated

    def area_um2(self, sizes_si: Mapping[str, float]) -> float:
        """Active + passive area: sum of W*L, MIM caps at 2 fF/um^2, poly resistors at 1 kohm/sq, 0.5 um wide."""
        area = 0.0
        for e in self.template().sized_elements(self.param_names):
            vals = [sizes_si[p] for p in e.params]
            if e.kind in ("nmos", "pmos"):
                area += vals[0] * vals[1] * 1e12
            elif e.kind == "capacitor":
                area += vals[0] / 2e-15
            elif e.kind == "resistor":
                area += vals[0] / 1e3 * 0.25
        return float(area)


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------


def _plot(results: Mapping[str, Mapping[str, np.ndarray]], prefix: str, index: int = 1) -> Mapping[str, np.ndarray]:
    name = f"{prefix}{index}"
    if name not in results:
        from .simulator import SimulationError

        raise SimulationError(f"analysis {name} missing from ngspice output (plots: {sorted(results)})")
    return results[name]


def _vec(plot: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in plot:
        from .simulator import SimulationError

        raise SimulationError(f"vector {name!r} missing (have {sorted(plot)})")
    return plot[name]


def _crossing(f: np.ndarray, mag: np.ndarray, level: float) -> Optional[float]:
    """First frequency where ``mag`` falls below ``level`` (log-log interpolation)."""
    below = np.flatnonzero(mag < level)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(f[0])
    x0, x1 = math.log10(f[i - 1]), math.log10(f[i])
    y0, y1 = math.log10(mag[i - 1]), math.log10(mag[i])
    t = (math.log10(level) - y0) / (y1 - y0) if y1 != y0 else 0.0
    return float(10 ** (x0 + t * (x1 - x0)))


def _supply_power(op: Mapping[str, np.ndarray], source: str, vdd: float) -> float:
    return float(abs(_vec(op, f"{source}#branch")[0]) * vdd)


_TIA_MEASUREMENTS = ("zt_ohm", "bandwidth_hz", "peaking_db", "power_mw", "noise_na", "vout_dc")


def _tia_measure(results, tech, sizes_si):
    r = results["main"]
    ac = _plot(r, "ac")
    f = np.real(_vec(ac, "frequency"))
    z = np.abs(_vec(ac, "out"))
    zt = float(z[0])
    bw = _crossing(f, z, zt / math.sqrt(2.0)) or float(f[-1])
    peaking = float(20 * math.log10(max(float(z.max()), zt) / zt))
    noise_tot = _plot(r, "noise", 2)
    onoise = float(_vec(noise_tot, "onoise_total")[0])
    op = _plot(r, "op")
    return {
        "zt_ohm": zt,
        "bandwidth_hz": bw,
        "peaking_db": peaking,
        "power_mw": _supply_power(op, "vdd", tech.vdd) * 1e3,
        "noise_na": onoise / zt * 1e9,  # integrated output noise referred to the input by the DC transimpedance, nA rms
        "vout_dc": float(_vec(op, "out")[0]),
    }


_AMP_MEASUREMENTS = ("gain_db", "ugbw_hz", "phase_margin_deg", "power_mw", "vout_dc")


def _amp_measure(results, tech, sizes_si):
    r = results["main"]
    ac = _plot(r, "ac")
    f = np.real(_vec(ac, "frequency"))
    a = _vec(ac, "out")
    mag = np.abs(a)
    gain = float(mag[0])
    phase = np.degrees(np.unwrap(np.angle(a)))
    phase = phase - 360.0 * round(phase[0] / 360.0)
    ugbw = _crossing(f, mag, 1.0) if gain > 1.0 else None
    if ugbw is None:
        ugbw, pm = float(f[0]), 0.0
    else:
        ph = float(np.interp(math.log10(ugbw), np.log10(f), phase))
        pm = float(180.0 + ph)
    op = _plot(r, "op")
    return {
        "gain_db": float(20 * math.log10(max(gain, 1e-12))),
        "ugbw_hz": float(ugbw),
        "phase_margin_deg": float(max(-180.0, min(180.0, pm))),
        "power_mw": _supply_power(op, "vdd", tech.vdd) * 1e3,
        "vout_dc": float(_vec(op, "out")[0]),
    }


_LDO_MEASUREMENTS = (
    "vout_dc", "vout_error_pct", "quiescent_ua", "line_reg", "load_reg_ohm", "loop_gain_db", "phase_margin_deg", "ugf_hz", "power_mw",
)


def _ldo_measure(results, tech, sizes_si):
    fixed = _ldo_fixed(tech)
    line = results["line"]
    op = _plot(line, "op")
    vout = float(_vec(op, "vout")[0])
    target = 2.0 * fixed["vref"]
    i_in = abs(float(_vec(op, "vsup#branch")[0]))
    ac_line = _plot(line, "ac")
    line_reg = float(np.abs(_vec(ac_line, "vout"))[0])  # |dVout/dVin| at 1 Hz
    ac_load = _plot(results["load"], "ac")
    load_reg = float(np.abs(_vec(ac_load, "vout"))[0])  # |dVout/dIload| at 1 Hz, ohm
    loop = _plot(results["loop"], "ac")
    f = np.real(_vec(loop, "frequency"))
    t = -_vec(loop, "fb") / _vec(loop, "fba")
    mag = np.abs(t)
    phase = np.degrees(np.unwrap(np.angle(t)))
    phase = phase - 360.0 * round(phase[0] / 360.0)
    fu = _crossing(f, mag, 1.0) if mag[0] > 1.0 else None
    if fu is None:
        fu, pm = float(f[0]), 0.0  # loop gain below one: no regulation to speak of
    else:
        pm = float(180.0 + np.interp(math.log10(fu), np.log10(f), phase))
    return {
        "vout_dc": vout,
        "vout_error_pct": abs(vout - target) / target * 100.0,
        "quiescent_ua": max(1e-6, (i_in - fixed["iload"]) * 1e6),
        "line_reg": max(line_reg, 1e-9),
        "load_reg_ohm": max(load_reg, 1e-6),
        "loop_gain_db": float(20 * math.log10(max(float(mag[0]), 1e-12))),
        "phase_margin_deg": float(max(-180.0, min(180.0, pm))),
        "ugf_hz": float(fu),
        "power_mw": i_in * tech.vdd * 1e3,
    }


# ---------------------------------------------------------------------------
# the circuits
# ---------------------------------------------------------------------------

_ANY_TECH = Technology("any", 180e-9, 1.8, 4e-9, 0.4, -0.4, 400, 120, 2e17, 1e-7, 8e4, 3e-10, 1e-3)

_W = dict(kind="w", low=2.0, high=400.0)
_L = dict(kind="l", low=1.0, high=8.0)


def _wl(prefix: str, w_nom: float, l_nom: float, w_high: float = 400.0) -> List[Param]:
    return [Param(f"w{prefix}", "w", 2.0, w_high, w_nom), Param(f"l{prefix}", "l", 1.0, 8.0, l_nom)]


def _tia_fixed(tech: Technology) -> Dict[str, float]:
    return {"cpd": 100e-15, "cl": 50e-15, "vbn": tech.vth_n + 0.15}


def _amp_fixed(tech: Technology) -> Dict[str, float]:
    return {"vcm": 0.5 * tech.vdd, "cl": 1e-12}


def _ldo_fixed(tech: Technology) -> Dict[str, float]:
    return {"vref": 0.4 * tech.vdd, "iload": 1e-3, "cl": 1e-9}


_LDO_CLOSED = {"ac_loop": 0.0, "lbreak": 1e-12, "cinj": 1e-21}


# Both TIAs are scored alike, so a transferred agent optimises the same FoM.
_TIA_METRICS = (
    Metric("zt_ohm", "max", 300.0, 3e4, 1.0),
    Metric("bandwidth_hz", "max", 1e7, 1e10, 1.0),
    Metric("power_mw", "min", 10.0, 1e-2, 1.0),
    Metric("noise_na", "min", 1e4, 100.0, 1.0),
    Metric("area_scaled_um2", "min", 1e3, 1.0, 0.5),
)
_TIA_SPECS = (Spec("peaking_db", "<=", 1.0, 3.0), Spec("zt_ohm", ">=", 1e3, 1e3), Spec("bandwidth_hz", ">=", 1e8, 1e8))


def _two_stage_tia() -> Circuit:
    return Circuit(
        name="two_stage_tia",
        title="Two-stage transimpedance amplifier",
        template_file="two_stage_tia.cir",
        params=_wl("1", 20, 2) + _wl("2", 40, 2) + _wl("3", 40, 2) + _wl("4", 20, 4) + [Param("rf", "r", 0.5, 50.0, 5.0)],
        metrics=list(_TIA_METRICS),
        specs=list(_TIA_SPECS),
        benches={"main": {}},
        fixed=_tia_fixed,
        measure=_tia_measure,
        measurements=_TIA_MEASUREMENTS,
    )


def _three_stage_tia() -> Circuit:
    return Circuit(
        name="three_stage_tia",
        title="Three-stage transimpedance amplifier",
        template_file="three_stage_tia.cir",
        params=_wl("1", 20, 2) + _wl("2", 40, 2) + _wl("3", 10, 1) + _wl("4", 20, 1) + _wl("5", 10, 1) + _wl("6", 20, 1)
        + [Param("rf", "r", 0.5, 50.0, 5.0), Param("cc", "c", 1e-3, 1.0, 0.02)],
        metrics=list(_TIA_METRICS),
        specs=list(_TIA_SPECS),
        benches={"main": {}},
        fixed=_tia_fixed,
        measure=_tia_measure,
        measurements=_TIA_MEASUREMENTS,
    )


def _two_stage_amp() -> Circuit:
    return Circuit(
        name="two_stage_amp",
        title="Two-stage Miller-compensated voltage amplifier",
        template_file="two_stage_amp.cir",
        params=_wl("1", 20, 4) + _wl("3", 20, 4) + _wl("5", 20, 4) + _wl("6", 80, 2) + _wl("7", 40, 4)
        + [Param("cc", "c", 0.05, 10.0, 0.5), Param("ibias", "i", 1.0, 200.0, 20.0)],
        metrics=[
            Metric("gain_db", "max", 20.0, 80.0, 1.0, log=False),
            Metric("ugbw_hz", "max", 1e6, 1e9, 1.0),
            Metric("phase_margin_deg", "max", 45.0, 90.0, 0.5, log=False),
            Metric("power_mw", "min", 10.0, 1e-2, 1.0),
            Metric("area_scaled_um2", "min", 1e4, 10.0, 0.5),
        ],
        specs=[Spec("phase_margin_deg", ">=", 60.0, 30.0), Spec("gain_db", ">=", 40.0, 20.0)],
        benches={"main": {}},
        fixed=_amp_fixed,
        measure=_amp_measure,
        measurements=_AMP_MEASUREMENTS,
    )


def _ldo() -> Circuit:
    return Circuit(
        name="ldo",
        title="Low-dropout regulator",
        template_file="ldo.cir",
        params=_wl("1", 20, 4) + _wl("3", 20, 4) + _wl("5", 20, 4)
        + [Param("wp", "w", 100.0, 2e5, 1e4), Param("lp", "l", 1.0, 4.0, 1.0)]
        + [Param("rfb", "r", 1.0, 1000.0, 50.0), Param("cc", "c", 0.01, 10.0, 0.5), Param("ibias", "i", 1.0, 200.0, 20.0)],
        metrics=[
            Metric("line_reg", "min", 1.0, 1e-3, 1.0),
            Metric("load_reg_ohm", "min", 10.0, 1e-2, 1.0),
            Metric("quiescent_ua", "min", 1e3, 1.0, 1.0),
            Metric("phase_margin_deg", "max", 45.0, 90.0, 0.5, log=False),
            Metric("area_scaled_um2", "min", 1e5, 1e2, 0.5),
        ],
        specs=[Spec("vout_error_pct", "<=", 2.0, 10.0), Spec("phase_margin_deg", ">=", 45.0, 30.0)],
        benches={
            "line": {"ac_line": 1.0, "ac_load": 0.0, **_LDO_CLOSED},
            "load": {"ac_line": 0.0, "ac_load": 1.0, **_LDO_CLOSED},
            "loop": {"ac_line": 0.0, "ac_load": 0.0, "ac_loop": 1.0, "lbreak": 1e9, "cinj": 1.0},
        },
        fixed=_ldo_fixed,
        measure=_ldo_measure,
        measurements=_LDO_MEASUREMENTS,
    )


CIRCUITS: Dict[str, Callable[[], Circuit]] = {
    "two_stage_tia": _two_stage_tia,
    "two_stage_amp": _two_stage_amp,
    "three_stage_tia": _three_stage_tia,
    "ldo": _ldo,
}


def get_circuit(name: str) -> Circuit:
    """A fresh :class:`Circuit` by name; unknown names list the choices."""
    try:
        return CIRCUITS[name]()
    except KeyError:
        raise ValueError(f"unknown circuit {name!r}; choose one of {sorted(CIRCUITS)}") from None
