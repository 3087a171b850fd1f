"""hwaml-tensorboard: scalars per trial and the HParams view (``+observer=tensorboard``)."""

from .writer import TensorBoardObserver

__all__ = ["TensorBoardObserver"]
