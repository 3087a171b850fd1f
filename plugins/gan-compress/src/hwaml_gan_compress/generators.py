"""Generators of GAN Compression: the ResNet teacher, the mobile student and its
once-for-all super-generator.

All three share one top-level layout (``self.model``, an ``nn.Sequential``), so
a layer name such as ``model.9`` means the same place in each::

    0 pad  1 conv7x7 (stem)  2 norm  3 relu
    4 conv3x3/2 (down 1)  5 norm  6 relu
    7 conv3x3/2 (down 2)  8 norm  9 relu          <- end of downsampling
    10 .. 9+n residual blocks                      <- model.12/15/18 after blocks 3/6/9
    convT3x3/2 (up 1) norm relu  convT3x3/2 (up 2) norm relu  pad conv7x7 tanh

The teacher (pix2pix/CycleGAN ``resnet_9blocks``) has two 3x3 convolutions per
block; the mobile student replaces each by a depthwise-separable convolution
(depthwise 3x3, instance norm, pointwise 1x1), and its block has a hidden width
of its own. A sub-generator is the 8-number channel configuration of the paper
(:class:`ChannelConfig`), in units of ``ngf``: ``stem``, ``down1`` (x2),
``down2`` (x4, also the width of the residual trunk, shared by every block
because of the skip connections), ``blocks1``/``blocks2``/``blocks3`` (x4, the
hidden width of blocks 1-3, 4-6 and 7-9), ``up1`` (x2) and ``up2``. The super
generator holds the widest weights; a sub-generator uses the first ``k``
channels of every weight (weight sharing), and :meth:`SuperMobileResnetGenerator.extract`
copies them into a plain :class:`MobileResnetGenerator`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CHANNEL_KEYS",
    "CHANNEL_SETS",
    "ChannelConfig",
    "DEFAULT_DISTILL_LAYERS",
    "InstanceNorm",
    "ResnetGenerator",
    "MobileResnetGenerator",
    "SuperMobileResnetGenerator",
    "channel_choices",
    "count_config_macs",
    "init_weights",
]

#: the 8 numbers of a sub-generator, in the paper's order
CHANNEL_KEYS = ("stem", "down1", "down2", "blocks1", "blocks2", "blocks3", "up1", "up2")
#: width multiplier of each number (a config value times this is the layer's channel count)
CHANNEL_MULT = {"stem": 1, "down1": 2, "down2": 4, "blocks1": 4, "blocks2": 4, "blocks3": 4, "up1": 2, "up2": 1}

#: the published choice sets (mit-han-lab/gan-compression, configs/resnet_configs.py), for student ngf 64 / 48 / 32
CHANNEL_SETS: Dict[str, List[List[int]]] = {
    "channels-64-pix2pix": [[64, 56, 48, 32, 24, 16]] * 8,
    "channels-64-cycleGAN": [[64, 48, 32, 24, 16]] * 8,
    "channels-48": [[48, 32], [48, 32], [48, 40, 32], [48, 40, 32], [48, 40, 32], [48, 40, 32], [48, 32, 24, 16], [48, 32, 24, 16]],
    "channels-32": [[32, 24, 16]] * 8,
    # the example: every multiple of 8 from 64 down to 16
    "channels-64-uniform": [[64, 56, 48, 40, 32, 24, 16]] * 8,
}

#: distilled layers of the ResNet teacher and the mobile student (after downsampling, after blocks 3, 6, 9)
DEFAULT_DISTILL_LAYERS = ("model.9", "model.12", "model.15", "model.18")


def channel_choices(spec: Any, ngf: int) -> List[List[int]]:
    """Choice lists (one per :data:`CHANNEL_KEYS` entry) from a published set's
    name, ``"scaled:<name>"`` (the set rescaled to ``ngf``: each choice times
    ``ngf / largest``, at least 1) or an explicit list of 8 lists."""
    if isinstance(spec, str):
        scaled = spec.startswith("scaled:")
        name = spec.split(":", 1)[1] if scaled else spec
        if name not in CHANNEL_SETS:
            raise ValueError(f"channel set {name!r} is not one of {sorted(CHANNEL_SETS)} (or give 8 lists of ints)")
        sets = CHANNEL_SETS[name]
        if scaled:
            top = max(max(c) for c in sets)
            sets = [sorted({max(1, round(c * ngf / top)) for c in choice}, reverse=True) for choice in sets]
    else:
        sets = [list(c) for c in spec]
    if len(sets) != len(CHANNEL_KEYS):
        raise ValueError(f"channel choices: {len(sets)} lists given, need {len(CHANNEL_KEYS)} ({', '.join(CHANNEL_KEYS)})")
    out = []
    for key, choice in zip(CHANNEL_KEYS, sets):
        choice = [int(c) for c in choice]
        if not choice or min(choice) < 1:
            raise ValueError(f"channel choices for {key}: {choice} must be a non-empty list of positive ints")
        if max(choice) > ngf:
            raise ValueError(f"channel choices for {key}: {max(choice)} exceeds the super generator's ngf={ngf}")
        out.append(sorted(set(choice), reverse=True))
    return out


@dataclass(frozen=True)
class ChannelConfig:
    """One sub-generator: the paper's 8 numbers (in units of ngf, see the module doc)."""

    stem: int
    down1: int
    down2: int
    blocks1: int
    blocks2: int
    blocks3: int
    up1: int
    up2: int

    @classmethod
    def from_any(cls, value: Any) -> "ChannelConfig":
        """From a mapping (a candidate's config), a list of 8 ints or a config string ``"16_16_32_16_32_32_16_16"``."""
        if isinstance(value, ChannelConfig):
            return value
        if isinstance(value, str):
            value = [int(v) for v in value.split("_")]
        if isinstance(value, Mapping):
            missing = [k for k in CHANNEL_KEYS if k not in value]
            extra = [k for k in value if k not in CHANNEL_KEYS]
            if missing or extra:
                raise ValueError(f"channel config {dict(value)}: missing {missing}, unknown {extra} (keys: {', '.join(CHANNEL_KEYS)})")
            return cls(**{k: int(value[k]) for k in CHANNEL_KEYS})
        value = list(value)
        if len(value) != len(CHANNEL_KEYS):
            raise ValueError(f"channel config {value}: need {len(CHANNEL_KEYS)} numbers ({', '.join(CHANNEL_KEYS)})")
        return cls(*[int(v) for v in value])

    @classmethod
    def uniform(cls, c: int) -> "ChannelConfig":
        return cls(*([int(c)] * len(CHANNEL_KEYS)))

    def to_list(self) -> List[int]:
        return [getattr(self, k) for k in CHANNEL_KEYS]

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)

    def to_str(self) -> str:
        """The reference repository's ``--config_str`` form."""
        return "_".join(str(v) for v in self.to_list())

    def widths(self) -> Dict[str, int]:
        """Channel counts of the layers (config value times its multiplier)."""
        return {k: getattr(self, k) * CHANNEL_MULT[k] for k in CHANNEL_KEYS}

    def check_within(self, choices: Sequence[Sequence[int]]) -> None:
        for key, value, allowed in zip(CHANNEL_KEYS, self.to_list(), choices):
            if value not in allowed:
                raise ValueError(f"channel config {self.to_str()}: {key}={value} is not among the choices {list(allowed)}")


