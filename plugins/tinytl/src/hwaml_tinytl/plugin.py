"""hwaml entry point of the tinytl plugin: it only contributes its config groups.

The components (evaluators ``tinytl_<target>``, backend ``tinytl_memory``) are
classes instantiated by Hydra.
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_tinytl.conf"]
