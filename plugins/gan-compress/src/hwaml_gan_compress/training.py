"""The training stages of GAN Compression, in the paper's order.

1. :func:`train_teacher`: the full generator. Paired data: pix2pix (GAN + 100 x
   L1, conditional PatchGAN). Unpaired data: CycleGAN (two generators, two
   PatchGANs, LSGAN, cycle loss 10, identity loss 0.5 x 10, image pools of 50).
2. :func:`train_supernet`: the once-for-all mobile generator distilled from the
   teacher. Each step draws one sub-generator uniformly from the channel choices
   and trains the shared weights with
   ``lambda_gan * GAN + lambda_recon * L1 + lambda_distill * distill``
   (paired: 1 / 100 / 1 with the real B as L1 target; unpaired: 1 / 10 / 0.01
   with the teacher's output as target and no cycle loss), against a
   discriminator initialised from the teacher's; the largest and the smallest
   sub-generator are scored after each epoch.
3. :func:`finetune`: the chosen sub-generator alone, same losses (optional).

Adam (lr 2e-4, beta1 0.5) for generators, adapters and discriminators; the
learning rate is constant for ``epochs`` and decays linearly to zero over
``decay_epochs`` more (pix2pix's ``linear`` policy).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hwaml.progress import progress

from .data import TranslationData
from .distill import Distiller, FeatureTaps, GANLoss, ImagePool, NLayerDiscriminator, probe_channels
from .generators import DEFAULT_DISTILL_LAYERS, MobileResnetGenerator, ResnetGenerator, SuperMobileResnetGenerator, init_weights

log = logging.getLogger("hwaml.gan_compress")

__all__ = ["TeacherConfig", "StudentConfig", "TrainingConfig", "build_teacher", "train_teacher", "train_supernet", "finetune", "generate", "TeacherState", "SupernetState"]


@dataclass(frozen=True)
class TeacherConfig:
    """The generator being compressed (``teacher:``).

    :param arch: ``resnet`` (pix2pix/CycleGAN ResNet generator) or the dotted
        path of any ``nn.Module`` class, constructed as
        ``cls(input_nc=..., output_nc=..., **kwargs)``: it must map an image
        batch to an image batch of the same size in [-1, 1].
    :param ngf: ``resnet``: stem filters (64 in the paper).
    :param n_blocks: ``resnet``: residual blocks (9 in the paper).
    :param kwargs: a custom class's other constructor arguments.
    :param layers: names of the teacher modules whose outputs are distilled
        (default: after downsampling and after blocks 3, 6, 9 of the ResNet).
    """

    arch: str = "resnet"
    ngf: int = 64
    n_blocks: int = 9
    dropout: float = 0.0
    kwargs: Dict[str, Any] = field(default_factory=dict)
    layers: List[str] = field(default_factory=lambda: list(DEFAULT_DISTILL_LAYERS))


@dataclass(frozen=True)
class StudentConfig:
    """The once-for-all mobile generator (``student:``).

    :param ngf: the widest value of each of the 8 channel numbers (64 in the paper).
    :param channels: the choice sets: a published name (``channels-64-pix2pix``,
        ``channels-64-cycleGAN``, ``channels-48``, ``channels-32``,
        ``channels-64-uniform``), ``scaled:<name>`` for that set rescaled to
        ``ngf``, or 8 explicit lists.
    :param n_blocks: residual blocks (9).
    :param layers: the student modules matched to ``teacher.layers``, in order.
    :param init: a once-for-all checkpoint of the same shape to continue training from
        (generator, adapters and discriminator; the reference's ``--restore_*_path``),
        so a long schedule can run as several shorter jobs.
    :param seed: the once-for-all training's seed (initial weights, sampled
        sub-generators, batch order); ``None``: the evaluator's ``seed``, which
        also seeds the teacher. Another value retrains only the once-for-all
        generator (the spread over training seeds, with the teacher fixed).
    """

    ngf: int = 64
    channels: Any = "channels-64-pix2pix"
    n_blocks: int = 9
    dropout: float = 0.0
    layers: List[str] = field(default_factory=lambda: list(DEFAULT_DISTILL_LAYERS))
    init: Optional[str] = None
    seed: Optional[int] = None


@dataclass(frozen=True)
class TrainingConfig:
    """Schedules and loss weights (``training:``); ``None`` weights take the published defaults
    of the task (paired: GAN 1, L1 100, distill 1, hinge; unpaired: 1, 10, 0.01, LSGAN).

    ``cache_teacher_mb``: the frozen teacher's outputs and distilled features on the
    training inputs are computed once, before student training, when they take at most
    this many MB (the data is not augmented, so they are the same every epoch); else,
    or with 0, the teacher runs at every step. Same losses either way, fewer MACs per step.
    """

    teacher_epochs: int = 10
    teacher_decay_epochs: int = 10
    supernet_epochs: int = 10
    supernet_decay_epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    gan_mode: Optional[str] = None
    lambda_gan: float = 1.0
    lambda_recon: Optional[float] = None
    lambda_distill: Optional[float] = None
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    ndf: int = 64
    n_layers_D: int = 3
    pool_size: int = 50
    cache_teacher_mb: int = 1024

    def resolved(self, paired: bool) -> Dict[str, Any]:
        return {
            "gan_mode": self.gan_mode or ("hinge" if paired else "lsgan"),
            "lambda_recon": self.lambda_recon if self.lambda_recon is not None else (100.0 if paired else 10.0),
            "lambda_distill": self.lambda_distill if self.lambda_distill is not None else (1.0 if paired else 0.01),
        }


def _locate(path: str) -> Any:
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"teacher.arch: {path!r} is neither 'resnet' nor a dotted path module.Class")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"teacher.arch: cannot import {path!r} ({exc})") from exc


def build_teacher(cfg: TeacherConfig, input_nc: int, output_nc: int) -> nn.Module:
    if cfg.arch == "resnet":
        return ResnetGenerator(input_nc, output_nc, cfg.ngf, cfg.n_blocks, cfg.dropout)
    cls = _locate(cfg.arch)
    params = inspect.signature(cls).parameters
    kwargs = dict(cfg.kwargs)
    for key, value in (("input_nc", input_nc), ("output_nc", output_nc)):
        if key in params:
            kwargs.setdefault(key, value)
    model = cls(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"teacher.arch {cfg.arch} built a {type(model).__name__}, not a torch nn.Module")
    return model


def build_student(cfg: StudentConfig, input_nc: int, output_nc: int) -> SuperMobileResnetGenerator:
    return SuperMobileResnetGenerator(cfg.ngf, cfg.channels, input_nc, output_nc, cfg.n_blocks, cfg.dropout)


def _linear_decay(epochs: int, decay_epochs: int) -> Callable[[int], float]:
    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(decay_epochs + 1)

    return factor


def _adam(params: Any, cfg: TrainingConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999))


def _batches(n: int, batch_size: int, gen: torch.Generator) -> List[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)] or [order]


def generate(model: nn.Module, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    model.train(was)
    return out


def _check_finite(loss: torch.Tensor, what: str, epoch: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what}: loss became {float(loss)} in epoch {epoch} (lower training.lr?)")


# -- 1. teacher ---------------------------------------------------------------------


@dataclass
class TeacherState:
    """The trained teacher: ``G`` (A -> B) and the discriminator of domain B; CycleGAN's reverse pair too."""

    G: nn.Module
    D: nn.Module
    G_reverse: Optional[nn.Module] = None
    D_reverse: Optional[nn.Module] = None
    history: List[Dict[str, float]] = field(default_factory=list)


