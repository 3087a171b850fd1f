"""Hand-sized designs: the paper's "human expert" row, by the gm/Id method.

A designer sizes with lookup tables of the real devices: for a length L, drain current per
width Id/W, transconductance efficiency gm/Id, intrinsic gain gm/gds and Vgs, all as functions
of the gate drive. :func:`lookup` simulates them once per technology, kind and length (W = 10 um,
|Vds| = Vdd/2, a Vgs sweep). Each circuit's procedure below picks currents and gm/Id (or gate
voltages where the topology fixes them), reads W = Id / (Id/W), and tunes the one capacitor a
designer tunes in simulation (compensation) by a short sweep, keeping what meets the specs.
The reasoning is written next to each number; :func:`human_design` returns the sizing in the
search space's units, clipped to its bounds, with the reasoning lines.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, List, Tuple

import numpy as np

from .circuits import Circuit, get_circuit
from .technology import Technology, get_technology


@functools.lru_cache(maxsize=None)
def lookup(tech_name: str, kind: str, l: float) -> Dict[str, np.ndarray]:
    """gm/Id tables of one device kind at length ``l`` (m): arrays over |Vgs| of
    ``vgs``, ``id_w`` (A/m), ``gm_id`` (1/V), ``gain`` (gm/gds), ``vdsat``."""
    from .simulator import default_simulator

    tech = get_technology(tech_name)
    g = tech.geometry(10e-6, l)
    b = tech.bin_for(kind, g.l, g.w)
    alias = "nch" if kind == "nmos" else "pch"
    sgn = 1.0 if kind == "nmos" else -1.0
    deck = "\n".join([
        f"* gm/Id lookup {tech_name} {kind} L={g.l:.4g}",
        tech.model_cards({kind: {b.index}}),
        f"Vd d 0 dc {sgn * tech.vdd / 2:.6g}",
        "Vg g 0 dc 0",
        f"M1 d g 0 0 {alias} {g.instance_params()}",
        ".save all @m1[id] @m1[gm] @m1[gds] @m1[vdsat]",
        f".dc vg 0 {sgn * tech.vdd:.6g} {sgn * 0.005:.6g}",
        ".end",
    ])
    res = default_simulator().simulate(deck)
    dc = res[next(k for k in res if k.startswith("dc"))]
    vgs = np.abs(np.real(dc["v-sweep"]))
    i = np.abs(np.real(dc["@m1[id]"]))
    gm = np.abs(np.real(dc["@m1[gm]"]))
    gds = np.abs(np.real(dc["@m1[gds]"]))
    keep = i > 1e-12
    return {"vgs": vgs[keep], "id_w": i[keep] / g.w_total, "gm_id": gm[keep] / i[keep], "gain": gm[keep] / gds[keep],
            "vdsat": np.abs(np.real(dc["@m1[vdsat]"]))[keep]}


def width_at_gm_id(tech: Technology, kind: str, l: float, gm_id: float, current: float) -> Tuple[float, float]:
    """(W, |Vgs|) that carries ``current`` at transconductance efficiency ``gm_id``."""
    t = lookup(tech.name, kind, l)
    k = int(np.argmin(np.abs(t["gm_id"] - gm_id)))
    return current / t["id_w"][k], float(t["vgs"][k])


def width_at_vgs(tech: Technology, kind: str, l: float, vgs: float, current: float) -> Tuple[float, float]:
    """(W, gm/Id) that carries ``current`` at gate drive |Vgs| = ``vgs``."""
    t = lookup(tech.name, kind, l)
    k = int(np.argmin(np.abs(t["vgs"] - vgs)))
    return current / t["id_w"][k], float(t["gm_id"][k])


def _um(x: float) -> float:
    return x * 1e6


def _two_stage_amp(c: Circuit, tech: Technology, why: List[str]) -> Dict[str, float]:
    cond = c.conditions
    cl = cond["cl"]
    gbw = 30e6 if tech.name == "sky130" else 20e6
    lmin = tech.lmin
    cc = 0.3 * cl
    why.append(f"GBW target {gbw / 1e6:g} MHz with CL {cl * 1e12:g} pF; Miller cap Cc = 0.3 CL = {cc * 1e12:.2f} pF (PM >= 60 deg needs p2 > 2.2 GBW, zero > 10 GBW)")
    gm1 = 2 * math.pi * gbw * cc
    gmid1 = 20.0 if tech.name == "sky130" else 15.0  # on 1.8 V the tail needs headroom below Vcm - Vgs1
    i1 = gm1 / gmid1
    l1, lm, ls = 2 * lmin, 4 * lmin, 4 * lmin
    w1, v1 = width_at_gm_id(tech, "nmos", l1, gmid1, i1)
    why.append(f"input pair: gm1 = 2 pi GBW Cc = {gm1 * 1e6:.0f} uS at gm/Id {gmid1:g} (moderate inversion) -> Id {i1 * 1e6:.1f} uA, L = 2 Lmin, W = {_um(w1):.2f} um")
    gmid3 = 8.0
    w3, v3 = width_at_gm_id(tech, "pmos", lm, gmid3, i1)
    why.append(f"mirror load M3/M4: gm/Id {gmid3:g} (strong inversion, matching), L = 4 Lmin -> W = {_um(w3):.2f} um, Vsg = {v3:.2f} V")
    ibias = 2 * i1
    gmid5 = 16.0 if tech.name == "sky130" else 8.0  # Vdsat5 ~ 2/(gm/Id) must fit under Vcm - Vgs1
    w5, v5 = width_at_gm_id(tech, "nmos", ls, gmid5, ibias)
    why.append(f"tail M5 = bias diode M8 (1:1): Ibias = 2 Id1 = {ibias * 1e6:.1f} uA at gm/Id {gmid5:g} (Vdsat ~ {2 / gmid5:.2f} V below Vcm - Vgs1 = "
               f"{cond['vcm'] - v1:.2f} V), L = 4 Lmin -> W = {_um(w5):.2f} um")
    gm6 = 1.5 * 2.2 * 2 * math.pi * gbw * cl
    i6 = gm6 / gmid3
    w6 = w3 * i6 / i1 * (2 * lmin) / lm  # same current density as M3 at L = 2 Lmin: Vsg6 = Vsg3 (no systematic offset)
    w6, _ = width_at_gm_id(tech, "pmos", 2 * lmin, gmid3, i6)
    w7 = w5 * i6 / ibias
    why.append(f"second stage: gm6 = 1.5 x 2.2 x 2 pi GBW CL = {gm6 * 1e6:.0f} uS at gm/Id {gmid3:g} -> I6 {i6 * 1e6:.0f} uA, M6 L = 2 Lmin W = {_um(w6):.1f} um; "
               f"M7 mirrors the tail: W7 = W5 I6 / Ibias = {_um(w7):.1f} um")
    return {"w1": _um(w1), "l1": _um(l1), "w3": _um(w3), "l3": _um(lm), "w5": _um(w5), "l5": _um(ls), "w6": _um(w6), "l6": _um(2 * lmin),
            "w7": _um(w7), "l7": _um(ls), "cc": cc * 1e12, "ibias": ibias * 1e6}


def _two_stage_tia(c: Circuit, tech: Technology, why: List[str]) -> Dict[str, float]:
    cond = c.conditions
    vdd, lmin = cond["vdd"], tech.lmin
    sky = tech.name == "sky130"
    # SKY130's pMOS threshold (~0.95 V) leaves little gate drive at the trip point a 1.8 V supply
    # allows: a smaller follower current keeps Vgs3, hence the trip point, low
    i_inv, i_sf = 100e-6, (30e-6 if sky else 100e-6)
    l_inv = 2 * lmin
    # the follower's output must keep the sink saturated: out ~ Vdsat4 + margin; the inverter's
    # trip point then has to be Vgs3 (with body effect) above it
    w4, gmid4 = width_at_vgs(tech, "nmos", 4 * lmin, cond["vbn"], i_sf)
    vdsat4 = 2.0 / gmid4
    out = 0.25 if sky else 0.6
    gmid3 = 20.0 if sky else 12.0  # on 1.8 V the follower runs in weak inversion: the lowest Vgs3
    w3, vgs3 = width_at_gm_id(tech, "nmos", lmin, gmid3, i_sf)
    vgs3 += 0.05 if sky else 0.15  # body effect at Vsb = out
    vm = min(vdd - 0.5, out + vgs3)
    w2, _ = width_at_vgs(tech, "pmos", l_inv, vdd - vm, i_inv)
    w_max = 0.8 * c.param("w2").bounds(tech)[1] * 1e-6
    if w2 > w_max:
        # the pMOS is in weak inversion at that trip point: the widest allowed pMOS, and the trip
        # point lowered until the nMOS that balances it is at least twice the minimum width
        tp, tn = lookup(tech.name, "pmos", l_inv), lookup(tech.name, "nmos", l_inv)
        w2 = w_max
        for v in np.arange(vm, 0.4 * vdd, -0.005):
            i_inv = w2 * float(np.interp(vdd - v, tp["vgs"], tp["id_w"]))
            if i_inv / float(np.interp(v, tn["vgs"], tn["id_w"])) >= 2 * tech.wmin:
                vm = float(v)
                break
        why.append(f"the pMOS is in weak inversion there: widest pMOS {_um(w2):.0f} um, trip point lowered to {vm:.2f} V, {i_inv * 1e6:.1f} uA")
    w1, _ = width_at_vgs(tech, "nmos", l_inv, vm, i_inv)
    why.append(f"sink M4 at Vgs = vbn = {cond['vbn']:g} V, {i_sf * 1e6:g} uA, L = 4 Lmin -> W = {_um(w4):.2f} um (gm/Id {gmid4:.1f}, Vdsat ~ {vdsat4:.2f} V)")
    why.append(f"output DC target {out:.2f} V (sink saturated with margin); follower M3 at gm/Id {gmid3:g}, L = Lmin -> W = {_um(w3):.1f} um, Vgs3 ~ {vgs3:.2f} V with body effect")
    why.append(f"inverter trip point Vm = out + Vgs3 = {vm:.2f} V: nMOS at Vgs = Vm, pMOS at Vsg = Vdd - Vm, {i_inv * 1e6:g} uA, L = 2 Lmin -> "
               f"W1 = {_um(w1):.2f} um, W2 = {_um(w2):.2f} um")
    rf = 4e3
    why.append(f"Rf = {rf / 1e3:g} kOhm: Zt = Rf A/(1+A) above the 1 kOhm spec; BW ~ (1+A)/(2 pi Rf Cin) well above the spec with Cpd = {cond['cpd'] * 1e15:g} fF")
    return {"w1": _um(w1), "l1": _um(l_inv), "w2": _um(w2), "l2": _um(l_inv), "w3": _um(w3), "l3": _um(lmin), "w4": _um(w4), "l4": _um(4 * lmin), "rf": rf / 1e3}


def _three_stage_tia(c: Circuit, tech: Technology, why: List[str]) -> Dict[str, float]:
    cond = c.conditions
    vdd, lmin = cond["vdd"], tech.lmin
    vm = vdd / 2
    out: Dict[str, float] = {}
    currents = (150e-6, 75e-6, 75e-6)
    for k, i in enumerate(currents):
        wn, gmn = width_at_vgs(tech, "nmos", lmin, vm, i)
        wp, gmp = width_at_vgs(tech, "pmos", lmin, vm, i)
        out[f"w{2 * k + 1}"], out[f"l{2 * k + 1}"] = _um(wn), _um(lmin)
        out[f"w{2 * k + 2}"], out[f"l{2 * k + 2}"] = _um(wp), _um(lmin)
        why.append(f"inverter {k + 1}: trip point Vdd/2 = {vm:.2f} V (nMOS and pMOS carry the same current at Vgs = Vsg = Vdd/2), {i * 1e6:g} uA, L = Lmin "
                   f"-> Wn = {_um(wn):.2f} um, Wp = {_um(wp):.2f} um (gm/Id {gmn:.1f} / {gmp:.1f})")
    out["rf"] = 5.0
    why.append("Rf = 5 kOhm (Zt ~ Rf with three-stage loop gain)")
    out["cc"] = 0.02
    return out


def _ldo(c: Circuit, tech: Technology, why: List[str]) -> Dict[str, float]:
    cond = c.conditions
    lmin = tech.lmin
    ifull = cond["iload_full"]
    wp, vsg = width_at_gm_id(tech, "pmos", lmin, 12.0, ifull)
    why.append(f"pass device: {ifull * 1e3:g} mA at gm/Id 12 (Vdsat ~ 0.17 V, the dropout budget), L = Lmin -> W = {_um(wp):.0f} um (fingers of <= 100 um)")
    rfb = cond["vref"] / 10e-6
    why.append(f"divider: 10 uA -> R1 = R2 = Vref / 10 uA = {rfb / 1e3:.0f} kOhm")
    itail = 20e-6
    gmid1 = 20.0 if tech.name == "sky130" else 15.0  # tail headroom under Vref - Vgs1 on 1.8 V
    w1, _ = width_at_gm_id(tech, "nmos", 2 * lmin, gmid1, itail / 2)
    w3, _ = width_at_gm_id(tech, "pmos", 2 * lmin, 8.0, itail / 2)
    w5, _ = width_at_gm_id(tech, "nmos", 4 * lmin, 8.0, itail)
    why.append(f"OTA: tail {itail * 1e6:g} uA (Ibias, 1:1 mirror); pair gm/Id {gmid1:g} at L = 2 Lmin W = {_um(w1):.2f} um; mirror gm/Id 8 W = {_um(w3):.2f} um; "
               f"tail/bias gm/Id 8 at L = 4 Lmin W = {_um(w5):.2f} um")
    return {"w1": _um(w1), "l1": _um(2 * lmin), "w3": _um(w3), "l3": _um(2 * lmin), "w5": _um(w5), "l5": _um(4 * lmin), "wp": _um(wp), "lp": _um(lmin),
            "rfb": rfb / 1e3, "cc": 0.5, "ibias": itail * 1e6}


_PROCEDURES = {"two_stage_amp": _two_stage_amp, "two_stage_tia": _two_stage_tia, "three_stage_tia": _three_stage_tia, "ldo": _ldo}
#: the compensation capacitor a designer tunes in simulation (a sweep over a decade and a half)
_TUNED = {"three_stage_tia": {"cc": (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)},
          "ldo": {"cc": (0.1, 0.5, 2.0, 10.0), "ibias": (5.0, 20.0)}}


def human_design(circuit: str, technology: str) -> Tuple[Dict[str, float], List[str]]:
    """The hand-sized design of ``circuit`` on ``technology``: (sizing in space units, reasoning)."""
    from .evaluator import circuit_space, simulate_design

    tech = get_technology(technology)
    c = get_circuit(circuit).configure(tech)
    why: List[str] = [f"{c.title} on {tech.title}; conditions {c.conditions}"]
    cfg = _PROCEDURES[circuit](c, tech, why)
    space = circuit_space(c, tech)
    for d in space.dims:
        cfg[d.name] = float(min(d.high, max(d.low, cfg[d.name])))
    grid = _TUNED.get(circuit)
    if grid:
        import itertools

        best = None
        names = list(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            trial = {**cfg, **dict(zip(names, values))}
            m = simulate_design(c, tech, trial)["metrics"]
            key = (m["specs_met"], m["fom"])
            if best is None or key > best[0]:
                best = (key, dict(zip(names, values)))
        cfg.update(best[1])
        why.append(f"tuned in simulation over {dict(grid)} (specs met first, then FoM): {best[1]}")
    return cfg, why
