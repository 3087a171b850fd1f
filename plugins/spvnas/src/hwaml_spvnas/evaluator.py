"""The ``spvnas_lidar`` evaluator: 3D-NAS sub-networks of an SPVCNN supernet, scored by mIoU.

The paper's steps, top-down:

1. data (:class:`DataConfig`): procedural LiDAR scans (the default, generated
   from a seed) or a SemanticKITTI tree (``source: semantickitti``);
2. the supernet (:meth:`SPVNASEvaluator.supernet`): SPVCNN at 3D-NAS's upper
   widths, trained once by uniform sampling with progressive depth shrinking and
   cached as a plain state dict (JSON metadata beside it);
3. per candidate (:meth:`evaluate`): its sub-network with the supernet's first-k
   channels, batch norm recalibrated, optionally fine-tuned for
   ``training.epochs`` epochs (``mode: supernet``), or trained from scratch
   (``mode: scratch``); validation mIoU after each epoch goes to ``ctx.report``
   and a pruner can stop the trial (``ctx.should_prune``);
4. ``build_model`` gives backends the candidate's static network and a few
   validation scans to cost it on; ``deploy`` writes the searched model's
   checkpoint, its per-class IoU and a bird's-eye picture (ground truth vs
   prediction).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from hwaml import BuiltModel, DeployResult, EvalResult, TrialPruned, hookimpl
from hwaml.config import as_config
from hwaml.plugins import PluginError

from .data import ProceduralLidar, collate, prepare_scan
from .design_space import DesignSpace
from .lidar_sim import SensorConfig
from .metrics import SMALL_CLASSES
from .models import SPVCNN
from .semantic_kitti import CLASS_NAMES, SemanticKITTI
from .training import Trainer, TrainingConfig, evaluate_scans, predict_points, recalibrate_bn

__all__ = ["SPVNASEvaluator", "DataConfig", "SpaceConfig"]


@dataclass
class DataConfig:
    source: str = "procedural"  # procedural | semantickitti
    root: Optional[str] = None  # SemanticKITTI root (holding sequences/)
    map_variant: str = "official"  # official | spvnas (the reference's learning map)
    train_scans: int = 24  # procedural: scans generated; semantickitti: scans kept per sequence (null: all)
    val_scans: int = 8
    seed: int = 0  # procedural set (validation scans come from seed + 1)
    columns: int = 1024  # sensor azimuth steps per revolution (procedural)
    voxel_size: float = 0.2  # metres (0.05 published; coarser for CPU)


@dataclass
class SpaceConfig:
    width_multiplier: float = 0.5
    granularity: int = 4


class SPVNASEvaluator:
    default_objectives = {"miou": "max"}

    def __init__(
        self,
        data: Optional[Mapping[str, Any]] = None,
        space: Optional[Mapping[str, Any]] = None,
        supernet_training: Optional[Mapping[str, Any]] = None,
        training: Optional[Mapping[str, Any]] = None,
        model: str = "spvcnn",
        mode: str = "supernet",
        checkpoint: Optional[str] = None,
        train_if_missing: bool = True,
        cost_scans: int = 2,
        seed: int = 0,
        progress: bool = True,
        name: str = "spvnas_lidar",
    ):
        self.data = as_config(DataConfig, data, "data")
        self.space_cfg = as_config(SpaceConfig, space, "space")
        self.supernet_training = as_config(TrainingConfig, supernet_training, "supernet_training")
        self.training = as_config(TrainingConfig, training if training is not None else {"epochs": 0}, "training")
        if model not in ("spvcnn", "minkunet"):
            raise ValueError(f"model {model!r}: expected 'spvcnn' or 'minkunet'")
        if mode not in ("supernet", "scratch"):
            raise ValueError(f"mode {mode!r}: expected 'supernet' or 'scratch'")
        if self.data.source not in ("procedural", "semantickitti"):
            raise ValueError(f"data.source {self.data.source!r}: expected 'procedural' or 'semantickitti'")
        if self.data.source == "semantickitti" and not self.data.root:
            raise ValueError("data.source semantickitti needs data.root (the folder holding sequences/)")
        if self.data.voxel_size <= 0:
            raise ValueError(f"data.voxel_size must be positive, got {self.data.voxel_size}")
        self.model, self.mode = model, mode
        self.checkpoint, self.train_if_missing = checkpoint, bool(train_if_missing)
        self.cost_scans, self.seed, self.progress, self.name = int(cost_scans), int(seed), bool(progress), name
        self.design = DesignSpace(self.space_cfg.width_multiplier, self.space_cfg.granularity)
        self.num_classes = len(CLASS_NAMES)
        self._scans: Optional[Tuple[list, list]] = None
        self._supernet: Optional[SPVCNN] = None

    # ------------------------------------------------------------------ data
    def scans(self) -> Tuple[List[Tuple[np.ndarray, np.ndarray]], List[Tuple[np.ndarray, np.ndarray]]]:
        """(train, val) lists of ``(points, train ids)``, loaded once."""
        if self._scans is None:
            d = self.data
            if d.source == "procedural":
                sensor = SensorConfig(columns=d.columns)
                train = ProceduralLidar(d.train_scans, d.seed, sensor, map_variant=d.map_variant)
                val = ProceduralLidar(d.val_scans, d.seed + 1, sensor, map_variant=d.map_variant)
            else:
                train = SemanticKITTI(d.root, "train", d.map_variant, d.train_scans)
                val = SemanticKITTI(d.root, "val", d.map_variant, d.val_scans)
            self._scans = ([train[i] for i in range(len(train))], [val[i] for i in range(len(val))])
        return self._scans

    # ------------------------------------------------------------------ supernet
    def _key(self) -> str:
        blob = json.dumps({"data": asdict(self.data), "space": asdict(self.space_cfg), "train": asdict(self.supernet_training), "model": self.model, "seed": self.seed}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def checkpoint_path(self) -> Path:
        if self.checkpoint:
            return Path(self.checkpoint)
        root = Path(os.environ.get("HWAML_CACHE", Path.home() / ".cache" / "hwaml")) / "spvnas"
        return root / f"supernet_{self.model}_{self._key()}.pt"

    def new_network(self, arch: Mapping[str, Any]) -> SPVCNN:
        return SPVCNN(arch, self.num_classes, point_branch=self.model == "spvcnn")

    def sample_arch(self, rng: np.random.Generator, epoch: int) -> Dict[str, Any]:
        cfg = self.design.search_space().sample(rng)
        if epoch < self.supernet_training.depth_shrink_at * self.supernet_training.epochs:
            for st in cfg.values():
                st["depth"] = max(self.design.depths)
        return self.design.arch_from_config(cfg)

    def supernet(self) -> SPVCNN:
        """The trained supernet: loaded from its checkpoint, or trained once and saved."""
        if self._supernet is not None:
            return self._supernet
        net = self.new_network(self.design.supernet_spec())
        path = self.checkpoint_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        # executor workers of one run share the cache: the first trains, the others wait for its file
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if path.exists():
                    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                elif not self.train_if_missing:
                    raise FileNotFoundError(f"supernet checkpoint {path} is missing and train_if_missing is false")
                else:
                    self._train_supernet(net, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        net.eval()
        self._supernet = net
        return net

    def _train_supernet(self, net: SPVCNN, path: Path) -> None:
        train, _ = self.scans()
        tr = Trainer(net, train, self.data.voxel_size, self.supernet_training, self.seed, sample_arch=self.sample_arch, show_progress=self.progress, desc="SPVNAS supernet")
        for epoch in range(self.supernet_training.epochs):
            tr.train_epoch(epoch)
        tmp = path.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps({"spec": net.spec, "model": self.model, "key": self._key()}, indent=1))

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def metric_names(self, ctx):
        return ["miou", "small_miou", "point_accuracy"]

    @hookimpl
    def search_space(self, ctx):
        return self.design.search_space()

    def _arch(self, config: Mapping[str, Any]) -> Dict[str, Any]:
        try:
            return self.design.arch_from_config(config)
        except (KeyError, TypeError) as exc:
            raise PluginError(f"{self.name}: candidate is not a configuration of the SPVNAS space ({exc!r})") from exc

    @hookimpl
    def evaluate(self, candidate, ctx):
        arch = self._arch(candidate.config)
        train, val = self.scans()
        vs = self.data.voxel_size
        seed = self.seed + int(candidate.number or 0)
        if self.mode == "supernet":
            net = self.supernet().subnet(arch)
            recalibrate_bn(net, train[: self.training.bn_calibration_scans], vs)
        else:
            torch.manual_seed(seed)
            net = self.new_network(arch)
        history = []
        epochs = self.training.epochs
        if epochs > 0:
            tr = Trainer(net, train, vs, self.training, seed, show_progress=self.progress, desc=f"trial {candidate.number}")
            for epoch in range(epochs):
                tr.train_epoch(epoch)
                cm = evaluate_scans(net, val, vs, self.num_classes)
                history.append(cm.miou())
                ctx.report(epoch, history[-1])
                if epoch + 1 < epochs and ctx.should_prune():
                    raise TrialPruned(f"epoch {epoch + 1}: val mIoU {history[-1]:.4f}")
        else:
            cm = evaluate_scans(net, val, vs, self.num_classes)
            ctx.report(0, cm.miou())
        metrics = {"miou": cm.miou(), "small_miou": self._small(cm), "point_accuracy": cm.accuracy()}
        artifacts = self._save(net, arch, cm, candidate, ctx)
        return EvalResult(metrics=metrics, artifacts=artifacts, info={"arch": arch, "per_class_iou": cm.per_class(), "miou_per_epoch": history})

    @staticmethod
    def _small(cm) -> float:
        present = [c for c in SMALL_CLASSES if c in cm.per_class()]
        return cm.miou(present) if present else 0.0

    def _save(self, net: SPVCNN, arch, cm, candidate, ctx) -> Dict[str, str]:
        out = Path(ctx.run_dir) / "spvnas" / f"trial_{candidate.number if candidate.number is not None else 'x'}"
        out.mkdir(parents=True, exist_ok=True)
        ckpt = out / "model.pt"
        torch.save(net.state_dict(), ckpt)
        meta = out / "model.json"
        meta.write_text(json.dumps({"spec": net.spec, "model": self.model, "num_classes": self.num_classes, "voxel_size": self.data.voxel_size}, indent=1))
        iou = out / "iou.json"
        iou.write_text(json.dumps({"miou": cm.miou(), "per_class": cm.per_class()}, indent=1))
        return {"checkpoint": str(ckpt), "model_json": str(meta), "iou": str(iou)}

    def load_trained(self, trial) -> SPVCNN:
        arts = trial.artifacts
        if "checkpoint" not in arts or "model_json" not in arts:
            raise FileNotFoundError(f"trial {trial.number} lists no spvnas checkpoint in its artifacts ({sorted(arts)})")
        meta = json.loads(Path(arts["model_json"]).read_text())
        net = SPVCNN(meta["spec"], meta["num_classes"], point_branch=meta["model"] == "spvcnn")
        net.load_state_dict(torch.load(arts["checkpoint"], map_location="cpu", weights_only=True))
        return net.eval()

    def cost_inputs(self) -> List[Any]:
        """The validation scans backends cost a network on (fresh point tensors each call)."""
        _, val = self.scans()
        return [collate([prepare_scan(p, l, self.data.voxel_size)])[0] for p, l in val[: self.cost_scans]]

    @hookimpl
    def build_model(self, candidate, trial, ctx):
        if trial is not None:
            net, trained = self.load_trained(trial), True
        else:
            net, trained = self.new_network(self._arch(candidate.config)).eval(), False
        return BuiltModel(
            module=net,
            input_shape=(4,),
            trained=trained,
            calibration=self.cost_inputs(),
            source=self.name,
            info={"input": "PointTensor: one LiDAR scan's voxel representatives (features x, y, z, remission); calibration holds scans to cost it on",
                  "voxel_size": self.data.voxel_size, "model": self.model},
        )

    @hookimpl
    def deploy(self, trial, ctx):
        from .report import birds_eye_png

        net = self.load_trained(trial)
        _, val = self.scans()
        out = Path(ctx.run_dir) / "spvnas_deploy"
        out.mkdir(parents=True, exist_ok=True)
        cm = evaluate_scans(net, val, self.data.voxel_size, self.num_classes)
        report = out / "per_class_iou.json"
        report.write_text(json.dumps({"miou": cm.miou(), "small_miou": self._small(cm), "per_class": cm.per_class(), "trial": trial.number}, indent=1))
        pts, lab = val[0]
        scan = prepare_scan(pts, lab, self.data.voxel_size)
        pred = predict_points(net, scan).numpy()
        picture = birds_eye_png(pts, lab, pred, out / "bev_gt_vs_pred.png")
        ckpt = out / "model.pt"
        torch.save(net.state_dict(), ckpt)
        (out / "model.json").write_text(Path(trial.artifacts["model_json"]).read_text())
        return DeployResult(
            artifacts={"checkpoint": str(ckpt), "model_json": str(out / "model.json"), "iou_report": str(report), "picture": str(picture)},
            ok=True,
            metrics={"miou": cm.miou()},
            message=f"SPVNAS trial {trial.number}: val mIoU {cm.miou():.4f}",
            source=self.name,
        )
