"""hwaml entry point of the apq plugin: it only contributes its config groups.

The components (evaluator ``apq_fashion`` / ``apq_digits``, backend
``bitfusion``, searchers ``apq_evolution``, ``amc``, ``haq`` and
``nas_amc_haq``) are classes instantiated by Hydra.
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_apq.conf"]
