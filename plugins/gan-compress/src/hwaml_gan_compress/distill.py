"""Discriminator, GAN losses and intermediate-feature distillation.

Distillation works on any pair of generators: the distilled layers are named
(``model.9`` ...) in the configuration and tapped with forward hooks, so a
third-party teacher only has to name the modules whose outputs the student
should match. Each student feature map goes through a learnable 1x1
convolution to the teacher's channel count; the loss is the MSE per layer,
summed over the layers. In the once-for-all generator a sub-generator's
feature maps are narrower than the widest: the adapter then uses its first
input channels (the same weight sharing as the generator's own convolutions).
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .generators import InstanceNorm

__all__ = ["GANLoss", "GAN_MODES", "FeatureTaps", "Distiller", "NLayerDiscriminator", "ImagePool"]

GAN_MODES = ("hinge", "lsgan", "vanilla")


class NLayerDiscriminator(nn.Module):
    """pix2pix's PatchGAN: ``n_layers`` stride-2 4x4 convolutions, then two stride-1 ones (instance norm)."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: List[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True), InstanceNorm(), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True), InstanceNorm(), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GANLoss:
    """``hinge`` (GAN Compression's pix2pix), ``lsgan`` (CycleGAN) or ``vanilla`` (BCE)."""

    def __init__(self, mode: str):
        if mode not in GAN_MODES:
            raise ValueError(f"gan_mode {mode!r} is not one of {GAN_MODES}")
        self.mode = mode

    def __call__(self, pred: torch.Tensor, target_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        if self.mode == "lsgan":
            return F.mse_loss(pred, torch.full_like(pred, 1.0 if target_real else 0.0))
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, 1.0 if target_real else 0.0))
        if for_discriminator:
            return F.relu(1 - pred).mean() if target_real else F.relu(1 + pred).mean()
        if not target_real:
            raise ValueError("the hinge generator loss is defined for real targets only")
        return -pred.mean()


class FeatureTaps:
    """Forward hooks that keep the outputs of named modules of ``model``."""

    def __init__(self, model: nn.Module, layers: Sequence[str], who: str):
        modules = dict(model.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            names = [n for n in modules if n]
            raise ValueError(f"{who}: distilled layers {missing} are not modules of {type(model).__name__} (some names it has: {names[:12]} ...)")
        self.layers = list(layers)
        self.outputs: Dict[str, torch.Tensor] = {}
        self._handles = [modules[name].register_forward_hook(self._keeper(name)) for name in self.layers]

    def _keeper(self, name: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"distilled layer {name} returns {type(output).__name__}, not a tensor")
            self.outputs[name] = output

        return hook

    def take(self) -> List[torch.Tensor]:
        missing = [n for n in self.layers if n not in self.outputs]
        if missing:
            raise RuntimeError(f"distilled layers {missing} did not run in the last forward pass")
        out = [self.outputs[n] for n in self.layers]
        self.outputs = {}
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def probe_channels(model: nn.Module, layers: Sequence[str], input_shape: Tuple[int, ...], who: str) -> List[Tuple[int, ...]]:
    """Output shapes (C, H, W) of the named layers for one input of ``input_shape``."""
    taps = FeatureTaps(model, layers, who)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
        return [tuple(t.shape[1:]) for t in taps.take()]
    finally:
        taps.remove()
        model.train(was)


class Distiller(nn.Module):
    """Learnable 1x1 convolutions from the student's distilled features to the teacher's.

    :param student_channels: channels of each distilled student layer (the widest, for a super generator).
    :param teacher_channels: channels of the matching teacher layer.
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int]):
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(f"distillation: {len(student_channels)} student layers but {len(teacher_channels)} teacher layers")
        self.adapters = nn.ModuleList(nn.Conv2d(int(s), int(t), 1) for s, t in zip(student_channels, teacher_channels))
        for a in self.adapters:
            nn.init.normal_(a.weight, 0.0, 0.02)
            nn.init.zeros_(a.bias)

    def loss(self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for i, (adapter, fs, ft) in enumerate(zip(self.adapters, student, teacher)):
            if fs.shape[-2:] != ft.shape[-2:]:
                raise ValueError(f"distilled layer pair {i}: student features {tuple(fs.shape[1:])} and teacher features {tuple(ft.shape[1:])} differ in size")
            cin = fs.shape[1]
            mapped = F.conv2d(fs, adapter.weight[:, :cin], adapter.bias)
            total = total + F.mse_loss(mapped, ft.detach())
        return total

    def narrowed(self, student_channels: Sequence[int]) -> "Distiller":
        """A copy whose adapters take the first ``student_channels`` inputs (for fine-tuning a sub-generator)."""
        out = Distiller(student_channels, [a.out_channels for a in self.adapters])
        with torch.no_grad():
            for small, big, c in zip(out.adapters, self.adapters, student_channels):
                small.weight.copy_(big.weight[:, :c])
                small.bias.copy_(big.bias)
        return out


class ImagePool:
    """CycleGAN's history of generated images (size 50): half the time the
    discriminator sees an older fake instead of the newest."""

    def __init__(self, size: int, gen: torch.Generator):
        self.size, self.gen, self.images = size, gen, []  # type: ignore[var-annotated]

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif float(torch.rand(1, generator=self.gen)) > 0.5:
                i = int(torch.randint(self.size, (1,), generator=self.gen))
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.cat(out)
