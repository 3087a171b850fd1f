"""Technology nodes: BSIM3v3 model cards written for this project, one per node.

Each node gives a minimum channel length, a supply voltage and the handful of
BSIM3v3 parameters that carry the scaling trend (oxide thickness, threshold
voltage, low-field mobility, channel doping, junction depth, saturation
velocity, overlap and junction capacitance). The numbers follow the published
constant-field scaling figures of the 180/130/90/65/45 nm generations (ITRS
roadmap tables and the Predictive Technology Model papers: thinner oxide,
lower Vth and Vdd, higher doping, shallower junctions, degraded mobility);
everything else is left at BSIM3's own defaults. They are teaching-grade cards
-- enough for the sizing trade-offs to move with the node -- not foundry models.

``NLX`` (lateral non-uniform doping) is set to zero: its default makes the
threshold *rise* at short channels with the few parameters given here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List


@dataclass(frozen=True)
class Technology:
    """One CMOS node: supply, minimum length and the BSIM3 numbers that scale."""

    name: str
    lmin: float  # m
    vdd: float  # V
    tox: float  # m
    vth_n: float  # V
    vth_p: float  # V (negative)
    u0_n: float  # cm^2/Vs
    u0_p: float  # cm^2/Vs
    nch: float  # cm^-3
    xj: float  # m
    vsat: float  # m/s
    cgo: float  # F/m overlap capacitance (gate-source and gate-drain)
    cj: float  # F/m^2 bottom junction capacitance
    pclm: float = 1.3

    @property
    def cox(self) -> float:
        """Gate capacitance per area, F/m^2."""
        return 3.9 * 8.854e-12 / self.tox

    @property
    def kp_n(self) -> float:
        """mu_n * Cox in A/V^2 (mobility converted from cm^2/Vs)."""
        return self.u0_n * 1e-4 * self.cox

    @property
    def kp_p(self) -> float:
        return self.u0_p * 1e-4 * self.cox

    def model_cards(self) -> str:
        """The ``.model nch`` / ``.model pch`` lines for this node."""
        common = (
            f"tox={self.tox:.4g} nch={self.nch:.4g} xj={self.xj:.4g} vsat={self.vsat:.4g} "
            f"pclm={self.pclm:.4g} nlx=0 cgso={self.cgo:.4g} cgdo={self.cgo:.4g} cj={self.cj:.4g}"
        )
        return (
            f".model nch nmos level=8 version=3.3.0 vth0={self.vth_n:.4g} u0={self.u0_n:.4g} {common}\n"
            f".model pch pmos level=8 version=3.3.0 vth0={self.vth_p:.4g} u0={self.u0_p:.4g} {common}"
        )

    def features(self) -> List[float]:
        """Technology part of every vertex's state, roughly normalised to O(1).

        The GCN-RL state carries the node's device parameters (Vth, mobility
        times Cox, supply, minimum length) so one agent can tell nodes apart and
        transfer between them.
        """
        return [
            self.vth_n / 0.5,
            -self.vth_p / 0.5,
            self.kp_n / 5e-4,
            self.kp_p / 5e-4,
            self.vdd / 1.8,
            self.lmin / 180e-9,
        ]


#: The five nodes of the paper's transfer experiments, by name.
NODES: Dict[str, Technology] = {
    "n180": Technology("n180", 180e-9, 1.8, 4.1e-9, 0.39, -0.42, 400.0, 120.0, 2.3e17, 1.5e-7, 8.0e4, 3.0e-10, 1.0e-3),
    "n130": Technology("n130", 130e-9, 1.3, 3.3e-9, 0.33, -0.34, 380.0, 110.0, 3.0e17, 1.2e-7, 8.5e4, 2.8e-10, 1.1e-3),
    "n90": Technology("n90", 90e-9, 1.2, 2.2e-9, 0.30, -0.31, 350.0, 100.0, 4.0e17, 9.0e-8, 9.0e4, 2.5e-10, 1.2e-3),
    "n65": Technology("n65", 65e-9, 1.1, 1.8e-9, 0.28, -0.29, 320.0, 95.0, 5.0e17, 7.0e-8, 9.5e4, 2.3e-10, 1.3e-3),
    "n45": Technology("n45", 45e-9, 1.0, 1.4e-9, 0.26, -0.27, 300.0, 90.0, 6.0e17, 5.0e-8, 1.0e5, 2.0e-10, 1.4e-3),
}

N_TECH_FEATURES = 6


def get_technology(name: str) -> Technology:
    """A node by name (``n180`` ... ``n45``); unknown names list the choices."""
    try:
        return NODES[name]
    except KeyError:
        raise ValueError(f"unknown technology {name!r}; choose one of {sorted(NODES)}") from None
