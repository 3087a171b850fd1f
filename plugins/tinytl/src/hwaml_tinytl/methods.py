"""The six transfer methods of the TinyTL paper's Table 1, behind one name.

=================  ===========================================================
``ft_full``        every parameter
``ft_last``        the classifier only
``ft_norm_last``   norm scales and shifts + classifier
``tinytl_b``       biases: norm shifts (and conv/linear biases) + classifier
``tinytl_l``       lite residual modules + classifier
``tinytl_lb``      lite residual modules + biases + classifier
=================  ===========================================================

:func:`configure_method` sets ``requires_grad`` on a network (lite residual
modules, when the method uses them, are inserted before), so the training code,
the memory profiler and the measurement all read the trainable set from the
parameters themselves.
"""

from __future__ import annotations

from typing import Dict, List

from torch import nn

from .backbone import classifier_of
from .lite_residual import LiteResidualModule

__all__ = ["METHODS", "uses_lite_residual", "configure_method", "trainable_summary", "NORM_TYPES"]

METHODS = ("ft_full", "ft_last", "ft_norm_last", "tinytl_b", "tinytl_l", "tinytl_lb")
NORM_TYPES = (nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.LayerNorm)


def uses_lite_residual(method: str) -> bool:
    check_method(method)
    return method in ("tinytl_l", "tinytl_lb")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {METHODS}")


def configure_method(net: nn.Module, method: str, allow_no_lite: bool = False) -> nn.Module:
    """Freeze ``net`` and unfreeze what ``method`` trains (in place). A lite-residual
    method on a network without lite residual modules is an error unless
    ``allow_no_lite`` (a search that placed none)."""
    check_method(method)
    if method == "ft_full":
        for p in net.parameters():
            p.requires_grad_(True)
        return net
    for p in net.parameters():
        p.requires_grad_(False)
    _, _, classifier = classifier_of(net)
    for p in classifier.parameters():
        p.requires_grad_(True)
    if method in ("ft_norm_last", "tinytl_b", "tinytl_lb"):
        for m in net.modules():
            if isinstance(m, NORM_TYPES) and getattr(m, "bias", None) is not None:
                m.bias.requires_grad_(True)
                if method == "ft_norm_last" and m.weight is not None:
                    m.weight.requires_grad_(True)
            elif method != "ft_norm_last" and isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.requires_grad_(True)
    if method in ("tinytl_l", "tinytl_lb"):
        lites = [m for m in net.modules() if isinstance(m, LiteResidualModule)]
        if not lites and not allow_no_lite:
            raise ValueError(f"method {method!r} trains lite residual modules but {type(net).__name__} has none: insert them first")
        for m in lites:
            for p in m.lite_residual.parameters():
                p.requires_grad_(True)
    return net


def trainable_summary(net: nn.Module) -> Dict[str, int]:
    params: List[nn.Parameter] = list(net.parameters())
    return {
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "frozen_params": sum(p.numel() for p in params if not p.requires_grad),
    }
