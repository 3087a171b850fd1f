"""Exact multiply-accumulate counts of any network, counted on the module.

A convolution and a transposed convolution cost ``(C_in / groups) * k_h * k_w``
MACs per output value, a linear layer ``in_features`` per output value;
normalisation, activations and additions are not counted. This is the
convention of the GAN Compression paper (torchprofile's count): the
pix2pix/CycleGAN teacher ``resnet_9blocks`` at ngf 64 on a 256x256 RGB image
comes to the paper's 56.8 GMACs (a test checks it).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

__all__ = ["count_module_macs", "count_params"]


def count_module_macs(module: nn.Module, input_shape: Tuple[int, ...]) -> int:
    """MACs of one forward pass of ``module`` on a single input of ``input_shape`` (C, H, W)."""
    total = [0]

    def hook(mod: nn.Module, inputs, output) -> None:
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            kh, kw = mod.kernel_size
            total[0] += output[0].numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total[0] += output[0].numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    was_training = module.training
    module.eval()
    try:
        # on the module's device: a network built under ``torch.device("meta")`` is counted without computing
        param = next(module.parameters(), None)
        with torch.no_grad():
            module(torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu"))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return int(total[0])


def count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))
