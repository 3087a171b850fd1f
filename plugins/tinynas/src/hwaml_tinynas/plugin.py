"""Entry point of hwaml-tinynas: contributes its config groups.

Components (instantiated by Hydra from the configs):
``evaluator=tinynas_digits`` (:class:`hwaml_tinynas.evaluator.TinyNASDigits`),
``backend=[tinynas_stm32f412|tinynas_stm32f746|tinynas_stm32h743|tinynas_mcu64k]``
(:class:`hwaml_tinynas.backend.TinyNASBackend`), ``experiment=mcunet_digits``.
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_tinynas.conf"]
