"""The four benchmark circuits of GCN-RL Circuit Designer, on real PDKs.

Each :class:`Circuit` couples a netlist template (``netlists/<name>.cir``, the circuit and the
test-bench elements, no analyses) with

* its sizing parameters and their bounds (transistor W and L are multiples of the
  technology's minimum length, clipped to its minimum width, so one normalised action means
  the same relative size on both PDKs -- what makes transfer between them meaningful);
* per-PDK operating conditions (supply, load, photodiode capacitance, references; see
  :data:`CONDITIONS`) and per-PDK hard specs (:data:`SPECS`), both overridable from config;
* a measurement procedure run on the *loaded* circuit (:class:`~.bench.CircuitBench`): it alters
  the bench elements and runs the analyses a designer signs off with -- the operating point
  with every transistor's saturation margin and the output DC level, the AC response at 50
  points per decade, noise, and for the LDO three loads, dropout and a load-step transient;
* the figure of merit of the paper: a weighted sum of metrics normalised to [0, 1] between a
  worst and a best value (log scale for quantities spanning decades; better-than-best is
  capped, as the paper's ``min(m, m_bound)``), minus a penalty for each violated hard spec
  (graded by how far it is violated, at most 1 per spec). A simulation that fails gets
  ``failure_fom``, below anything a simulated design can score.
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
    """One sizing parameter. ``w``/``l`` bounds are multiples of the technology's Lmin."""

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
            floor = (tech.wmin if self.kind == "w" else tech.lmin) * 1e6
            lo = max(floor, self.low * lmin_um)
            return lo, max(lo * 1.01, self.high * lmin_um), max(lo, self.nominal * lmin_um)
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


#: measure(bench, tech, conditions) -> measurements
Measure = Callable[["object", Technology, Mapping[str, float]], Dict[str, float]]


@dataclass
class Circuit:
    """A parameterised circuit: template, sizing, conditions, procedure, specs, FoM."""

    name: str
    title: str
    template_file: str
    params: List[Param]
    metrics: List[Metric]
    measure: Measure
    measurements: Tuple[str, ...]  # the names ``measure`` returns
    #: elements that are test bench only: not vertices of the graph (their nets are joined
    #: when ``wire`` is true: a loop-break inductor is a wire in the closed loop)
    bench_elements: Dict[str, bool] = field(default_factory=dict)
    penalty: float = 1.0
    technology: Optional[str] = None  # set by :meth:`configure`
    conditions: Dict[str, float] = field(default_factory=dict)
    specs: List[Spec] = field(default_factory=list)
    _template: Optional[Template] = field(default=None, repr=False)

    @property
    def param_names(self) -> List[str]:
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def configure(self, tech: Technology, conditions: Optional[Mapping[str, float]] = None, specs: Optional[Mapping[str, Sequence]] = None) -> "Circuit":
        """Set the per-PDK conditions and specs (defaults from :data:`CONDITIONS` / :data:`SPECS`),
        with overrides; an unknown key is an error naming the known ones."""
        base = dict(CONDITIONS[self.name][tech.name])
        for k, v in dict(conditions or {}).items():
            if k not in base:
                raise ValueError(f"{self.name} on {tech.name}: unknown condition {k!r}; known: {sorted(base)}")
            base[k] = float(v)
        self.technology, self.conditions = tech.name, base
        table = {m: list(v) for m, v in SPECS[self.name][tech.name].items()}
        names = set(self.measurements) | {"area_um2"}
        for metric, v in dict(specs or {}).items():
            if metric not in names:
                raise ValueError(f"{self.name}: spec on unknown metric {metric!r}; known: {sorted(names)}")
            if v is None:
                table.pop(metric, None)
                continue
            v = list(v)
            if len(v) == 2 and isinstance(v[0], str):  # [op, bound]: keep the default scale
                v = [v[0], v[1], table.get(metric, [None, None, abs(float(v[1])) or 1.0])[2]]
            if len(v) != 3 or v[0] not in (">=", "<=", "range"):
                raise ValueError(f"{self.name}: spec {metric} must be [op, bound] or [op, bound, scale] with op '>=' or '<=', got {v}")
            table[metric] = v
        out: List[Spec] = []
        for metric, (op, bound, scale) in table.items():
            if op == "range":  # [lo, hi] window, e.g. an output DC level
                lo, hi = bound
                out += [Spec(metric, ">=", float(lo), float(scale)), Spec(metric, "<=", float(hi), float(scale))]
            else:
                out.append(Spec(metric, op, float(bound), float(scale)))
        self.specs = out
        return self

    def variables(self) -> List[str]:
        names = {"models", "vdd"} | set(CONDITIONS[self.name]["sky130"])
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

    @property
    def failure_fom(self) -> float:
        return -self.penalty * max(1, len(self.specs)) - 1.0

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


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------


