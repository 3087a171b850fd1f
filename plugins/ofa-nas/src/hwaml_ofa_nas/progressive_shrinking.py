"""Progressive shrinking: how a once-for-all supernet is trained.

Published order (Cai et al. 2020, Sec. 3.2 and Fig. 3): first the full network
(largest kernel, depth and width) is trained; it then serves as the teacher of
knowledge distillation for the later phases, which make the supernet elastic
one dimension at a time, each time adding the smaller choices of that dimension
while keeping the earlier ones elastic:

1. ``full``: largest sub-network only (elastic resolution throughout);
2. ``kernel``: kernel sizes {3,5,7} (the kernel transforms learn here);
3. ``depth_1`` then ``depth_2``: depth {3,4}, then {2,3,4};
4. ``expand_1`` then ``expand_2``: expand ratio {4,6}, then {3,4,6}, with the
   middle channels sorted by importance before each expand phase.

Each step samples ``subnets_per_step`` sub-networks (OFA's dynamic batch size),
accumulates their gradients (label-smoothed cross-entropy plus distillation
from the full network's soft labels) and takes one SGD step. Batch-norm
statistics are recalibrated on training images before any sub-network is
evaluated (:func:`recalibrate_batchnorm`).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hwaml.progress import bar as _bar, progress as _progress

from .data import DataSplits, resize_batch
from .supernet import OFAMobileNetV3

log = logging.getLogger("hwaml.ofa_nas")

__all__ = [
    "Phase",
    "PHASE_ORDER",
    "build_schedule",
    "train_progressive_shrinking",
    "ShrinkingReport",
    "recalibrate_batchnorm",
    "evaluate_accuracy",
    "calibration_images",
    "train_static",
    "train_supernet",
    "save_supernet",
    "load_supernet",
    "safe_load",
    "DIGITS_EPOCHS",
    "DIGITS_LRS",
]

#: the published order of the elastic dimensions
PHASE_ORDER = ("full", "kernel", "depth", "expand")


@dataclass
class Phase:
    """One phase of progressive shrinking: the choices sampled and its optimiser settings."""

    name: str
    epochs: int
    lr: float
    kernel_choices: List[int]
    depth_choices: List[int]
    expand_choices: List[int]
    distill: bool = True
    #: sort middle channels before the phase; the value lists the expand ratios
    #: whose widths are protected (trained elastic in an earlier phase)
    sort_channels: Optional[List[int]] = None


def _per_step(value: Union[int, float, Sequence], n: int, key: str) -> List:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{key}: expected {n} values (one per phase), got {list(value)}")
        return list(value)
    return [value] * n


def build_schedule(
    kernel_choices: Sequence[int],
    depth_choices: Sequence[int],
    expand_choices: Sequence[int],
    epochs: Mapping[str, Any],
    lrs: Mapping[str, Any],
) -> List[Phase]:
    """The progressive-shrinking phases for the given choices.

    ``epochs`` and ``lrs`` map ``full``, ``kernel``, ``depth`` and ``expand`` to a
    number, or (for depth and expand, which have one phase per added choice) a
    list. OFA's ImageNet values are epochs ``{full: 180, kernel: 120, depth:
    [25, 120], expand: [25, 120]}`` and lrs ``{full: 0.026, kernel: 0.03 ...}``
    (per 256 images); the digits defaults are far shorter.
    """
    for key in PHASE_ORDER:
        if key not in epochs:
            raise ValueError(f"epochs.{key} is missing (need {list(PHASE_ORDER)})")
        if key not in lrs:
            raise ValueError(f"lrs.{key} is missing (need {list(PHASE_ORDER)})")
    ks = sorted(kernel_choices)
    ds = sorted(depth_choices)
    es = sorted(expand_choices)
    phases = [
        Phase("full", int(epochs["full"]), float(lrs["full"]), [ks[-1]], [ds[-1]], [es[-1]], distill=False),
        Phase("kernel", int(epochs["kernel"]), float(lrs["kernel"]), ks, [ds[-1]], [es[-1]]),
    ]
    n_depth = len(ds) - 1
    for i, (e, lr) in enumerate(zip(_per_step(epochs["depth"], n_depth, "epochs.depth"), _per_step(lrs["depth"], n_depth, "lrs.depth"))):
        phases.append(Phase(f"depth_{i + 1}", int(e), float(lr), ks, ds[-(i + 2) :], [es[-1]]))
    n_exp = len(es) - 1
    for i, (e, lr) in enumerate(zip(_per_step(epochs["expand"], n_exp, "epochs.expand"), _per_step(lrs["expand"], n_exp, "lrs.expand"))):
        protected = es[-(i + 1) : -1]  # the smaller ratios made elastic by the previous expand phase
        phases.append(Phase(f"expand_{i + 1}", int(e), float(lr), ks, ds, es[-(i + 2) :], sort_channels=protected))
    return phases


# ---------------------------------------------------------------------------
# batch-norm recalibration and evaluation
# ---------------------------------------------------------------------------


def calibration_images(dataset: Dataset, n_images: int, seed: int = 0) -> torch.Tensor:
    """A fixed random subset of training images (OFA uses 2000 on ImageNet)."""
    n = min(int(n_images), len(dataset))
    idx = np.random.default_rng(seed).permutation(len(dataset))[:n]
    return torch.stack([dataset[int(i)][0] for i in idx])


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, resolution: Optional[int] = None, batch_size: int = 100) -> None:
    """Replace every batch-norm layer's running statistics by the exact average
    of the batch statistics of ``images`` (at ``resolution``) through this
    (sub-)network. A weight-shared supernet needs this before evaluating a
    sub-network: the running statistics it kept were mixed over many shapes."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(bn.momentum, bn.training) for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            if resolution is not None:
                x = resize_batch(x, resolution)
            model(x)
    finally:
        for bn, (momentum, _) in zip(bns, saved):
            bn.momentum = momentum
        model.train(was_training)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, dataset: Dataset, resolution: Optional[int] = None, batch_size: int = 256) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on ``dataset`` at ``resolution``."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        if resolution is not None:
            x = resize_batch(x, resolution)
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    return correct / max(1, total)


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------


