"""A circuit kept loaded in ngspice and resized per trial.

:class:`CircuitBench` realises a sizing on a technology -- W and L snapped to the grid, wide
devices split into ``m`` fingers, AD/AS/PD/PS from the finger width, the BSIM4 bin of every
transistor -- and keeps the netlist loaded in the process's ngspice library:

* when every transistor stays in the bin it had, the next trial is a handful of ``alter``
  commands (W, L, m, AD, AS, PD, PS per transistor, the value of each sized passive and bias
  source; unchanged values are skipped) -- ngspice re-selects the bin and recomputes the
  size-dependent parameters, so a trial costs its analyses and nothing else;
* when a transistor moves to another bin, the deck is re-rendered with the cards of exactly
  the bins in use (a few kB: parsed in milliseconds, where the full SKY130 library takes ~1 s)
  and loaded in place of the previous one.

The measurement procedures (``circuits.py``) drive the bench: ``alter`` bench elements,
``op``, ``analysis("ac dec 50 ...")``. Every command since :meth:`CircuitBench.apply` is kept in
``log`` so the deployed deck replays the same procedure in a ``.control`` block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .circuits import Circuit
from .netlist import Element
from .simulator import SimulationError, SpiceSimulator, default_simulator
from .technology import Geometry, Technology, check_corner

#: BSIM4 operating-point values saved for every transistor
OP_PARAMS = ("vds", "vdsat", "vgs", "vth", "gm", "gds", "id")
#: how ``alter`` names the value of each sized element kind
VALUE_PARAM = {"resistor": "resistance", "capacitor": "capacitance", "current_source": "dc", "vsource": "dc", "inductor": "inductance"}
#: supply source of each circuit and the sources that scale with it in a corner (source -> condition)
SUPPLY = {"ldo": "vsup"}
SCALED = {"two_stage_amp": {"vin": "vcm"}}


@dataclass(frozen=True)
class Corner:
    """A PVT corner: process (tt/ff/ss/fs/sf), temperature (C), supply scale (1.0 nominal)."""

    process: str = "tt"
    temp: float = 27.0
    vdd_scale: float = 1.0

    def __post_init__(self) -> None:
        check_corner(self.process)

    @classmethod
    def parse(cls, text: Any) -> "Corner":
        """``"ss/125/0.9"`` (process/temperature/supply scale), ``"ff"`` or a mapping."""
        if isinstance(text, Corner):
            return text
        if isinstance(text, Mapping):
            return cls(str(text.get("process", "tt")), float(text.get("temp", 27.0)), float(text.get("vdd_scale", 1.0)))
        parts = str(text).split("/")
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"corner {text!r}: expected 'process[/temp[/vdd_scale]]', e.g. 'ss/125/0.9'")
        return cls(parts[0], float(parts[1]) if len(parts) > 1 else 27.0, float(parts[2]) if len(parts) > 2 else 1.0)

    def __str__(self) -> str:
        return f"{self.process}/{self.temp:g}C/{self.vdd_scale:g}Vdd"


#: the sign-off set: process tt/ss/ff x temperature -40/27/125 C x supply -10/0/+10 %
SIGNOFF_CORNERS: Tuple[Corner, ...] = tuple(Corner(p, t, v) for p in ("tt", "ss", "ff") for t in (-40.0, 27.0, 125.0) for v in (0.9, 1.0, 1.1))


def _fmt(v: float) -> str:
    return f"{v:.6g}"


class CircuitBench:
    """One circuit on one technology and process corner, loaded once and resized per trial."""

    def __init__(self, circuit: Circuit, tech: Technology, corner: Corner = Corner(), sim: Optional[SpiceSimulator] = None,
                 points_per_decade: int = 50, timeout_s: float = 10.0):
        if circuit.technology != tech.name:
            circuit.configure(tech)
        self.circuit, self.tech, self.corner = circuit, tech, corner
        self.sim = sim or default_simulator(timeout_s)
        self.points_per_decade = int(points_per_decade)
        tpl = circuit.template()
        self.mos: List[Element] = [e for e in tpl.elements if e.kind in ("nmos", "pmos")]
        self.mos_devices = [e.name.lower() for e in self.mos]
        self.sized_passives: List[Element] = [e for e in tpl.elements if e.kind not in ("nmos", "pmos") and e.params]
        for e in self.mos:
            if len(e.params) != 2:
                raise ValueError(f"{circuit.name}: transistor {e.name} (line {e.line}) must be sized by one W and one L placeholder, got {e.params}")
        self._values: Dict[Tuple[str, str], float] = {}
        self.log: List[str] = []
        self.info: Dict[str, Any] = {}
        self.loads = 0
        self.geometry: Dict[str, Geometry] = {}

    # -- conditions ----------------------------------------------------------------

    @property
    def conditions(self) -> Dict[str, float]:
        """The circuit's conditions at this corner's supply (sources that track the supply scaled)."""
        c = dict(self.circuit.conditions)
        s = self.corner.vdd_scale
        c["vdd"] *= s
        for cond in SCALED.get(self.circuit.name, {}).values():
            c[cond] *= s
        return c

    # -- realisation ---------------------------------------------------------------

    def realise(self, sizes_si: Mapping[str, float]) -> Tuple[Dict[str, Geometry], Tuple]:
        geo: Dict[str, Geometry] = {}
        sig = []
        for e in self.mos:
            w, l = (float(sizes_si[p]) for p in e.params)
            g = self.tech.geometry(w, l)
            geo[e.name.lower()] = g
            sig.append((e.name.lower(), self.tech.bin_for(e.kind, g.l, g.w, self.corner.process).index))
        return geo, tuple(sig)

    def deck(self, sizes_si: Mapping[str, float], control: Optional[List[str]] = None, compact: bool = False) -> str:
        """The full netlist at ``sizes_si`` (models of the bins in use), optionally with a
        ``.control`` block (the deployed, stand-alone deck); ``compact``: each model card on one
        line (what :meth:`apply` loads)."""
        geo, sig = self.realise(sizes_si)
        used: Dict[str, set] = {"nmos": set(), "pmos": set()}
        kinds = {e.name.lower(): e.kind for e in self.mos}
        for name, idx in sig:
            used[kinds[name]].add(idx)
        marker = "*__models__"
        values: Dict[str, object] = {"models": marker, **self.circuit.conditions}
        values.update({k: float(v) for k, v in sizes_si.items()})
        lines = self.circuit.template().render(values).splitlines()  # one line per template line
        by_line = {e.line: e for e in self.mos}
        out = []
        for number, line in enumerate(lines, start=1):
            e = by_line.get(number)
            if e is not None:
                tokens = line.split()
                line = " ".join(tokens[:6]) + " " + geo[e.name.lower()].instance_params()
            if line.strip().lower() == ".end":
                saves = " ".join(f"@{d}[{p}]" for d in self.mos_devices for p in OP_PARAMS)
                out.append(f".save all {saves}")
                out.append(f".options noacct temp={_fmt(self.corner.temp)}")
                if control is not None:
                    out += [".control", *control, ".endc"]
            out.append(self.tech.model_cards(used, self.corner.process, compact) if line.strip() == marker else line)
        return "\n".join(out) + "\n"

    def apply(self, sizes_si: Mapping[str, float]) -> None:
        """Put ``sizes_si`` (SI) into the loaded circuit: ``alter`` where every transistor keeps
        its bin, a fresh load of the deck with the needed bins otherwise."""
        geo, sig = self.realise(sizes_si)
        self.geometry = geo
        self.log, self.info = [], {}
        self.sim.release()  # the previous trial's plots
        key = (self.circuit.name, id(self.circuit.template()), self.tech.name, self.corner.process,
               tuple(sorted(self.circuit.conditions.items())), sig)
        values: Dict[Tuple[str, str], float] = {}
        for name, g in geo.items():
            for p, v in g.alter_params():
                values[(name, p)] = v
        for e in self.sized_passives:
            values[(e.name.lower(), VALUE_PARAM.get(e.kind, "dc"))] = float(sizes_si[e.params[0]])
        if self.sim.loaded_key != key:
            self.sim.load(self.deck(sizes_si, compact=True), key)
            self.loads += 1
            self._values = dict(values)
        else:
            for (name, p), v in values.items():
                if self._values.get((name, p)) != v:
                    if name in geo:
                        self.sim.command(f"alter {name} {p}={_fmt(v)}")
                    else:
                        self.sim.command(f"alter @{name}[{p}]={_fmt(v)}")
                    self._values[(name, p)] = v
        self.sim.command(f"option temp={_fmt(self.corner.temp)}")
        cond = self.conditions
        self.alter(SUPPLY.get(self.circuit.name, "vdd"), "dc", cond["vdd"])
        for src, c in SCALED.get(self.circuit.name, {}).items():
            self.alter(src, "dc", cond[c])

    # -- what the measurement procedures call ----------------------------------------

    def alter(self, element: str, param: str, value: float) -> None:
        cmd = f"alter @{element.lower()}[{param}]={_fmt(value)}"
        self.log.append(cmd)
        self.sim.command(cmd)

    def analysis(self, cmd: str) -> Dict[str, np.ndarray]:
        self.log.append(cmd)
        return self.sim.analysis(cmd)

    def op(self) -> Dict[str, np.ndarray]:
        return self.analysis("op")

    # -- bookkeeping -----------------------------------------------------------------

    def area_um2(self, sizes_si: Mapping[str, float]) -> float:
        """Layout area estimate: m x W x (L + 2 ldiff) per transistor, MIM capacitors at the PDK's
        density, high-R poly resistors 0.5 um wide at its sheet resistance."""
        geo, _ = self.realise(sizes_si)
        area = sum(g.m * g.w * (g.l + 2 * self.tech.ldiff) for g in geo.values()) * 1e12
        for e in self.sized_passives:
            v = float(sizes_si[e.params[0]])
            if e.kind == "capacitor":
                area += v / self.tech.cap_density * 1e12
            elif e.kind == "resistor":
                area += v / self.tech.sheet_res * 0.25
        return float(area)

    def measure(self, sizes_si: Mapping[str, float]) -> Dict[str, float]:
        """Apply the sizing and run the circuit's whole procedure; every value finite."""
        self.apply(sizes_si)
        values = self.circuit.measure(self, self.tech, self.conditions)
        values["area_um2"] = self.area_um2(sizes_si)
        values["area_scaled_um2"] = values["area_um2"] * (180e-9 / self.tech.lmin) ** 2
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise SimulationError(f"measurements {bad} are not finite")
        return values


_BENCHES: Dict[Tuple, CircuitBench] = {}


def get_bench(circuit: Circuit, tech: Technology, corner: Corner = Corner(), timeout_s: float = 10.0) -> CircuitBench:
    """The process's test bench for (circuit object, technology, corner), made once."""
    key = (id(circuit), tech.name, corner)
    tb = _BENCHES.get(key)
    if tb is None or tb.circuit is not circuit:
        tb = _BENCHES[key] = CircuitBench(circuit, tech, corner, timeout_s=timeout_s)
    tb.sim.timeout_s = float(timeout_s)
    return tb
