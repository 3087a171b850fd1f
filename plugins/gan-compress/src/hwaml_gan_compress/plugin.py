"""hwaml entry point of the gan-compress plugin: it only contributes its config groups.

The components (evaluators ``gan_paired`` / ``gan_unpaired``, backends
``gan_macs`` and ``gan_latency``) are classes instantiated by Hydra.
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_gan_compress.conf"]
