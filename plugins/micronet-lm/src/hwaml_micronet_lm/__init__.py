"""hwaml-micronet-lm: compact language models built and scored by the MicroNet rules.

Modules, in the order of the pipeline: :mod:`.data` (corpora, vocabulary, cached
tokens), :mod:`.model` (Transformer-XL-style decoder with adaptive input and
adaptive softmax), :mod:`.cache` (non-parametric cache), :mod:`.hebbian`,
:mod:`.distill`, :mod:`.compress` (gradual magnitude pruning, quantization-aware
training), :mod:`.score` (the MicroNet counting rules), :mod:`.lstm` (the
challenge-style baseline), :mod:`.train`, :mod:`.evaluator`, :mod:`.backend`.
"""

__version__ = "0.1.0"
