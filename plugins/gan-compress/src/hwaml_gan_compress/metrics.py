"""Image quality without downloads: FID and KID on the features of a classifier
trained here, and per-pixel scores for paired tasks.

pytorch-fid computes FID from the 2048-d pool features of an Inception network
whose weights it downloads. Those weights cannot be fetched here, so the
feature network is a small CNN the project trains on real Fashion-MNIST
(``hwaml-gan-compress features``, cached under ``$HWAML_CACHE_DIR/gan_compress``);
its global-average-pool output (``feature_dim`` values, 64 by default) plays the role of
Inception's pool3 features. The statistics are the same as pytorch-fid's:
Gaussian fits (mean, covariance with ``ddof=1``) of the two feature sets and the
Frechet distance ``|mu1-mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))`` with
``scipy.linalg.sqrtm`` (an ``eps`` on the diagonal when the product is singular,
the real part when sqrtm returns a negligible imaginary one). KID is the
unbiased MMD^2 with the cubic polynomial kernel ``(x.y/d + 1)^3`` averaged over
random subsets (as in torch-fidelity / the KID paper).

Users with their own feature network (an Inception exported to TorchScript,
for example) point ``metric.feature_net`` at the file: a TorchScript module
taking NCHW images in [-1, 1] and returning ``[N, D]`` features.

FID depends on the feature network and on the sample size, so values here are
comparable with each other, not with published Inception FIDs; the metric's
own noise is reported next to it (:func:`real_halves_fid`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwaml.progress import progress

from .data import cache_dir, read_fashion_mnist

log = logging.getLogger("hwaml.gan_compress")

__all__ = [
    "FEATURE_DIM",
    "feature_net_path",
    "train_feature_net",
    "FeatureNet",
    "FeatureNetConfig",
    "MetricError",
    "feature_net",
    "extract_features",
    "gaussian_stats",
    "frechet_distance",
    "fid",
    "kid",
    "psnr",
    "real_halves_fid",
]

FEATURE_DIM = 64


class MetricError(ValueError):
    """A quality metric that cannot be computed (NaN images, too few samples, a singular fit)."""


class FeatureNet(nn.Module):
    """Small CNN classifier of 28x28 grayscale garments; ``features`` is its pool layer."""

    def __init__(self, n_classes: int = 10, width: int = 32, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, feature_dim, 3, padding=1), nn.BatchNorm2d(feature_dim), nn.ReLU(True),
        )  # fmt: skip
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = _to_feature_input(x)
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _to_feature_input(x: torch.Tensor) -> torch.Tensor:
    """Images of any size and 1 or 3 channels in [-1, 1] as the feature net's 28x28 grayscale."""
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    return x