class InstanceNorm(nn.Module):
    """Instance normalisation without affine parameters (pix2pix's ``norm='instance'``)
    for any number of channels: the super generator feeds it varying widths."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=self.eps)


def _pad(kind: str, p: int) -> nn.Module:
    if kind == "reflect":
        return nn.ReflectionPad2d(p)
    if kind == "replicate":
        return nn.ReplicationPad2d(p)
    raise ValueError(f"padding_type {kind!r} is not one of reflect, replicate")


def init_weights(net: nn.Module, gain: float = 0.02, seed: Optional[int] = None) -> nn.Module:
    """pix2pix's ``init_type='normal'``: conv weights N(0, gain), biases 0."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * gain)
                if m.bias is not None:
                    m.bias.zero_()
    return net


# -- teacher -------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """pix2pix residual block: pad, conv3x3, norm, relu, [dropout], pad, conv3x3, norm; plus the input."""

    def __init__(self, dim: int, padding_type: str = "reflect", dropout: float = 0.0):
        super().__init__()
        layers: List[nn.Module] = [_pad(padding_type, 1), nn.Conv2d(dim, dim, 3, bias=True), InstanceNorm(), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [_pad(padding_type, 1), nn.Conv2d(dim, dim, 3, bias=True), InstanceNorm()]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The pix2pix / CycleGAN ResNet generator (``resnet_9blocks`` at ngf 64) with instance norm.

    :param input_nc: input image channels.
    :param output_nc: output image channels.
    :param ngf: filters of the stem (64 in the paper; the downsampling doubles it twice).
    :param n_blocks: residual blocks (9 in the paper).
    """

    def __init__(self, input_nc: int = 1, output_nc: int = 1, ngf: int = 64, n_blocks: int = 9, dropout: float = 0.0, padding_type: str = "reflect"):
        super().__init__()
        if n_blocks < 0 or ngf < 1:
            raise ValueError(f"ResnetGenerator: ngf={ngf}, n_blocks={n_blocks} must be positive")
        self.input_nc, self.output_nc, self.ngf, self.n_blocks = input_nc, output_nc, ngf, n_blocks
        layers: List[nn.Module] = [_pad(padding_type, 3), nn.Conv2d(input_nc, ngf, 7, bias=True), InstanceNorm(), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True), InstanceNorm(), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, padding_type, dropout) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True), InstanceNorm(), nn.ReLU(True)]
        layers += [_pad(padding_type, 3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# -- mobile student --------------------------------------------------------------


class SeparableConv2d(nn.Module):
    """Depthwise kxk convolution, instance norm, pointwise 1x1 convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, groups=in_channels, bias=True),
            InstanceNorm(),
            nn.Conv2d(in_channels, out_channels, 1, bias=True),
        )

    def forward(self, x: torch.Tensor, out_channels: Optional[int] = None) -> torch.Tensor:
        if out_channels is None:
            return self.conv(x)
        return _separable_first(self, x, out_channels)  # inside the super generator


