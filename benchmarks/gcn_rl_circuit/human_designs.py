"""The hand-sized (gm/Id) design of every circuit on both PDKs, with its reasoning and metrics.

    python benchmarks/gcn_rl_circuit/human_designs.py
"""

from __future__ import annotations

from hwaml_gcn_rl_circuit.circuits import CIRCUITS, get_circuit
from hwaml_gcn_rl_circuit.evaluator import simulate_design
from hwaml_gcn_rl_circuit.human import human_design
from hwaml_gcn_rl_circuit.technology import get_technology


def main() -> None:
    for tech_name in ("sky130", "gf180mcu"):
        tech = get_technology(tech_name)
        for name in CIRCUITS:
            c = get_circuit(name).configure(tech)
            cfg, why = human_design(name, tech_name)
            out = simulate_design(c, tech, cfg)
            m = out["metrics"]
            print(f"### {c.title}, {tech.title}\n")
            for line in why[1:]:
                print(f"* {line}")
            print(f"\nSizing: " + ", ".join(f"{k} = {v:.4g}" for k, v in cfg.items()))
            keys = [k for k in c.measurements if k != "triode_devices"]
            print(f"\nFoM **{m['fom']:.3f}**, specs {'all met' if not out['violated'] else 'violated: ' + ', '.join(out['violated'])}; "
                  + ", ".join(f"{k} {m[k]:.4g}" for k in keys) + "\n")


if __name__ == "__main__":
    main()
