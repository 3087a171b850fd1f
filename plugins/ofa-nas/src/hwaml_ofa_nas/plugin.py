"""hwaml entry point of the ofa-nas plugin: it only contributes its config groups.

The components themselves (evaluator ``ofa_digits``, backends ``host_cpu_lut``
and ``macs``, searcher ``ofa_evolution``) are classes instantiated by Hydra.
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_ofa_nas.conf"]
