"""APQ (Wang et al., CVPR 2020) as a hwaml plugin: joint search of the
architecture, the channel pruning (each block's middle width) and per-layer
mixed-precision bit-widths over sub-networks of a once-for-all supernet,
guided by a quantization-aware accuracy predictor transferred from a
full-precision one, under a latency/energy budget of a BitFusion-style
accelerator model. AMC and HAQ ship as searchers of their own, and the
separate pipeline (NAS, then AMC, then HAQ) as a third.

Importing the package is cheap: submodules (and torch) load on first use.
"""

__version__ = "0.1.0"