@dataclass
class PhaseRecord:
    name: str
    epochs: int
    steps: int
    final_loss: float
    #: validation accuracy of the largest and smallest sub-networks of the phase
    #: (after batch-norm recalibration)
    val_accuracy: Dict[str, float] = field(default_factory=dict)


@dataclass
class ShrinkingReport:
    phases: List[PhaseRecord] = field(default_factory=list)

    @property
    def order(self) -> List[str]:
        return [p.name for p in self.phases]

    def to_dict(self) -> Dict[str, Any]:
        return {"phases": [asdict(p) for p in self.phases]}


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    return -(soft_targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def _param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    # no weight decay on batch-norm parameters and biases (as OFA)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _loader(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size, generator=g)


def _phase_extremes(net: OFAMobileNetV3, phase: Phase) -> Dict[str, Dict[str, Any]]:
    res = list(net.arch.resolutions)
    big = {"kernel": max(phase.kernel_choices), "expand": max(phase.expand_choices)}
    small = {"kernel": min(phase.kernel_choices), "expand": min(phase.expand_choices)}
    return {
        "max": {"resolution": max(res), **{n: [dict(big)] * max(phase.depth_choices) for n in net.arch.stage_names}},
        "min": {"resolution": min(res), **{n: [dict(small)] * min(phase.depth_choices) for n in net.arch.stage_names}},
    }


def train_progressive_shrinking(
    net: OFAMobileNetV3,
    data: DataSplits,
    phases: Sequence[Phase],
    batch_size: int = 64,
    subnets_per_step: int = 2,
    kd_ratio: float = 1.0,
    label_smoothing: float = 0.1,
    weight_decay: float = 3e-5,
    momentum: float = 0.9,
    seed: int = 0,
    calibration_size: int = 500,
    teacher: Optional[nn.Module] = None,
    progress: bool = True,
    on_phase_end: Optional[Callable[[PhaseRecord, OFAMobileNetV3], None]] = None,
) -> ShrinkingReport:
    """Train ``net`` through ``phases`` in order; returns what each phase did.

    The teacher for distillation is the full network as it stands after the
    ``full`` phase (or ``teacher`` when given, e.g. when resuming at a later
    phase). ``on_phase_end`` is called after every phase (to checkpoint).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    report = ShrinkingReport()
    calib = calibration_images(data.train, calibration_size, seed)
    if teacher is None and kd_ratio > 0 and phases and phases[0].name != "full":
        teacher = _make_teacher(net)  # resuming after the full phase: the current full network teaches
    for phase in phases:
        if phase.sort_channels is not None:
            net.sort_channels(phase.sort_channels)
            log.info("progressive shrinking: sorted middle channels by importance (protected expand ratios %s)", phase.sort_channels)
        loader = _loader(data.train, batch_size, int(rng.integers(2**31)))
        steps = max(1, phase.epochs * len(loader))
        optimizer = torch.optim.SGD(_param_groups(net, weight_decay), lr=phase.lr, momentum=momentum, nesterov=True)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        net.train()
        last_loss = math.nan
        bar = _bar(total=phase.epochs * len(loader), desc=f"OFA {phase.name}", unit="step", enabled=progress)
        for _epoch in range(phase.epochs):
            for images, labels in loader:
                optimizer.zero_grad(set_to_none=True)
                total = 0.0
                for _ in range(subnets_per_step):
                    cfg = net.sample_active_subnet(
                        rng, phase.kernel_choices, phase.expand_choices, phase.depth_choices
                    )
                    # channels-last halves the CPU cost of depthwise convolutions
                    x = resize_batch(images, cfg["resolution"]).contiguous(memory_format=torch.channels_last)
                    out = net(x)
                    loss = F.cross_entropy(out, labels, label_smoothing=label_smoothing)
                    if phase.distill and teacher is not None and kd_ratio > 0:
                        with torch.no_grad():
                            soft = F.softmax(teacher(x), dim=1)
                        loss = loss + kd_ratio * soft_cross_entropy(out, soft)
                    loss.backward()
                    total += float(loss.detach())
                optimizer.step()
                scheduler.step()
                last_loss = total / subnets_per_step
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3f}", refresh=False)
        bar.close()
        record = PhaseRecord(phase.name, phase.epochs, phase.epochs * len(loader), last_loss)
        for label, cfg in _phase_extremes(net, phase).items():
            net.set_active_subnet(cfg)
            recalibrate_batchnorm(net, calib, cfg["resolution"])
            record.val_accuracy[label] = evaluate_accuracy(net, data.val, cfg["resolution"])
        net.set_max_subnet()
        log.info("progressive shrinking: phase %s done, loss %.4f, val accuracy %s", phase.name, last_loss, record.val_accuracy)
        report.phases.append(record)
        if phase.name == "full" and kd_ratio > 0:
            teacher = _make_teacher(net)
        if on_phase_end is not None:
            on_phase_end(record, net)
    net.train()
    return report


def _make_teacher(net: OFAMobileNetV3) -> nn.Module:
    net.set_max_subnet()
    teacher = net.get_active_subnet()
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def train_static(
    model: nn.Module,
    data: DataSplits,
    epochs: int,
    lr: float,
    resolution: int,
    batch_size: int = 64,
    label_smoothing: float = 0.1,
    weight_decay: float = 3e-5,
    momentum: float = 0.9,
    seed: int = 0,
    progress: bool = False,
    on_epoch: Optional[Callable[[int, nn.Module], None]] = None,
) -> nn.Module:
    """Plain training of a static network at one resolution (the from-scratch
    baseline that progressive shrinking is compared with, and the fine-tuning of
    extracted sub-networks).

    ``on_epoch(epoch, model)`` is called after each epoch with the model in eval
    mode (to score it and report through ``ctx.report``; it may raise
    :class:`hwaml.TrialPruned` to stop the training)."""
    torch.manual_seed(seed)
    loader = _loader(data.train, batch_size, seed)
    steps = max(1, epochs * len(loader))
    optimizer = torch.optim.SGD(_param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    for epoch in _progress(range(epochs), total=epochs, desc="from scratch", enabled=progress):
        for images, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            x = resize_batch(images, resolution).contiguous(memory_format=torch.channels_last)
            F.cross_entropy(model(x), labels, label_smoothing=label_smoothing).backward()
            optimizer.step()
            scheduler.step()
        if on_epoch is not None:
            model.eval()
            on_epoch(epoch, model)
            model.train()
    model.eval()
    return model


# ---------------------------------------------------------------------------
# a whole training run, checkpointed
# ---------------------------------------------------------------------------

#: digits defaults: the published phase order with short phases
DIGITS_EPOCHS: Dict[str, Any] = {"full": 15, "kernel": 8, "depth": [4, 8], "expand": [4, 8]}
DIGITS_LRS: Dict[str, Any] = {"full": 0.1, "kernel": 0.03, "depth": [0.01, 0.03], "expand": [0.01, 0.03]}


def train_supernet(
    arch: Any = "tiny_digits",
    arch_overrides: Optional[Mapping[str, Any]] = None,
    data: Optional[DataSplits] = None,
    epochs: Optional[Mapping[str, Any]] = None,
    lrs: Optional[Mapping[str, Any]] = None,
    checkpoint: Optional[str] = None,
    seed: int = 0,
    progress: bool = True,
    **train_kwargs: Any,
) -> tuple:
    """Build a supernet, train it with progressive shrinking on ``data``
    (digits by default) and save ``checkpoint`` (state dict, shape, report).
    Returns ``(net, report)``."""
    from pathlib import Path

    from .data import load_digits_dataset

    from .supernet import supernet_config

    torch.manual_seed(seed)  # the initial weights follow the seed
    net = OFAMobileNetV3(supernet_config(arch, arch_overrides))
    if data is None:
        data = load_digits_dataset(max(net.arch.resolutions), seed=seed)
    a = net.arch
    phases = build_schedule(a.kernel_choices, a.depth_choices, a.expand_choices, epochs or DIGITS_EPOCHS, lrs or DIGITS_LRS)
    report = train_progressive_shrinking(net, data, phases, seed=seed, progress=progress, **train_kwargs)
    if checkpoint:
        save_supernet(net, checkpoint, report)
    return net, report


def save_supernet(net: OFAMobileNetV3, path: Any, report: Optional[ShrinkingReport] = None) -> Any:
    """Write ``{"state_dict", "arch", "report"}`` to ``path``: tensors and plain
    data only (dicts, lists, strings, numbers), so it loads with ``weights_only=True``."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"state_dict": net.state_dict(), "arch": net.arch.to_dict(), "report": report.to_dict() if report else None}, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a checkpoint
    return path


def safe_load(path: Any, what: str) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only. A file
    holding anything else (a pickled object, which could run code when loaded)
    is refused with a :class:`ValueError` naming it."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path}: refused to load it as {what}: it holds objects other than tensors and plain data "
            f"(loading it could run code; only files written by hwaml-ofa-nas are read, with weights_only=True): {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError) as exc:
        raise ValueError(f"{path} is not {what}: {exc}") from exc


def load_supernet(path: Any, expect_arch: Optional[Any] = None) -> OFAMobileNetV3:
    """Load a checkpoint written by :func:`save_supernet` (checks its shape;
    ``weights_only=True``: a file with pickled objects is refused)."""
    from pathlib import Path

    from .supernet import supernet_config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"supernet checkpoint {path} does not exist")
    blob = safe_load(path, "a supernet checkpoint written by hwaml-ofa-nas")
    try:
        arch = supernet_config(blob["arch"])
        state = blob["state_dict"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a supernet checkpoint written by hwaml-ofa-nas: {type(exc).__name__}: {exc}") from exc
    if expect_arch is not None and supernet_config(expect_arch).digest() != arch.digest():
        raise ValueError(f"{path} holds a supernet of another shape (digest {arch.digest()}, expected {supernet_config(expect_arch).digest()})")
    net = OFAMobileNetV3(arch)
    net.load_state_dict(state)
    net.eval()
    return net
