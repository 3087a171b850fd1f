"""Entry point of the gcn-rl-circuit plugin: it only contributes its config groups.

The components themselves (``CircuitEvaluator``, ``GCNRLSearcher``) are classes
that Hydra instantiates from ``conf/evaluator/circuit_*.yaml`` and
``conf/searcher/gcn_rl.yaml``.
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_gcn_rl_circuit.conf"]
