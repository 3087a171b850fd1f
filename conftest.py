"""Settings for the whole test suite (core, plugins, examples).

``pytest -n 2`` runs two workers on a 2-core machine; each one, and each
``hwaml`` subprocess a test starts, would otherwise open a torch/OpenMP pool as
wide as the machine. Oversubscribed OpenMP pools spin-wait: a tiny supernet's
training step took 0.43 s with the default two threads under load and 0.04 s
with one. One thread per process, set before anything imports torch.
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