def _discriminator(input_nc: int, cfg: TrainingConfig, seed: int) -> NLayerDiscriminator:
    return init_weights(NLayerDiscriminator(input_nc, cfg.ndf, cfg.n_layers_D), seed=seed)  # type: ignore[return-value]


def train_teacher(
    data: TranslationData,
    teacher: TeacherConfig,
    cfg: TrainingConfig,
    seed: int = 0,
    progress_bar: bool = True,
    score: Optional[Callable[[nn.Module], float]] = None,
) -> TeacherState:
    """Train the full generator with pix2pix (paired) or CycleGAN (unpaired) losses."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opts = cfg.resolved(data.paired)
    gan = GANLoss(opts["gan_mode"])
    inc, outc = data.input_nc, data.output_nc
    G = init_weights(build_teacher(teacher, inc, outc), seed=seed)
    epochs = cfg.teacher_epochs + cfg.teacher_decay_epochs
    history: List[Dict[str, float]] = []
    if data.paired:
        D = _discriminator(inc + outc, cfg, seed + 1)
        opt_g, opt_d = _adam(G.parameters(), cfg), _adam(D.parameters(), cfg)
        scheds = [torch.optim.lr_scheduler.LambdaLR(o, _linear_decay(cfg.teacher_epochs, cfg.teacher_decay_epochs)) for o in (opt_g, opt_d)]
        for epoch in progress(range(epochs), total=epochs, desc="teacher (pix2pix)", enabled=progress_bar):
            G.train()
            sums = {"G_gan": 0.0, "G_L1": 0.0, "D": 0.0}
            batches = _batches(len(data.train_a), cfg.batch_size, gen)
            for idx in batches:
                a, b = data.train_a[idx], data.train_b[idx]
                fake = G(a)
                opt_d.zero_grad()
                loss_d = 0.5 * (gan(D(torch.cat([a, fake.detach()], 1)), False) + gan(D(torch.cat([a, b], 1)), True))
                loss_d.backward()
                opt_d.step()
                opt_g.zero_grad()
                loss_gan = gan(D(torch.cat([a, fake], 1)), True, for_discriminator=False)
                loss_l1 = F.l1_loss(fake, b)
                loss_g = cfg.lambda_gan * loss_gan + opts["lambda_recon"] * loss_l1
                _check_finite(loss_g, "teacher", epoch)
                loss_g.backward()
                opt_g.step()
                sums["G_gan"] += loss_gan.item()
                sums["G_L1"] += loss_l1.item()
                sums["D"] += loss_d.item()
            for s in scheds:
                s.step()
            row = {"epoch": epoch, **{k: v / len(batches) for k, v in sums.items()}}
            if score is not None:
                row["fid"] = score(G)
            history.append(row)
        return TeacherState(G.eval(), D.eval(), history=history)

    # CycleGAN: G maps A -> B and is judged by D (domain B); G_reverse maps B -> A, judged by D_reverse
    if inc != outc and cfg.lambda_identity > 0:
        raise ValueError(f"CycleGAN identity loss needs input_nc == output_nc (got {inc}, {outc}); set training.lambda_identity=0")
    G_rev = init_weights(build_teacher(teacher, outc, inc), seed=seed + 2)
    D = _discriminator(outc, cfg, seed + 1)
    D_rev = _discriminator(inc, cfg, seed + 3)
    opt_g = _adam(itertools.chain(G.parameters(), G_rev.parameters()), cfg)
    opt_d = _adam(itertools.chain(D.parameters(), D_rev.parameters()), cfg)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, _linear_decay(cfg.teacher_epochs, cfg.teacher_decay_epochs)) for o in (opt_g, opt_d)]
    pool_b, pool_a = ImagePool(cfg.pool_size, gen), ImagePool(cfg.pool_size, gen)
    n = min(len(data.train_a), len(data.train_b))
    for epoch in progress(range(epochs), total=epochs, desc="teacher (CycleGAN)", enabled=progress_bar):
        G.train()
        G_rev.train()
        sums = {"G_gan": 0.0, "cycle": 0.0, "D": 0.0}
        batches = _batches(n, cfg.batch_size, gen)
        order_b = torch.randperm(len(data.train_b), generator=gen)  # unaligned: B images drawn independently
        for bi, idx in enumerate(batches):
            a = data.train_a[idx]
            b = data.train_b[order_b[(bi * cfg.batch_size + torch.arange(len(idx))) % len(order_b)]]
            fake_b, fake_a = G(a), G_rev(b)
            rec_a, rec_b = G_rev(fake_b), G(fake_a)
            for p in itertools.chain(D.parameters(), D_rev.parameters()):
                p.requires_grad_(False)
            opt_g.zero_grad()
            loss_gan = gan(D(fake_b), True, for_discriminator=False) + gan(D_rev(fake_a), True, for_discriminator=False)
            loss_cycle = cfg.lambda_cycle * (F.l1_loss(rec_a, a) + F.l1_loss(rec_b, b))
            loss_idt = torch.zeros(())
            if cfg.lambda_identity > 0:
                loss_idt = cfg.lambda_cycle * cfg.lambda_identity * (F.l1_loss(G(b), b) + F.l1_loss(G_rev(a), a))
            loss_g = cfg.lambda_gan * loss_gan + loss_cycle + loss_idt
            _check_finite(loss_g, "teacher (CycleGAN)", epoch)
            loss_g.backward()
            opt_g.step()
            for p in itertools.chain(D.parameters(), D_rev.parameters()):
                p.requires_grad_(True)
            opt_d.zero_grad()
            pb, pa = pool_b.query(fake_b), pool_a.query(fake_a)
            loss_d = 0.5 * (gan(D(b), True) + gan(D(pb), False)) + 0.5 * (gan(D_rev(a), True) + gan(D_rev(pa), False))
            loss_d.backward()
            opt_d.step()
            sums["G_gan"] += loss_gan.item()
            sums["cycle"] += loss_cycle.item()
            sums["D"] += loss_d.item()
        for s in scheds:
            s.step()
        row = {"epoch": epoch, **{k: v / len(batches) for k, v in sums.items()}}
        if score is not None:
            row["fid"] = score(G)
        history.append(row)
    return TeacherState(G.eval(), D.eval(), G_rev.eval(), D_rev.eval(), history)


# -- 2. once-for-all distillation --------------------------------------------------------


@dataclass
class SupernetState:
    """The trained once-for-all generator, its distillation adapters and discriminator."""

    supernet: SuperMobileResnetGenerator
    distiller: Distiller
    D: nn.Module
    history: List[Dict[str, Any]] = field(default_factory=list)


def _distill_setup(teacher: nn.Module, student: nn.Module, tcfg: TeacherConfig, scfg: StudentConfig, shape: Tuple[int, ...]) -> Tuple[List[int], List[int]]:
    if len(tcfg.layers) != len(scfg.layers):
        raise ValueError(f"teacher.layers has {len(tcfg.layers)} names but student.layers {len(scfg.layers)}: they are matched in order")
    t_shapes = probe_channels(teacher, tcfg.layers, shape, "teacher.layers")
    s_shapes = probe_channels(student, scfg.layers, shape, "student.layers")
    for (tn, ts), (sn, ss) in zip(zip(tcfg.layers, t_shapes), zip(scfg.layers, s_shapes)):
        if ts[1:] != ss[1:]:
            raise ValueError(f"distilled layers teacher {tn} {ts} and student {sn} {ss} differ in spatial size")
    return [s[0] for s in s_shapes], [t[0] for t in t_shapes]


def _student_step(
    student: nn.Module,
    teacher: nn.Module,
    distiller: Distiller,
    D: nn.Module,
    t_taps: Optional[FeatureTaps],
    s_taps: Optional[FeatureTaps],
    a: torch.Tensor,
    b: torch.Tensor,
    paired: bool,
    gan: GANLoss,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    weights: Mapping[str, float],
    epoch: int,
    cached: Optional[Tuple[torch.Tensor, List[torch.Tensor]]] = None,
) -> Dict[str, float]:
    if cached is not None:
        t_out, t_feats = cached
    else:
        with torch.no_grad():
            t_out = teacher(a)
        t_feats = t_taps.take() if t_taps is not None else []
    fake = student(a)
    s_feats = s_taps.take() if s_taps is not None else []
    # discriminator: real B against the student's output (conditioned on A when paired)
    opt_d.zero_grad()
    if paired:
        loss_d = 0.5 * (gan(D(torch.cat([a, fake.detach()], 1)), False) + gan(D(torch.cat([a, b], 1)), True))
    else:
        loss_d = 0.5 * (gan(D(fake.detach()), False) + gan(D(b), True))
    loss_d.backward()
    opt_d.step()
    for p in D.parameters():
        p.requires_grad_(False)
    opt_g.zero_grad()
    pred = D(torch.cat([a, fake], 1)) if paired else D(fake)
    loss_gan = gan(pred, True, for_discriminator=False)
    loss_recon = F.l1_loss(fake, b if paired else t_out)
    loss_distill = distiller.loss(s_feats, t_feats) if s_feats else torch.zeros(())
    loss = weights["lambda_gan"] * loss_gan + weights["lambda_recon"] * loss_recon + weights["lambda_distill"] * loss_distill
    _check_finite(loss, "student", epoch)
    loss.backward()
    opt_g.step()
    for p in D.parameters():
        p.requires_grad_(True)
    return {"G_gan": loss_gan.item(), "G_recon": loss_recon.item(), "G_distill": loss_distill.item(), "D": loss_d.item()}


class TeacherCache:
    """The frozen teacher's output and distilled features for every training input, by index."""

    def __init__(self, out: torch.Tensor, feats: List[torch.Tensor]):
        self.out, self.feats = out, feats

    def __getitem__(self, idx: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return self.out[idx], [f[idx] for f in self.feats]

    @classmethod
    def build(cls, teacher: nn.Module, taps: Optional[FeatureTaps], inputs: torch.Tensor, limit_mb: float, batch_size: int = 100) -> Optional["TeacherCache"]:
        """``None`` when ``limit_mb`` is 0 or the cache would exceed it (sized from one image)."""
        if limit_mb <= 0 or len(inputs) == 0:
            return None
        with torch.no_grad():
            out1 = teacher(inputs[:1])
            feats1 = taps.take() if taps is not None else []
        per_image = sum(t.numel() for t in [out1, *feats1]) * 4
        if per_image * len(inputs) > limit_mb * 2**20:
            return None
        outs: List[torch.Tensor] = []
        feats: List[List[torch.Tensor]] = []
        with torch.no_grad():
            for i in range(0, len(inputs), batch_size):
                outs.append(teacher(inputs[i : i + batch_size]))
                feats.append([f.clone() for f in taps.take()] if taps is not None else [])
        return cls(torch.cat(outs), [torch.cat(col) for col in zip(*feats)] if feats and feats[0] else [])


def _b_batch(data: TranslationData, idx: torch.Tensor, order_b: torch.Tensor, bi: int, batch_size: int, paired: bool) -> torch.Tensor:
    if paired:
        return data.train_b[idx]
    return data.train_b[order_b[(bi * batch_size + torch.arange(len(idx))) % len(order_b)]]


def train_supernet(
    data: TranslationData,
    teacher_state: TeacherState,
    tcfg: TeacherConfig,
    scfg: StudentConfig,
    cfg: TrainingConfig,
    seed: int = 0,
    progress_bar: bool = True,
    score: Optional[Callable[[nn.Module], float]] = None,
    epochs: Optional[Tuple[int, int]] = None,
    init: Optional["SupernetState"] = None,
) -> SupernetState:
    """Once-for-all training: one uniformly drawn sub-generator per step, distilled from the teacher."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 11)
    opts = cfg.resolved(data.paired)
    weights = {"lambda_gan": cfg.lambda_gan, "lambda_recon": opts["lambda_recon"], "lambda_distill": opts["lambda_distill"]}
    gan = GANLoss(opts["gan_mode"])
    teacher = teacher_state.G.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = init_weights(build_student(scfg, data.input_nc, data.output_nc), seed=seed + 5)
    assert isinstance(student, SuperMobileResnetGenerator)
    student.set_config(student.largest())
    s_ch, t_ch = _distill_setup(teacher, student, tcfg, scfg, data.image_shape)
    distiller = Distiller(s_ch, t_ch)
    D = copy.deepcopy(teacher_state.D).train()  # initialised from the teacher's discriminator
    if init is not None:  # continue an earlier run
        student.load_state_dict(init.supernet.state_dict())
        distiller.load_state_dict(init.distiller.state_dict())
        D = copy.deepcopy(init.D).train()
    opt_g = _adam(itertools.chain(student.parameters(), distiller.parameters()), cfg)
    opt_d = _adam(D.parameters(), cfg)
    n_const, n_decay = epochs if epochs is not None else (cfg.supernet_epochs, cfg.supernet_decay_epochs)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, _linear_decay(n_const, n_decay)) for o in (opt_g, opt_d)]
    use_distill = weights["lambda_distill"] > 0
    t_taps = FeatureTaps(teacher, tcfg.layers, "teacher.layers") if use_distill else None
    s_taps = FeatureTaps(student, scfg.layers, "student.layers") if use_distill else None
    history: List[Dict[str, Any]] = []
    n = len(data.train_a) if data.paired else min(len(data.train_a), len(data.train_b))
    try:
        cache = TeacherCache.build(teacher, t_taps, data.train_a[:n], cfg.cache_teacher_mb)
        for epoch in progress(range(n_const + n_decay), total=n_const + n_decay, desc="once-for-all generator", enabled=progress_bar):
            student.train()
            sums: Dict[str, float] = {}
            batches = _batches(n, cfg.batch_size, gen)
            order_b = torch.randperm(len(data.train_b), generator=gen)
            for bi, idx in enumerate(batches):
                student.set_config(student.sample(gen))
                a, b = data.train_a[idx], _b_batch(data, idx, order_b, bi, cfg.batch_size, data.paired)
                losses = _student_step(student, teacher, distiller, D, t_taps, s_taps, a, b, data.paired, gan, opt_g, opt_d, weights, epoch, cache[idx] if cache is not None else None)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
            for s in scheds:
                s.step()
            row: Dict[str, Any] = {"epoch": epoch, **{k: v / len(batches) for k, v in sums.items()}}
            if score is not None:
                for which in ("largest", "smallest"):
                    cfg_ = getattr(student, which)()
                    row[f"fid_{which}"] = score(student.extract(cfg_))
            history.append(row)
    finally:
        for taps in (t_taps, s_taps):
            if taps is not None:
                taps.remove()
    student.set_config(student.largest())
    return SupernetState(student.eval(), distiller, D.eval(), history)


# -- 3. fine-tuning one sub-generator ------------------------------------------------------


def finetune(
    data: TranslationData,
    sub: MobileResnetGenerator,
    teacher: nn.Module,
    distiller: Distiller,
    D: nn.Module,
    tcfg: TeacherConfig,
    scfg: StudentConfig,
    cfg: TrainingConfig,
    epochs: int,
    decay_epochs: int,
    seed: int = 0,
    on_epoch: Optional[Callable[[int, nn.Module], None]] = None,
    progress_bar: bool = True,
) -> MobileResnetGenerator:
    """Train one extracted sub-generator further with the same losses; ``on_epoch(epoch, sub)``
    after each epoch (where the evaluator scores it and reports to the run's pruner)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 13)
    opts = cfg.resolved(data.paired)
    weights = {"lambda_gan": cfg.lambda_gan, "lambda_recon": opts["lambda_recon"], "lambda_distill": opts["lambda_distill"]}
    gan = GANLoss(opts["gan_mode"])
    teacher = teacher.eval()
    sub = copy.deepcopy(sub).train()
    D = copy.deepcopy(D).train()
    s_ch = [s[0] for s in probe_channels(sub, scfg.layers, data.image_shape, "student.layers")]
    adapters = distiller.narrowed(s_ch)
    opt_g = _adam(itertools.chain(sub.parameters(), adapters.parameters()), cfg)
    opt_d = _adam(D.parameters(), cfg)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, _linear_decay(epochs, decay_epochs)) for o in (opt_g, opt_d)]
    use_distill = weights["lambda_distill"] > 0
    t_taps = FeatureTaps(teacher, tcfg.layers, "teacher.layers") if use_distill else None
    s_taps = FeatureTaps(sub, scfg.layers, "student.layers") if use_distill else None
    n = len(data.train_a) if data.paired else min(len(data.train_a), len(data.train_b))
    try:
        cache = TeacherCache.build(teacher, t_taps, data.train_a[:n], cfg.cache_teacher_mb)
        for epoch in progress(range(epochs + decay_epochs), total=epochs + decay_epochs, desc="fine-tune sub-generator", enabled=progress_bar):
            sub.train()
            batches = _batches(n, cfg.batch_size, gen)
            order_b = torch.randperm(len(data.train_b), generator=gen)
            for bi, idx in enumerate(batches):
                a, b = data.train_a[idx], _b_batch(data, idx, order_b, bi, cfg.batch_size, data.paired)
                _student_step(sub, teacher, adapters, D, t_taps, s_taps, a, b, data.paired, gan, opt_g, opt_d, weights, epoch, cache[idx] if cache is not None else None)
            for s in scheds:
                s.step()
            if on_epoch is not None:
                on_epoch(epoch, sub)
    finally:
        for taps in (t_taps, s_taps):
            if taps is not None:
                taps.remove()
    return sub.eval()


def train_student_from_scratch(
    data: TranslationData,
    sub: MobileResnetGenerator,
    teacher_state: TeacherState,
    tcfg: TeacherConfig,
    scfg: StudentConfig,
    cfg: TrainingConfig,
    epochs: int,
    decay_epochs: int,
    distill: bool,
    seed: int = 0,
    progress_bar: bool = True,
) -> MobileResnetGenerator:
    """A baseline: one fixed (e.g. uniformly narrowed) student trained from fresh weights with
    the same losses and budget, with or without the distillation term."""
    fresh = init_weights(MobileResnetGenerator(sub.config, sub.input_nc, sub.output_nc, sub.n_blocks), seed=seed + 21)
    s_ch = [s[0] for s in probe_channels(fresh, scfg.layers, data.image_shape, "student.layers")]
    t_ch = [s[0] for s in probe_channels(teacher_state.G, tcfg.layers, data.image_shape, "teacher.layers")]
    cfg_used = cfg if distill else TrainingConfig(**{**cfg.__dict__, "lambda_distill": 0.0})
    return finetune(data, fresh, teacher_state.G, Distiller(s_ch, t_ch), teacher_state.D, tcfg, scfg, cfg_used, epochs, decay_epochs, seed, None, progress_bar)