class MobileResnetBlock(nn.Module):
    """Residual block with two depthwise-separable convolutions: trunk ``dim`` -> ``hidden`` -> ``dim``."""

    def __init__(self, dim: int, hidden: int, padding_type: str = "reflect", dropout: float = 0.0):
        super().__init__()
        layers: List[nn.Module] = [_pad(padding_type, 1), SeparableConv2d(dim, hidden), InstanceNorm(), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [_pad(padding_type, 1), SeparableConv2d(hidden, dim), InstanceNorm()]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, hidden: Optional[int] = None) -> torch.Tensor:
        if hidden is None:
            return x + self.conv_block(x)
        # inside the super generator: the first ``hidden`` channels of the
        # hidden layer, back to the input's (the trunk's) width
        y, seps = x, 0
        for layer in self.conv_block:
            if isinstance(layer, SeparableConv2d):
                y = layer(y, hidden if seps == 0 else x.shape[1])
                seps += 1
            else:
                y = layer(y)
        return x + y


def _block_group(i: int, n_blocks: int) -> int:
    """Which of the three hidden-width groups block ``i`` belongs to (n//3, n//3, the rest)."""
    n1 = n_blocks // 3
    return 0 if i < n1 else (1 if i < 2 * n1 else 2)


class MobileResnetGenerator(nn.Module):
    """A plain (static) mobile generator with the widths of one :class:`ChannelConfig`.

    ``ngf_config`` is in units of ngf (see the module doc); what GAN Compression
    calls a sub-generator, and what the search, MACs counting and deploy see.
    """

    def __init__(self, config: Any, input_nc: int = 1, output_nc: int = 1, n_blocks: int = 9, dropout: float = 0.0, padding_type: str = "reflect"):
        super().__init__()
        self.config = ChannelConfig.from_any(config)
        self.input_nc, self.output_nc, self.n_blocks = input_nc, output_nc, n_blocks
        w = self.config.widths()
        hidden = [w["blocks1"], w["blocks2"], w["blocks3"]]
        layers: List[nn.Module] = [_pad(padding_type, 3), nn.Conv2d(input_nc, w["stem"], 7, bias=True), InstanceNorm(), nn.ReLU(True)]
        layers += [nn.Conv2d(w["stem"], w["down1"], 3, stride=2, padding=1, bias=True), InstanceNorm(), nn.ReLU(True)]
        layers += [nn.Conv2d(w["down1"], w["down2"], 3, stride=2, padding=1, bias=True), InstanceNorm(), nn.ReLU(True)]
        layers += [MobileResnetBlock(w["down2"], hidden[_block_group(i, n_blocks)], padding_type, dropout) for i in range(n_blocks)]
        layers += [nn.ConvTranspose2d(w["down2"], w["up1"], 3, stride=2, padding=1, output_padding=1, bias=True), InstanceNorm(), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(w["up1"], w["up2"], 3, stride=2, padding=1, output_padding=1, bias=True), InstanceNorm(), nn.ReLU(True)]
        layers += [_pad(padding_type, 3), nn.Conv2d(w["up2"], output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.clamp(-1, 1))


def count_config_macs(config: Any, input_nc: int, output_nc: int, n_blocks: int, height: int, width: int) -> int:
    """Multiply-accumulates of one sub-generator for one ``height x width`` image,
    from its configuration alone (convolutions and transposed convolutions; what
    :func:`hwaml_gan_compress.macs.count_module_macs` counts on the module)."""
    if height % 4 or width % 4:
        raise ValueError(f"image size {height}x{width}: the ResNet generators need sides divisible by 4 (two stride-2 stages)")
    w = ChannelConfig.from_any(config).widths()
    full, half, quarter = height * width, height * width // 4, height * width // 16
    hidden = [w["blocks1"], w["blocks2"], w["blocks3"]]
    macs = 49 * input_nc * w["stem"] * full
    macs += 9 * w["stem"] * w["down1"] * half
    macs += 9 * w["down1"] * w["down2"] * quarter
    trunk = w["down2"]
    for i in range(n_blocks):
        hid = hidden[_block_group(i, n_blocks)]
        macs += (9 * trunk + trunk * hid) * quarter  # depthwise on the trunk, pointwise to hidden
        macs += (9 * hid + hid * trunk) * quarter  # depthwise on hidden, pointwise back
    macs += 9 * trunk * w["up1"] * half  # transposed convs: per output value, C_in * k * k (torchprofile's count)
    macs += 9 * w["up1"] * w["up2"] * full
    macs += 49 * w["up2"] * output_nc * full
    return int(macs)


# -- once-for-all super generator ------------------------------------------------


def _conv_first(conv: nn.Conv2d, x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """``conv`` restricted to the input's channels and its first ``out_channels`` filters."""
    cin = x.shape[1]
    weight = conv.weight[:out_channels, :cin]
    bias = conv.bias[:out_channels] if conv.bias is not None else None
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, 1)


def _deconv_first(conv: nn.ConvTranspose2d, x: torch.Tensor, out_channels: int) -> torch.Tensor:
    cin = x.shape[1]
    weight = conv.weight[:cin, :out_channels]
    bias = conv.bias[:out_channels] if conv.bias is not None else None
    return F.conv_transpose2d(x, weight, bias, conv.stride, conv.padding, conv.output_padding, 1, conv.dilation)


def _separable_first(sep: SeparableConv2d, x: torch.Tensor, out_channels: int) -> torch.Tensor:
    dw, norm, pw = sep.conv
    cin = x.shape[1]
    x = F.conv2d(x, dw.weight[:cin], dw.bias[:cin] if dw.bias is not None else None, dw.stride, dw.padding, dw.dilation, cin)
    x = norm(x)
    return F.conv2d(x, pw.weight[:out_channels, :cin], pw.bias[:out_channels] if pw.bias is not None else None)


class SuperMobileResnetGenerator(nn.Module):
    """The once-for-all mobile generator: every sub-generator of ``choices`` in one set of weights.

    :param ngf: the widest value of each of the 8 numbers (the student's ngf).
    :param choices: one list of allowed values per :data:`CHANNEL_KEYS` entry
        (see :func:`channel_choices`); the widest config must be ``ngf`` everywhere.

    :meth:`set_config` selects the active sub-generator; ``forward`` then runs
    it on the first channels of every weight. :meth:`extract` copies them into a
    static :class:`MobileResnetGenerator` that computes the same function.
    """

    def __init__(self, ngf: int, choices: Sequence[Sequence[int]], input_nc: int = 1, output_nc: int = 1, n_blocks: int = 9, dropout: float = 0.0, padding_type: str = "reflect"):
        super().__init__()
        self.ngf, self.input_nc, self.output_nc, self.n_blocks = ngf, input_nc, output_nc, n_blocks
        self.dropout, self.padding_type = dropout, padding_type
        self.choices = channel_choices(choices, ngf)
        self.template = MobileResnetGenerator(ChannelConfig.uniform(ngf), input_nc, output_nc, n_blocks, dropout, padding_type)
        self.model = self.template.model  # the widest weights, with the shared layer names
        del self.template
        self.active = ChannelConfig.uniform(ngf)

    def largest(self) -> ChannelConfig:
        return ChannelConfig(*[c[0] for c in self.choices])

    def smallest(self) -> ChannelConfig:
        return ChannelConfig(*[c[-1] for c in self.choices])

    def sample(self, gen: torch.Generator) -> ChannelConfig:
        """A sub-generator drawn uniformly: each number independently from its choices."""
        return ChannelConfig(*[c[int(torch.randint(len(c), (1,), generator=gen))] for c in self.choices])

    def set_config(self, config: Any) -> ChannelConfig:
        cfg = ChannelConfig.from_any(config)
        cfg.check_within(self.choices)
        self.active = cfg
        return cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.active.widths()
        hidden = [w["blocks1"], w["blocks2"], w["blocks3"]]
        m = self.model
        x = x.clamp(-1, 1)
        x = m[0](x)
        x = m[3](m[2](_conv_first(m[1], x, w["stem"])))
        x = m[6](m[5](_conv_first(m[4], x, w["down1"])))
        x = m[9](m[8](_conv_first(m[7], x, w["down2"])))
        for i in range(self.n_blocks):
            x = m[10 + i](x, hidden[_block_group(i, self.n_blocks)])
        j = 10 + self.n_blocks
        x = m[j + 2](m[j + 1](_deconv_first(m[j], x, w["up1"])))
        x = m[j + 5](m[j + 4](_deconv_first(m[j + 3], x, w["up2"])))
        x = m[j + 6](x)
        x = _conv_first(m[j + 7], x, self.output_nc)
        return m[j + 8](x)

    def extract(self, config: Any = None) -> MobileResnetGenerator:
        """The static sub-generator of ``config`` (default: the active one) with copies of its shared weights."""
        cfg = self.set_config(config) if config is not None else self.active
        sub = MobileResnetGenerator(cfg, self.input_nc, self.output_nc, self.n_blocks, self.dropout, self.padding_type)
        src = dict(self.model.named_modules())
        with torch.no_grad():
            for name, mod in sub.model.named_modules():
                if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                    big = src[name]
                    # conv: [out, in/groups, k, k]; transposed conv: [in, out, k, k]; first k of both
                    mod.weight.copy_(big.weight[: mod.weight.shape[0], : mod.weight.shape[1]])
                    if mod.bias is not None:
                        n = mod.bias.shape[0]
                        mod.bias.copy_(big.bias[:n])
        return sub.train(self.training)
