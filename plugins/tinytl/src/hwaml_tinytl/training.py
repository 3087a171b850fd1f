"""Pretraining the backbone on the source task (cached) and transferring it.

Pretraining: the full GroupNorm + WS backbone trained on ``fashion_0_4`` with
Adam and a cosine schedule; the weights are written to the cache (a plain dict
of tensors, loaded with ``weights_only=True``, with a JSON of its settings
beside it) and never downloaded.

Transfer follows the paper's recipe: Adam, cosine learning-rate decay, batch 8,
weight decay 0, dropout 0.2 before the classifier, 50 epochs at full scale
(every number is a config value, so tests and benchmarks shrink them).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from hwaml.progress import progress

from .backbone import BackboneConfig, MobileNetV2Backbone
from .data import Split, TargetData

__all__ = [
    "PretrainConfig",
    "TransferRecipe",
    "cache_dir",
    "pretrained_path",
    "pretrain_backbone",
    "load_pretrained",
    "accuracy",
    "transfer",
]


def cache_dir() -> Path:
    return Path(os.environ.get("HWAML_CACHE_DIR", Path.home() / ".cache" / "hwaml")) / "tinytl"


@dataclass(frozen=True)
class PretrainConfig:
    """How the backbone is pretrained on the source task (``pretrain:`` in the config).

    :param source: source dataset (``fashion_0_4``).
    :param n_train: training images per class; ``None``: all (6000 per class).
    :param n_val: held-out source images per class (the source accuracy in the checkpoint's JSON).
    :param epochs, lr, batch_size: Adam with cosine decay.
    :param data_root: the source's IDX folder (null: Debian's location).
    :param checkpoint: weights file; default: a cache file named after these settings.
    :param train_if_missing: pretrain when the checkpoint is missing (else an error naming the command).
    :param lite_residual: pretrain lite residual modules (the published placement: every mobile
        block but the first, published kernels, groups 2) together with the backbone, as the
        published checkpoint is (``proxylessnas_mobile+lite_residual@imagenet@ws+gn``): transfer
        then starts from trained lite residuals instead of fresh ones, and every method sees the
        same pretrained network (frozen lite residuals are part of the feature extractor).
    """

    source: str = "fashion_0_4"
    n_train: Optional[int] = 2000
    n_val: int = 50
    epochs: int = 6
    lr: float = 2e-3
    batch_size: int = 64
    data_root: Optional[str] = None
    checkpoint: Optional[str] = None
    train_if_missing: bool = True
    lite_residual: bool = True

    def settings(self) -> Dict[str, Any]:
        d = asdict(self)
        for where in ("checkpoint", "train_if_missing", "data_root"):  # where things are, not what is trained
            d.pop(where)
        return d


@dataclass(frozen=True)
class TransferRecipe:
    """The transfer recipe (``training:`` in the config); defaults are the paper's full-scale ones.

    :param epochs: transfer epochs (paper: 50).
    :param lr: Adam learning rate (per target; tuned on validation, see the target configs).
    :param batch_size: 8 as published.
    :param weight_decay: 0 as published.
    :param dropout: before the classifier, 0.2 as published.
    :param memory_saving: train with the memory-saving layers (same gradients, less memory).
    :param recompute: with ``memory_saving``, also recompute each mobile block in backward.
    :param eval_batch_size: images per batch when scoring.
    :param lite_init: ``pretrained`` (as published): a trained lite residual module starts from its
        pretrained weights; ``random``: it is re-initialised (scale 0), the published code's
        ``--random_init_lite_residual`` (an ablation).
    """

    epochs: int = 50
    lr: float = 1e-3
    batch_size: int = 8
    weight_decay: float = 0.0
    dropout: float = 0.2
    memory_saving: bool = True
    recompute: bool = False
    eval_batch_size: int = 256
    lite_init: str = "pretrained"

    def __post_init__(self) -> None:
        if self.lite_init not in ("pretrained", "random"):
            raise ValueError(f"training.lite_init {self.lite_init!r} is not one of ('pretrained', 'random')")


def pretrained_path(arch: BackboneConfig, cfg: PretrainConfig, seed: int) -> Path:
    if cfg.checkpoint:
        return Path(cfg.checkpoint)
    digest = hashlib.sha1(json.dumps({"arch": arch.to_dict(), **cfg.settings(), "seed": seed}, sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / f"backbone_{cfg.source}_{digest}.pt"


def accuracy(net: nn.Module, split: Split, batch_size: int = 256) -> float:
    was = net.training
    net.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(split), batch_size):
            correct += int((net(split.x[s : s + batch_size]).argmax(1) == split.y[s : s + batch_size]).sum())
    net.train(was)
    return correct / max(1, len(split))


def _epochs(
    net: nn.Module,
    params: List[nn.Parameter],
    train: Split,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    desc: str,
    show: bool,
    after_epoch: Optional[Callable[[int], None]] = None,
) -> None:
    if not params:
        raise ValueError("no trainable parameters")
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    g = torch.Generator().manual_seed(seed)
    for epoch in progress(range(epochs), total=epochs, desc=desc, enabled=show):
        net.train()
        order = torch.randperm(len(train), generator=g)
        for s in range(0, len(train), batch_size):
            idx = order[s : s + batch_size]
            loss = F.cross_entropy(net(train.x[idx]), train.y[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {float(loss)} in epoch {epoch} (lr={lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if after_epoch is not None:
            after_epoch(epoch)


def source_network(arch: BackboneConfig, lite_residual: bool) -> MobileNetV2Backbone:
    """The network pretraining trains: the backbone, with lite residual modules at the
    published placement when ``lite_residual``."""
    from .lite_residual import insert_lite_residuals

    net = MobileNetV2Backbone(arch)
    if lite_residual:
        insert_lite_residuals(net, (arch.in_channels, arch.resolution, arch.resolution))
    return net


def pretrain_backbone(arch: BackboneConfig, data: TargetData, cfg: PretrainConfig, seed: int, out: Optional[Path] = None, show: bool = True) -> MobileNetV2Backbone:
    """Train the whole backbone (and, with ``cfg.lite_residual``, its lite residual
    modules) on the source task; save it to ``out`` when given."""
    if data.n_classes != arch.n_classes:
        raise ValueError(f"source {data.name} has {data.n_classes} classes but the backbone has n_classes={arch.n_classes}")
    torch.manual_seed(seed)
    net = source_network(arch, cfg.lite_residual)
    _epochs(net, list(net.parameters()), data.train, cfg.epochs, cfg.lr, cfg.batch_size, 0.0, seed, "TinyTL pretrain", show)
    val = accuracy(net, data.val)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, tmp)
        os.replace(tmp, out)
        meta = {"arch": arch.to_dict(), "pretrain": cfg.settings(), "seed": seed, "source_val_accuracy": val}
        out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return net.eval()


def load_pretrained(path: Path, arch: BackboneConfig, lite_residual: bool = True) -> MobileNetV2Backbone:
    """The pretrained network (with its lite residual modules when ``lite_residual``)."""
    meta_path = path.with_suffix(".json")
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if BackboneConfig.from_dict(meta["arch"]) != arch:
            raise ValueError(f"pretrained backbone {path} was trained for arch {meta['arch']}, not {arch.to_dict()}")
        had = bool(meta.get("pretrain", {}).get("lite_residual", False))
        if had != lite_residual:
            raise ValueError(
                f"pretrained backbone {path} was trained with pretrain.lite_residual={had}, not {lite_residual}: "
                f"set pretrain.lite_residual={had} or pretrain again"
            )
    net = source_network(arch, lite_residual)
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"pretrained backbone {path} does not fit arch (pretrain.lite_residual={lite_residual}): missing {missing[:5]}, unexpected {unexpected[:5]}")
    return net.eval()


def recompute_blocks(recipe: "TransferRecipe") -> bool:
    if recipe.recompute and not recipe.memory_saving:
        raise ValueError("training.recompute needs training.memory_saving: true")
    return recipe.recompute


def transfer(
    net: nn.Module,
    data: TargetData,
    recipe: TransferRecipe,
    seed: int,
    books: Optional[Mapping[str, Any]] = None,
    on_epoch: Optional[Callable[[int, float], None]] = None,
    show: bool = True,
) -> Dict[str, Any]:
    """Train ``net``'s trainable parameters (``requires_grad``) on the target.

    With ``recipe.memory_saving`` the steps run on the memory-saving copy of the
    network (sharing the trainable parameters, so ``net`` is what gets trained).
    ``on_epoch(epoch, val_accuracy)`` is called after each epoch (it may raise to
    stop). Returns the per-epoch validation accuracies and the final ones.
    """
    from .memsave import apply_recompute, recompute_paths, to_memory_saving

    recompute_blocks(recipe)  # an impossible combination fails before any work
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = recipe.dropout
    trainable = [p for p in net.parameters() if p.requires_grad]
    if recipe.memory_saving:
        # a copy with its own frozen weights (codes), the trainable parameters put back to share them
        runner = to_memory_saving(net, dict(books or {}))
        src = dict(net.named_parameters())
        for name, p in list(runner.named_parameters()):
            if p.requires_grad:
                parent, _, attr = name.rpartition(".")
                setattr(runner.get_submodule(parent) if parent else runner, attr, src[name])
        if recipe.recompute:
            apply_recompute(runner, recompute_paths(net, tuple(data.train.x.shape[1:])))
    else:
        runner = net
    history: List[float] = []

    def after(epoch: int) -> None:
        acc = accuracy(runner, data.val, recipe.eval_batch_size)
        history.append(acc)
        if on_epoch is not None:
            on_epoch(epoch, acc)

    torch.manual_seed(seed)
    _epochs(runner, trainable, data.train, recipe.epochs, recipe.lr, recipe.batch_size, recipe.weight_decay, seed, f"TinyTL transfer {data.name}", show, after)
    return {
        "val_history": history,
        "val_accuracy": accuracy(net, data.val, recipe.eval_batch_size),
        "test_accuracy": accuracy(net, data.test, recipe.eval_batch_size),
    }
