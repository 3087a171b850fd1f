"""Entry point of hwaml-tinyengine: contributes its config groups.

Components (instantiated by Hydra from the configs):
``evaluator=tinyengine_digits`` (:class:`hwaml_tinyengine.evaluator.TinyEngineDigits`),
``backend=[stm32f412|stm32f746|stm32h743|mcu64k]``
(:class:`hwaml_tinyengine.backend.TinyEngineBackend`).
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_tinyengine.conf"]
