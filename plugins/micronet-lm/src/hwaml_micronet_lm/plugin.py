"""Entry point of hwaml-micronet-lm: contributes its config groups.

Components (instantiated by Hydra from the configs):
``evaluator=micronet_pydocs`` / ``micronet_wikitext``
(:class:`hwaml_micronet_lm.evaluator.MicroNetLM`) and
``backend=[micronet_score]`` (:class:`hwaml_micronet_lm.backend.MicroNetScore`).
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_micronet_lm.conf"]
