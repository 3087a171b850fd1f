"""hwaml entry point of the spvnas plugin: it only contributes its config groups.

The components (evaluator ``spvnas_lidar``, backends ``spvnas_macs`` and
``spvnas_latency``, searcher ``spvnas_evolution``) are classes instantiated by Hydra.
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_spvnas.conf"]