@dataclass(frozen=True)
class FeatureNetConfig:
    """How the feature network is trained (``metric.training``): on the whole Fashion-MNIST train split by default."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    n_train: Optional[int] = None
    width: int = 32
    feature_dim: int = FEATURE_DIM
    n_eval: Optional[int] = None  # test images its accuracy is reported on (None: all 10000)
    seed: int = 0


def feature_net_path(cfg: FeatureNetConfig, root: Optional[str]) -> Path:
    keep = asdict(cfg)
    for later, default in (("feature_dim", FEATURE_DIM), ("n_eval", None)):
        if keep[later] == default:
            del keep[later]  # the same cache file as before the field existed
    digest = hashlib.sha1(json.dumps({**keep, "root": root}, sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / f"features_fashion_mnist_{digest}.pt"


def train_feature_net(cfg: FeatureNetConfig, root: Optional[str] = None, progress_bar: bool = True) -> Tuple[FeatureNet, Dict[str, float]]:
    """Train the feature classifier on Fashion-MNIST (real images), report its test accuracy."""
    x, y = read_fashion_mnist(root, "train")
    tx, ty = read_fashion_mnist(root, "test")
    if cfg.n_train is not None:
        x, y = x[: cfg.n_train], y[: cfg.n_train]
    if cfg.n_eval is not None:
        tx, ty = tx[: cfg.n_eval], ty[: cfg.n_eval]
    xt = torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)[:, None]
    yt = torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = FeatureNet(width=cfg.width, feature_dim=cfg.feature_dim)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps = cfg.epochs * math.ceil(len(xt) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    net.train()
    for epoch in progress(range(cfg.epochs), total=cfg.epochs, desc="feature net (Fashion-MNIST)", enabled=progress_bar):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            xb = xt[idx]
            # small shifts so that the features do not depend on exact pixel positions
            xb = torch.roll(xb, shifts=(int(torch.randint(-2, 3, (1,), generator=gen)), int(torch.randint(-2, 3, (1,), generator=gen))), dims=(2, 3))
            loss = F.cross_entropy(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        xs = torch.from_numpy(tx.astype(np.float32) / 127.5 - 1.0)[:, None]
        pred = torch.cat([net(xs[i : i + 1000]).argmax(1) for i in range(0, len(xs), 1000)])
    acc = float((pred.numpy() == ty).mean())
    return net, {"test_accuracy": acc}


def feature_net(path: Optional[str] = None, training: Optional[FeatureNetConfig] = None, root: Optional[str] = None, progress_bar: bool = True) -> nn.Module:
    """The feature network: a user's TorchScript file (``path``), or the project's
    Fashion-MNIST classifier, loaded from its cache file or trained first."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise MetricError(f"metric.feature_net: {p} does not exist (a TorchScript module mapping NCHW images in [-1, 1] to [N, D] features)")
        return torch.jit.load(str(p), map_location="cpu").eval()
    cfg = training or FeatureNetConfig()
    cache = feature_net_path(cfg, root)
    if cache.is_file():
        state = torch.load(cache, map_location="cpu", weights_only=True)
        net = FeatureNet(width=cfg.width, feature_dim=cfg.feature_dim)
        net.load_state_dict(state)
        return net.eval()
    log.info("training the FID feature network on Fashion-MNIST (cached at %s)", cache)
    net, report = train_feature_net(cfg, root, progress_bar)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, cache)
    cache.with_suffix(".json").write_text(json.dumps({**asdict(cfg), **report}, indent=1))
    return net.eval()


def extract_features(net: nn.Module, images: torch.Tensor, batch_size: int = 250) -> np.ndarray:
    """[N, D] float64 features of images in [-1, 1]."""
    if not torch.isfinite(images).all():
        raise MetricError("the images contain NaN or infinite values (a diverged generator?)")
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            xb = images[start : start + batch_size]
            feats = net.features(xb) if hasattr(net, "features") else net(xb)
            out.append(feats.reshape(len(xb), -1).double().numpy())
    return np.concatenate(out)


def gaussian_stats(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    if len(features) < 2:
        raise MetricError(f"FID needs at least 2 samples, got {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between two Gaussians, computed as pytorch-fid does."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise MetricError(f"FID: feature statistics of different shapes {mu1.shape} / {mu2.shape}")
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        log.warning("FID: singular product of covariances; adding %g to the diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise MetricError(f"FID: sqrtm has an imaginary component of {np.max(np.abs(covmean.imag)):g}")
        covmean = covmean.real
    value = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
    if not math.isfinite(value):
        raise MetricError("FID is not finite")
    return value


def fid(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(real_features), *gaussian_stats(fake_features))


def kid(real_features: np.ndarray, fake_features: np.ndarray, subsets: int = 20, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: the unbiased MMD^2 of a cubic polynomial kernel, averaged over subsets."""
    n = min(len(real_features), len(fake_features), subset_size)
    if n < 2:
        raise MetricError(f"KID needs at least 2 samples per set, got {n}")
    d = real_features.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = real_features[rng.choice(len(real_features), n, replace=False)]
        y = fake_features[rng.choice(len(fake_features), n, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals))


def psnr(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (peak = the [0, 1] range)."""
    mse = float((((fake + 1) / 2 - (real + 1) / 2) ** 2).mean())
    return float(10 * math.log10(1.0 / max(mse, 1e-12)))


def real_halves_fid(net: nn.Module, images: torch.Tensor, seed: int = 0) -> float:
    """FID between two random halves of the same real images: the metric's floor at this sample size."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    half = len(images) // 2
    return fid(extract_features(net, images[order[:half]]), extract_features(net, images[order[half : 2 * half]]))
