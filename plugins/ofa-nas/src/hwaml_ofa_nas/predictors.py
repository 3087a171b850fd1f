"""Predictors that make the specialisation search cheap: the accuracy MLP on the
architecture encoding and the MACs/parameter counter. (The latency look-up
table lives in :mod:`hwaml_ofa_nas.latency_lut`.)

The encoding is the hwaml ``SearchSpace.encode`` vector of the sub-network space
(one-hot resolution, then per stage a one-hot depth and per block slot one-hot
kernel and expand ratio, zero for blocks beyond the depth), which is OFA's
``MobileNetArchEncoder`` feature plus the explicit depth. :class:`ArchEncoder`
computes it for many genomes at once with numpy.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .supernet import SupernetConfig, layer_specs, supernet_config

log = logging.getLogger("hwaml.ofa_nas")

__all__ = [
    "ArchEncoder",
    "AccuracyPredictor",
    "PredictorReport",
    "fit_accuracy_predictor",
    "load_accuracy_predictor",
    "count_macs",
    "MacsTable",
    "count_params",
    "collect_accuracy_dataset",
]


class ArchEncoder:
    """Index genomes and their fixed-length encoding for an OFA space.

    A genome is OFA's full chromosome: a resolution index, a depth index per
    stage and a kernel and expand index for *every* block slot (slots beyond a
    stage's depth are kept, inactive, so that a later depth mutation can bring
    them back, as in OFA's evolution). ``meta`` is ``space.meta["ofa"]``.
    """

    def __init__(self, meta: Mapping[str, Any]):
        need = ("resolution_key", "stage_keys", "kernel_choices", "expand_choices", "depth_choices", "resolutions")
        missing = [k for k in need if k not in meta]
        if missing:
            raise ValueError(f"space.meta['ofa'] lacks {missing}")
        self.resolution_key = meta["resolution_key"]
        self.stage_keys = list(meta["stage_keys"])
        self.kernels = [int(k) for k in meta["kernel_choices"]]
        self.expands = [int(e) for e in meta["expand_choices"]]
        self.depths = sorted(int(d) for d in meta["depth_choices"])
        self.resolutions = [int(r) for r in meta["resolutions"]]
        self.n_stages = len(self.stage_keys)
        self.max_depth = max(self.depths)
        item = len(self.kernels) + len(self.expands)
        self.stage_width = len(self.depths) + self.max_depth * item
        self.n_features = len(self.resolutions) + self.n_stages * self.stage_width

    # genomes: dict of int arrays res (N,), depth (N,S), kernel (N,S,D), expand (N,S,D)
    def random_genomes(self, n: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        S, D = self.n_stages, self.max_depth
        return {
            "res": rng.integers(len(self.resolutions), size=n),
            "depth": rng.integers(len(self.depths), size=(n, S)),
            "kernel": rng.integers(len(self.kernels), size=(n, S, D)),
            "expand": rng.integers(len(self.expands), size=(n, S, D)),
        }

    def to_config(self, g: Mapping[str, np.ndarray], i: int) -> Dict[str, Any]:
        cfg: Dict[str, Any] = {self.resolution_key: self.resolutions[int(g["res"][i])]}
        for s, key in enumerate(self.stage_keys):
            d = self.depths[int(g["depth"][i, s])]
            cfg[key] = [{"kernel": self.kernels[int(g["kernel"][i, s, b])], "expand": self.expands[int(g["expand"][i, s, b])]} for b in range(d)]
        return cfg

    def from_configs(self, configs: Sequence[Mapping[str, Any]], rng: Optional[np.random.Generator] = None) -> Dict[str, np.ndarray]:
        """Genomes of configurations (inactive slots random, or the first choice)."""
        n = len(configs)
        g = self.random_genomes(n, rng) if rng is not None else {
            "res": np.zeros(n, int),
            "depth": np.zeros((n, self.n_stages), int),
            "kernel": np.zeros((n, self.n_stages, self.max_depth), int),
            "expand": np.zeros((n, self.n_stages, self.max_depth), int),
        }
        for i, cfg in enumerate(configs):
            g["res"][i] = self.resolutions.index(int(cfg[self.resolution_key]))
            for s, key in enumerate(self.stage_keys):
                blocks = cfg[key]
                g["depth"][i, s] = self.depths.index(len(blocks))
                for b, blk in enumerate(blocks):
                    g["kernel"][i, s, b] = self.kernels.index(int(blk["kernel"]))
                    g["expand"][i, s, b] = self.expands.index(int(blk["expand"]))
        return g

    def encode(self, g: Mapping[str, np.ndarray]) -> np.ndarray:
        """N x n_features float32 matrix, equal to ``space.encode`` row by row."""
        n = len(g["res"])
        X = np.zeros((n, self.n_features), dtype=np.float32)
        rows = np.arange(n)
        X[rows, g["res"]] = 1.0
        nk, ne, nd = len(self.kernels), len(self.expands), len(self.depths)
        depth_values = np.asarray(self.depths)[g["depth"]]  # N x S
        for s in range(self.n_stages):
            base = len(self.resolutions) + s * self.stage_width
            X[rows, base + g["depth"][:, s]] = 1.0
            for b in range(self.max_depth):
                active = depth_values[:, s] > b
                off = base + nd + b * (nk + ne)
                r = rows[active]
                X[r, off + g["kernel"][active, s, b]] = 1.0
                X[r, off + nk + g["expand"][active, s, b]] = 1.0
        return X

    def encode_configs(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.encode(self.from_configs(configs))

    def keys(self, g: Mapping[str, np.ndarray]) -> List[bytes]:
        """Identity of the *active* architecture of each genome (for dedup)."""
        return [row.tobytes() for row in self.encode(g).astype(np.uint8)]


# ---------------------------------------------------------------------------
# accuracy predictor
# ---------------------------------------------------------------------------


class AccuracyPredictor(nn.Module):
    """OFA's accuracy predictor: an MLP (``layers`` hidden layers of ``hidden``
    units with ReLU, a bias-free output) plus a constant base accuracy (the
    training mean), so the network learns differences around it."""

    def __init__(self, n_features: int, hidden: int = 400, layers: int = 3):
        super().__init__()
        mods: List[nn.Module] = []
        width = n_features
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        mods.append(nn.Linear(width, 1, bias=False))
        self.layers = nn.Sequential(*mods)
        self.register_buffer("base_acc", torch.zeros(()))
        self.n_features, self.hidden, self.n_layers = n_features, hidden, layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1) + self.base_acc

    @torch.no_grad()
    def predict(self, X: np.ndarray) -> np.ndarray:
        self.eval()
        return self(torch.as_tensor(np.asarray(X, dtype=np.float32))).numpy().astype(float)

    def save(self, path: str | Path, meta: Optional[Mapping[str, Any]] = None, report: Optional["PredictorReport"] = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "state_dict": self.state_dict(),
                "n_features": self.n_features,
                "hidden": self.hidden,
                "layers": self.n_layers,
                "meta": dict(meta or {}),
                "report": asdict(report) if report is not None else None,
            },
            path,
        )
        return path


def load_accuracy_predictor(path: str | Path) -> Tuple[AccuracyPredictor, Dict[str, Any]]:
    """Load a predictor saved with :meth:`AccuracyPredictor.save`; returns it and its meta.
    ``weights_only=True``: a file with pickled objects is refused (``ValueError``)."""
    from .progressive_shrinking import safe_load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"accuracy predictor file {path} does not exist")
    blob = safe_load(path, "an accuracy predictor saved by hwaml-ofa-nas")
    try:
        model = AccuracyPredictor(int(blob["n_features"]), int(blob["hidden"]), int(blob["layers"]))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path} is not an accuracy predictor saved by hwaml-ofa-nas: {type(exc).__name__}: {exc}") from exc
    return model, dict(blob.get("meta") or {})


@dataclass
class PredictorReport:
    n_train: int
    n_val: int
    rmse_train: float
    #: RMSE on held-out sub-networks (NaN when nothing is held out)
    rmse_val: float
    #: RMSE of predicting the training mean for every held-out sub-network
    rmse_constant: float


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2))) if len(a) else math.nan


def fit_accuracy_predictor(
    X: np.ndarray,
    y: np.ndarray,
    hidden: int = 400,
    layers: int = 3,
    epochs: int = 300,
    lr: float = 1e-3,
    batch_size: int = 256,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Tuple[AccuracyPredictor, PredictorReport]:
    """Train the MLP on (encoding, accuracy) pairs with Adam and MSE; a random
    ``val_fraction`` is held out and its RMSE reported next to the RMSE of a
    constant (training-mean) predictor."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be N x features and y of length N; got {X.shape} and {y.shape}")
    if len(y) < 2:
        raise ValueError("need at least 2 (architecture, accuracy) pairs to fit the predictor")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = int(round(val_fraction * len(y))) if val_fraction > 0 else 0
    n_val = min(n_val, len(y) - 1)
    val_idx, tr_idx = order[:n_val], order[n_val:]
    torch.manual_seed(seed)
    model = AccuracyPredictor(X.shape[1], hidden, layers)
    model.base_acc.fill_(float(y[tr_idx].mean()))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    Xt, yt = torch.from_numpy(X[tr_idx]), torch.from_numpy(y[tr_idx])
    g = torch.Generator()
    g.manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=g)
        for start in range(0, len(yt), batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((model(Xt[idx]) - yt[idx]) ** 2)
            loss.backward()
            opt.step()
    pred_tr = model.predict(X[tr_idx])
    report = PredictorReport(
        n_train=len(tr_idx),
        n_val=len(val_idx),
        rmse_train=_rmse(pred_tr, y[tr_idx]),
        rmse_val=_rmse(model.predict(X[val_idx]), y[val_idx]) if n_val else math.nan,
        rmse_constant=_rmse(np.full(n_val, y[tr_idx].mean()), y[val_idx]) if n_val else math.nan,
    )
    return model, report


# ---------------------------------------------------------------------------
# efficiency
# ---------------------------------------------------------------------------


class MacsTable:
    """Exact MACs and parameter counts of many genomes at once.

    Both are sums over layers, and a block's cost depends only on the
    resolution, its stage and position (first or later in the stage), its
    kernel and its expand ratio; the table holds every such term (and the
    stem, first block and head per resolution), so counting a population is
    one gather and one sum instead of a Python walk over the layers of each
    sub-network. Equal to :func:`count_macs` / :func:`count_params`.
    """

    def __init__(self, arch: SupernetConfig | str | Mapping[str, Any], encoder: "ArchEncoder"):
        arch = supernet_config(arch)
        if list(encoder.stage_keys) != list(arch.stage_names):
            raise ValueError(f"encoder stages {encoder.stage_keys} are not the supernet's {list(arch.stage_names)}")
        self.encoder = encoder
        R, S, D = len(encoder.resolutions), encoder.n_stages, encoder.max_depth
        K, E = len(encoder.kernels), len(encoder.expands)
        self.base_macs = np.zeros(R, dtype=np.int64)
        self.block_macs = np.zeros((R, S, D, K, E), dtype=np.int64)
        self.base_params = np.zeros(R, dtype=np.int64)
        self.block_params = np.zeros((R, S, D, K, E), dtype=np.int64)
        for ri, r in enumerate(encoder.resolutions):
            for ki, k in enumerate(encoder.kernels):
                for ei, e in enumerate(encoder.expands):
                    cfg = {"resolution": r, **{name: [{"kernel": k, "expand": e}] * D for name in arch.stage_names}}
                    specs = layer_specs(arch, cfg)
                    fixed = (specs[0], specs[1], specs[-1])
                    self.base_macs[ri] = sum(x.macs() for x in fixed)
                    self.base_params[ri] = sum(x.params() for x in fixed)
                    for i, spec in enumerate(specs[2:-1]):
                        st, b = divmod(i, D)
                        self.block_macs[ri, st, b, ki, ei] = spec.macs()
                        self.block_params[ri, st, b, ki, ei] = spec.params()
        self._s = np.arange(S)[None, :, None]
        self._b = np.arange(D)[None, None, :]
        self._depths = np.asarray(encoder.depths)

    def _total(self, base: np.ndarray, block: np.ndarray, g: Mapping[str, np.ndarray]) -> np.ndarray:
        res = np.asarray(g["res"])
        terms = block[res[:, None, None], self._s, self._b, g["kernel"], g["expand"]]
        active = self._b < self._depths[g["depth"]][:, :, None]
        return base[res] + (terms * active).sum(axis=(1, 2))

    def macs(self, g: Mapping[str, np.ndarray]) -> np.ndarray:
        """MACs of each genome (int64 array)."""
        return self._total(self.base_macs, self.block_macs, g)

    def params(self, g: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._total(self.base_params, self.block_params, g)

    def macs_of(self, config: Mapping[str, Any]) -> int:
        return int(self.macs(self.encoder.from_configs([config]))[0])

    def params_of(self, config: Mapping[str, Any]) -> int:
        return int(self.params(self.encoder.from_configs([config]))[0])


def count_macs(arch: SupernetConfig | str | Mapping[str, Any], config: Mapping[str, Any]) -> int:
    """Multiply-accumulates of a sub-network (convolutions and linear layers)."""
    return sum(s.macs() for s in layer_specs(supernet_config(arch), config))


def count_params(arch: SupernetConfig | str | Mapping[str, Any], config: Mapping[str, Any]) -> int:
    """Parameters of the extracted sub-network (batch-norm affine included)."""
    return sum(s.params() for s in layer_specs(supernet_config(arch), config))


# ---------------------------------------------------------------------------
# (sub-network, measured accuracy) pairs
# ---------------------------------------------------------------------------


def collect_accuracy_dataset(net: Any, data: Any, n_subnets: int, rng: np.random.Generator, calibration_size: int = 500, progress: bool = True) -> Tuple[List[Dict[str, Any]], np.ndarray]:
    """Sample ``n_subnets`` sub-networks of a trained supernet and measure each
    one's validation accuracy after batch-norm recalibration (OFA builds its
    predictor's training set the same way)."""
    from hwaml.progress import bar as _bar

    from .progressive_shrinking import calibration_images, evaluate_accuracy, recalibrate_batchnorm

    calib = calibration_images(data.train, calibration_size, 0)
    configs, accs = [], []
    seen = set()
    space = net.space()
    bar = _bar(total=n_subnets, desc="measure sub-networks", enabled=progress)
    while len(configs) < n_subnets:
        cfg = space.sample(rng)
        key = repr(cfg)
        if key in seen:
            continue
        seen.add(key)
        net.set_active_subnet(cfg)
        recalibrate_batchnorm(net, calib, cfg["resolution"])
        accs.append(evaluate_accuracy(net, data.val, cfg["resolution"]))
        configs.append(cfg)
        bar.update(1)
    bar.close()
    return configs, np.asarray(accs, dtype=float)