def _vec(plot: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in plot:
        from .simulator import SimulationError

        raise SimulationError(f"vector {name!r} missing (have {sorted(plot)[:20]})")
    return plot[name]


def crossing(f: np.ndarray, mag: np.ndarray, level: float) -> Optional[float]:
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


def phase_margin(f: np.ndarray, t: np.ndarray) -> Tuple[float, float, float]:
    """(unity-gain frequency, phase margin in degrees, DC gain in dB) of a loop/open-loop gain
    ``t`` whose DC phase is 0 (the inversion already taken out); PM 0 when |t| never exceeds 1."""
    mag = np.abs(t)
    phase = np.degrees(np.unwrap(np.angle(t)))
    phase = phase - 360.0 * round(phase[0] / 360.0)
    dc = float(20 * math.log10(max(float(mag[0]), 1e-12)))
    fu = crossing(f, mag, 1.0) if mag[0] > 1.0 else None
    if fu is None:
        return float(f[0]), 0.0, dc
    pm = float(180.0 + np.interp(math.log10(fu), np.log10(f), phase))
    return float(fu), float(max(-180.0, min(180.0, pm))), dc


def saturation(op: Mapping[str, np.ndarray], devices: Sequence[str]) -> Dict[str, float]:
    """Per transistor ``|Vds| - |Vdsat|`` (V) from an operating point (BSIM4's own Vdsat)."""
    out = {}
    for d in devices:
        d = d.lower()
        vds = abs(float(_vec(op, f"@{d}[vds]")[0]))
        vdsat = abs(float(_vec(op, f"@{d}[vdsat]")[0]))
        out[d] = vds - vdsat
    return out


def op_value(op: Mapping[str, np.ndarray], name: str) -> float:
    return float(np.real(_vec(op, name))[0])


_SAT = ("sat_margin_mv", "triode_devices")


def _sat_metrics(margins: Mapping[str, float], bench) -> Dict[str, float]:
    worst = min(margins, key=margins.get)
    bench.info["saturation_margin_mv"] = {k: round(v * 1e3, 1) for k, v in margins.items()}
    bench.info["worst_device"] = worst
    return {"sat_margin_mv": margins[worst] * 1e3, "triode_devices": float(sum(1 for v in margins.values() if v < 0))}


_TIA_MEASUREMENTS = ("zt_ohm", "bandwidth_hz", "peaking_db", "power_mw", "noise_na", "vout_dc", "swing_v", *_SAT)


def _tia_measure(bench, tech, cond, three_stage: bool):
    op = bench.op()
    devices = bench.mos_devices
    margins = saturation(op, devices)
    vdd = cond["vdd"]
    if three_stage:
        hi = vdd - abs(op_value(op, "@m6[vdsat]"))
        lo = abs(op_value(op, "@m5[vdsat]"))
    else:  # source follower: out <= x1_max - Vgs3, x1_max = vdd - |Vdsat2|
        hi = vdd - abs(op_value(op, "@m2[vdsat]")) - abs(op_value(op, "@m3[vgs]"))
        lo = abs(op_value(op, "@m4[vdsat]"))
    ac = bench.analysis(f"ac dec {bench.points_per_decade} 1e3 1e11")
    f = np.real(_vec(ac, "frequency"))
    z = np.abs(_vec(ac, "out"))
    zt = float(z[0])
    bw = crossing(f, z, zt / math.sqrt(2.0)) or float(f[-1])
    peaking = float(20 * math.log10(max(float(z.max()), zt) / zt))
    noise = bench.analysis("noise v(out) iin dec 20 1e3 1e11")
    onoise = float(np.real(_vec(noise, "onoise_total"))[0])
    return {
        "zt_ohm": zt,
        "bandwidth_hz": bw,
        "peaking_db": peaking,
        "power_mw": abs(op_value(op, "vdd#branch")) * vdd * 1e3,
        "noise_na": onoise / zt * 1e9,  # integrated output noise referred to the input by the DC transimpedance, nA rms
        "vout_dc": op_value(op, "out"),
        "swing_v": hi - lo,
        **_sat_metrics(margins, bench),
    }


_AMP_MEASUREMENTS = ("gain_db", "ugbw_hz", "phase_margin_deg", "power_mw", "vout_dc", "offset_mv", "swing_v", *_SAT)


def _amp_measure(bench, tech, cond):
    op = bench.op()
    margins = saturation(op, bench.mos_devices)
    vdd = cond["vdd"]
    ac = bench.analysis(f"ac dec {bench.points_per_decade} 1 1e11")
    f = np.real(_vec(ac, "frequency"))
    ugbw, pm, gain = phase_margin(f, _vec(ac, "out"))
    vout = op_value(op, "out")
    return {
        "gain_db": gain,
        "ugbw_hz": ugbw,
        "phase_margin_deg": pm,
        "power_mw": abs(op_value(op, "vdd#branch")) * vdd * 1e3,
        "vout_dc": vout,
        "offset_mv": abs(vout - cond["vcm"]) * 1e3,  # systematic offset under unity DC feedback
        "swing_v": vdd - abs(op_value(op, "@m6[vdsat]")) - abs(op_value(op, "@m7[vdsat]")),
        **_sat_metrics(margins, bench),
    }


_LDO_MEASUREMENTS = (
    "vout_dc", "vout_error_pct", "quiescent_ua", "line_reg", "load_reg_ohm", "loop_gain_db", "phase_margin_deg", "pm_light_deg",
    "pm_mid_deg", "pm_full_deg", "ugf_hz", "dropout_mv", "undershoot_mv", "overshoot_mv", "power_mw", *_SAT,
)


def _ldo_measure(bench, tech, cond):
    vdd = cond["vdd"]
    target = 2.0 * cond["vref"]
    loads = {"light": cond["iload_light"], "mid": cond["iload_mid"], "full": cond["iload_full"]}
    bench.alter("vsup", "dc", vdd)
    # DC load sweep light -> full in 10 steps (the second point is the mid load): Vout, supply
    # current and every transistor's saturation margin at each load, from one continuation sweep
    step = (loads["full"] - loads["light"]) / 10.0
    sweep = bench.analysis(f"dc iload {loads['light']:.6g} {loads['full'] + step / 2:.6g} {step:.6g}")
    il = np.real(_vec(sweep, "i-sweep"))
    at = {tag: int(np.argmin(np.abs(il - i))) for tag, i in loads.items()}
    if abs(il[at["mid"]] - loads["mid"]) > 0.02 * loads["mid"]:
        raise ValueError(f"ldo: the load sweep misses the mid load ({il[at['mid']]:.4g} A for {loads['mid']:.4g} A): choose iload_mid = iload_light + (iload_full - iload_light) / 10")
    vo = np.real(_vec(sweep, "vout"))
    margins: Dict[str, float] = {}
    for d in bench.mos_devices:
        vds = np.abs(np.real(_vec(sweep, f"@{d}[vds]")))
        vdsat = np.abs(np.real(_vec(sweep, f"@{d}[vdsat]")))
        margins[d] = float(min(vds[at[t]] - vdsat[at[t]] for t in loads))
    vout = {tag: float(vo[k]) for tag, k in at.items()}
    i_in = abs(float(np.real(_vec(sweep, "vsup#branch"))[at["mid"]]))
    # loop gain at each load, the loop broken at the OTA input (Lbrk open and Cinj a short in AC)
    pm: Dict[str, float] = {}
    mid: Dict[str, float] = {}
    for tag, iload in loads.items():
        bench.alter("iload", "dc", iload)
        ac = bench.analysis("ac dec 20 1 1e9")
        f = np.real(_vec(ac, "frequency"))
        fu, pm[tag], dc = phase_margin(f, -_vec(ac, "fb") / _vec(ac, "fba"))
        if tag == "mid":
            mid = {"fu": fu, "dc": dc}
    # supply sweep at full load from Vdd + 10 % down: line regulation (the first 10 %) and dropout
    # (the supply at which Vout has fallen 1 % below its value at Vdd)
    bench.alter("iload", "dc", loads["full"])
    ds = 0.02
    hi = 1.1 * vdd
    dc = bench.analysis(f"dc vsup {hi:.6g} {max(ds, target - 0.1):.6g} {-ds:.6g}")
    vs = np.real(_vec(dc, "v-sweep"))
    vo = np.real(_vec(dc, "vout"))
    v_nom = float(np.interp(vdd, vs[::-1], vo[::-1]))
    line_reg = abs(float(vo[0]) - v_nom) / (hi - vdd)
    below = np.flatnonzero((vs < vdd) & (vo < 0.99 * v_nom))
    if below.size == 0:
        dropout = float(vs[-1] - vo[-1])
    else:
        i = int(below[0])
        vsup_at = float(np.interp(0.99 * v_nom, [vo[i], vo[i - 1]], [vs[i], vs[i - 1]]))
        dropout = vsup_at - 0.99 * v_nom
    bench.alter("vsup", "dc", vdd)
    # load step light -> full -> light (Istep adds full - light for 2 us); loop closed
    bench.alter("iload", "dc", loads["light"])
    bench.alter("lbrk", "inductance", 1e-9)
    bench.alter("cinj", "capacitance", 1e-18)
    tr = bench.analysis("tran 50n 6u")
    bench.alter("lbrk", "inductance", 1e9)
    bench.alter("cinj", "capacitance", 1.0)
    t = np.real(_vec(tr, "time"))
    v = np.real(_vec(tr, "vout"))
    v0 = float(np.interp(0.9e-6, t, v))
    during = (t > 1e-6) & (t < 3.1e-6)
    after = t > 3.1e-6
    undershoot = max(0.0, v0 - float(v[during].min())) if during.any() else 0.0
    overshoot = max(0.0, float(v[after].max()) - v0) if after.any() else 0.0
    bench.alter("iload", "dc", loads["mid"])
    return {
        "vout_dc": vout["mid"],
        "vout_error_pct": abs(vout["mid"] - target) / target * 100.0,
        "quiescent_ua": max(1e-3, (i_in - loads["mid"]) * 1e6),
        "line_reg": max(line_reg, 1e-9),
        "load_reg_ohm": max(abs(vout["light"] - vout["full"]) / (loads["full"] - loads["light"]), 1e-6),
        "loop_gain_db": mid["dc"],
        "phase_margin_deg": min(pm.values()),
        "pm_light_deg": pm["light"],
        "pm_mid_deg": pm["mid"],
        "pm_full_deg": pm["full"],
        "ugf_hz": mid["fu"],
        "dropout_mv": dropout * 1e3,
        "undershoot_mv": undershoot * 1e3,
        "overshoot_mv": overshoot * 1e3,
        "power_mw": i_in * vdd * 1e3,
        **_sat_metrics(margins, bench),
    }


# ---------------------------------------------------------------------------
# per-PDK conditions and specs (restated in conf/evaluator/circuit_*.yaml)
# ---------------------------------------------------------------------------

#: operating conditions per circuit and technology (SI units)
CONDITIONS: Dict[str, Dict[str, Dict[str, float]]] = {
    "two_stage_tia": {
        "sky130": {"vdd": 1.8, "cpd": 100e-15, "cl": 50e-15, "vbn": 0.7},
        "gf180mcu": {"vdd": 3.3, "cpd": 100e-15, "cl": 50e-15, "vbn": 0.95},
    },
    "three_stage_tia": {
        "sky130": {"vdd": 1.8, "cpd": 100e-15, "cl": 50e-15},
        "gf180mcu": {"vdd": 3.3, "cpd": 100e-15, "cl": 50e-15},
    },
    "two_stage_amp": {
        "sky130": {"vdd": 1.8, "vcm": 0.9, "cl": 1e-12},
        "gf180mcu": {"vdd": 3.3, "vcm": 1.65, "cl": 1e-12},
    },
    "ldo": {
        "sky130": {"vdd": 1.8, "vref": 0.75, "cl": 1e-9, "iload_light": 10e-6, "iload_mid": 1.009e-3, "iload_full": 10e-3, "istep": 10e-3 - 10e-6},
        "gf180mcu": {"vdd": 3.3, "vref": 1.25, "cl": 1e-9, "iload_light": 10e-6, "iload_mid": 1.009e-3, "iload_full": 10e-3, "istep": 10e-3 - 10e-6},
    },
}

#: hard specs per circuit and technology: metric -> [op, bound, penalty scale]; op "range" takes [lo, hi]
SPECS: Dict[str, Dict[str, Dict[str, list]]] = {
    "two_stage_tia": {
        "sky130": {"peaking_db": ["<=", 1.0, 3.0], "zt_ohm": [">=", 1e3, 1e3], "bandwidth_hz": [">=", 1e8, 1e8],
                   "sat_margin_mv": [">=", 50.0, 200.0], "vout_dc": ["range", [0.2, 1.6], 0.5], "swing_v": [">=", 0.2, 0.5]},
        "gf180mcu": {"peaking_db": ["<=", 1.0, 3.0], "zt_ohm": [">=", 1e3, 1e3], "bandwidth_hz": [">=", 5e7, 5e7],
                     "sat_margin_mv": [">=", 50.0, 200.0], "vout_dc": ["range", [0.3, 3.0], 0.5], "swing_v": [">=", 0.4, 0.5]},
    },
    "three_stage_tia": {
        "sky130": {"peaking_db": ["<=", 1.0, 3.0], "zt_ohm": [">=", 1e3, 1e3], "bandwidth_hz": [">=", 1e8, 1e8],
                   "sat_margin_mv": [">=", 50.0, 200.0], "vout_dc": ["range", [0.3, 1.5], 0.5], "swing_v": [">=", 0.4, 0.5]},
        "gf180mcu": {"peaking_db": ["<=", 1.0, 3.0], "zt_ohm": [">=", 1e3, 1e3], "bandwidth_hz": [">=", 5e7, 5e7],
                     "sat_margin_mv": [">=", 50.0, 200.0], "vout_dc": ["range", [0.5, 2.8], 0.5], "swing_v": [">=", 0.8, 0.5]},
    },
    "two_stage_amp": {
        "sky130": {"phase_margin_deg": [">=", 60.0, 30.0], "gain_db": [">=", 40.0, 20.0], "sat_margin_mv": [">=", 50.0, 200.0],
                   "offset_mv": ["<=", 20.0, 100.0], "swing_v": [">=", 0.8, 0.5]},
        "gf180mcu": {"phase_margin_deg": [">=", 60.0, 30.0], "gain_db": [">=", 50.0, 20.0], "sat_margin_mv": [">=", 50.0, 200.0],
                     "offset_mv": ["<=", 20.0, 100.0], "swing_v": [">=", 1.5, 0.5]},
    },
    "ldo": {
        "sky130": {"vout_error_pct": ["<=", 2.0, 10.0], "phase_margin_deg": [">=", 45.0, 30.0], "sat_margin_mv": [">=", 0.0, 200.0],
                   "dropout_mv": ["<=", 250.0, 400.0]},
        "gf180mcu": {"vout_error_pct": ["<=", 2.0, 10.0], "phase_margin_deg": [">=", 45.0, 30.0], "sat_margin_mv": [">=", 0.0, 200.0],
                     "dropout_mv": ["<=", 600.0, 400.0]},
    },
}


# ---------------------------------------------------------------------------
# the circuits
# ---------------------------------------------------------------------------


def _wl(prefix: str, w_nom: float, l_nom: float, w_high: float = 400.0) -> List[Param]:
    return [Param(f"w{prefix}", "w", 2.0, w_high, w_nom), Param(f"l{prefix}", "l", 1.0, 8.0, l_nom)]


# Both TIAs are scored alike, so a transferred agent optimises the same FoM.
def _tia_metrics() -> List[Metric]:
    return [
        Metric("zt_ohm", "max", 1e3, 3e4, 1.0),
        Metric("bandwidth_hz", "max", 5e7, 2e9, 1.0),
        Metric("power_mw", "min", 3.0, 0.003, 1.0),
        Metric("noise_na", "min", 3e3, 10.0, 1.0),
        Metric("area_scaled_um2", "min", 300.0, 3.0, 0.5),
    ]


def _two_stage_tia() -> Circuit:
    return Circuit(
        name="two_stage_tia",
        title="Two-stage transimpedance amplifier",
        template_file="two_stage_tia.cir",
        params=_wl("1", 20, 2) + _wl("2", 40, 2) + _wl("3", 40, 2) + _wl("4", 20, 4) + [Param("rf", "r", 0.5, 50.0, 5.0)],
        metrics=_tia_metrics(),
        measure=lambda b, t, c: _tia_measure(b, t, c, three_stage=False),
        measurements=_TIA_MEASUREMENTS,
    )


def _three_stage_tia() -> Circuit:
    return Circuit(
        name="three_stage_tia",
        title="Three-stage transimpedance amplifier",
        template_file="three_stage_tia.cir",
        params=_wl("1", 20, 2) + _wl("2", 40, 2) + _wl("3", 10, 1) + _wl("4", 20, 1) + _wl("5", 10, 1) + _wl("6", 20, 1)
        + [Param("rf", "r", 0.5, 50.0, 5.0), Param("cc", "c", 1e-3, 1.0, 0.02)],
        metrics=_tia_metrics(),
        measure=lambda b, t, c: _tia_measure(b, t, c, three_stage=True),
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
            Metric("gain_db", "max", 30.0, 110.0, 1.0, log=False),
            Metric("ugbw_hz", "max", 1e6, 3e8, 1.0),
            Metric("phase_margin_deg", "max", 45.0, 90.0, 0.5, log=False),
            Metric("power_mw", "min", 3.0, 0.003, 1.0),
            Metric("area_scaled_um2", "min", 1e4, 30.0, 0.5),
        ],
        measure=_amp_measure,
        measurements=_AMP_MEASUREMENTS,
        bench_elements={"rdc": True, "cdc": False},
    )


def _ldo() -> Circuit:
    return Circuit(
        name="ldo",
        title="Low-dropout regulator",
        template_file="ldo.cir",
        params=_wl("1", 20, 4) + _wl("3", 20, 4) + _wl("5", 20, 4)
        + [Param("wp", "w", 100.0, 2e4, 3e3), Param("lp", "l", 1.0, 4.0, 1.0)]
        + [Param("rfb", "r", 1.0, 1000.0, 50.0), Param("cc", "c", 0.01, 10.0, 0.5), Param("ibias", "i", 1.0, 200.0, 20.0)],
        metrics=[
            Metric("line_reg", "min", 0.1, 1e-4, 1.0),
            Metric("load_reg_ohm", "min", 3.0, 0.03, 1.0),
            Metric("quiescent_ua", "min", 1e3, 1.0, 1.0),
            Metric("phase_margin_deg", "max", 45.0, 90.0, 0.5, log=False),
            Metric("undershoot_mv", "min", 500.0, 20.0, 0.5),
            Metric("area_scaled_um2", "min", 1e5, 1e2, 0.5),
        ],
        measure=_ldo_measure,
        measurements=_LDO_MEASUREMENTS,
        bench_elements={"lbrk": True, "cinj": False},
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
