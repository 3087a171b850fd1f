"""Entry point of hwaml-tensorboard: contributes its config group.

Component (instantiated by Hydra in the loop's process):
``+observer=tensorboard`` (:class:`hwaml_tensorboard.writer.TensorBoardObserver`).
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_tensorboard.conf"]
