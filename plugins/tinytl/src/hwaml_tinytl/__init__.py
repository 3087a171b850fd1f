"""TinyTL for hwaml: memory-efficient on-device transfer learning.

Frozen 8-bit backbone weights, bias-only updates and lite residual modules
(Cai et al., NeurIPS 2020), with the paper's analytic training-memory model and
a training mode that realises the saving in PyTorch, measured exactly.
"""

__version__ = "0.1.0"
