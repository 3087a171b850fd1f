"""GCN-RL Circuit Designer for hwaml: transistor sizing with a graph-convolutional
DDPG agent on ngspice-simulated circuits (Wang et al., DAC 2020)."""

__version__ = "0.1.0"
