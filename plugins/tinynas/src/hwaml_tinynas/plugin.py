"""Entry point of hwaml-tinynas: contributes its config groups.

Components (instantiated by Hydra from the configs):
``evaluator=tinynas_digits`` (:class:`hwaml_tinynas.evaluator.TinyNASDigits`)
and ``experiment=mcunet_digits``. Costs and the C deployment come from
hwaml-tinyengine's backends (``backend=[mcu64k]`` ...), which cost the network
the evaluator's ``build_model`` returns.
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_tinynas.conf"]
