"""``evaluator=gan_paired`` / ``evaluator=gan_unpaired``: image quality of
sub-generators of a once-for-all generator distilled from a teacher.

The pipeline reads top-down as the paper's steps, each behind an explicit,
cached method: :meth:`GanCompressEvaluator.data` (the task's images),
:meth:`~GanCompressEvaluator.teacher` (train the full generator, or load it),
:meth:`~GanCompressEvaluator.supernet` (once-for-all distillation, or load it),
then per candidate :meth:`~GanCompressEvaluator.evaluate`: extract the
sub-generator (weights shared, no retraining; instance norm needs no
statistics recalibration), optionally fine-tune it (reporting per-epoch FID to
the run's pruner), and score it on the held-out slice of the training set
(FID, KID; PSNR and L1 against the ground truth for paired data).

``build_model`` answers the core's model contract: while costing, the static
mobile generator of the configuration with fixed random weights; for a finished
trial, the sub-generator with the trained weights found through the trial's
artifacts. ``deploy`` writes it as ONNX (checked with onnxruntime), measures
onnxruntime CPU latency against the teacher's, scores both on the test split and
writes an image grid (inputs / teacher / student / ground truth).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from hwaml import BuiltModel, Candidate, Categorical, DeployResult, EvalResult, RunContext, SearchSpace, Trial, TrialPruned, hookimpl
from hwaml.config import as_config

from .data import DataConfig, TranslationData, cache_dir, load_data
from .generators import CHANNEL_KEYS, ChannelConfig, MobileResnetGenerator, SuperMobileResnetGenerator, channel_choices, count_config_macs, init_weights
from .metrics import FeatureNetConfig, extract_features, feature_net, fid, gaussian_stats, frechet_distance, kid, psnr, real_halves_fid
from .training import (
    StudentConfig,
    SupernetState,
    TeacherConfig,
    TeacherState,
    TrainingConfig,
    build_student,
    build_teacher,
    finetune,
    generate,
    train_supernet,
    train_teacher,
)
from .distill import Distiller, NLayerDiscriminator

log = logging.getLogger("hwaml.gan_compress")

__all__ = ["GanCompressEvaluator", "MetricConfig", "FinetuneConfig", "SUPERNET_ARTIFACT", "TEACHER_ARTIFACT", "FINETUNED_ARTIFACT"]

SUPERNET_ARTIFACT = "supernet"
TEACHER_ARTIFACT = "teacher"
FINETUNED_ARTIFACT = "finetuned"


@dataclass(frozen=True)
class MetricConfig:
    """How quality is measured (``metric:``).

    :param feature_net: a TorchScript feature network (NCHW in [-1, 1] -> [N, D]);
        ``None``: the project's Fashion-MNIST classifier (trained once, cached).
    :param training: how that classifier is trained (:class:`~hwaml_gan_compress.metrics.FeatureNetConfig`).
    :param kid_subsets: subsets KID is averaged over.
    """

    feature_net: Optional[str] = None
    training: Optional[Dict[str, Any]] = None
    kid_subsets: int = 20


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning of each evaluated sub-generator (``finetune:``); 0 epochs: none (the search default)."""

    epochs: int = 0
    decay_epochs: int = 0


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _save(path: Path, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(dict(tensors), tmp)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))


def _load(path: Path) -> Dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


class GanCompressEvaluator:
    """Quality of sub-generators of a once-for-all mobile generator (GAN Compression).

    :param data: a :class:`~hwaml_gan_compress.data.DataConfig` or mapping (source, sizes ...).
    :param teacher: a :class:`~hwaml_gan_compress.training.TeacherConfig` or mapping (arch, ngf, layers ...).
    :param student: a :class:`~hwaml_gan_compress.training.StudentConfig` or mapping (ngf, channels, layers ...).
    :param training: a :class:`~hwaml_gan_compress.training.TrainingConfig` or mapping (epochs, loss weights ...).
    :param metric: a :class:`MetricConfig` or mapping.
    :param finetune: a :class:`FinetuneConfig` or mapping.
    :param checkpoint_dir: where the teacher and supernet are kept; default: a
        cache folder named after the settings (``$HWAML_CACHE_DIR/gan_compress``).
    :param train_if_missing: train the teacher / supernet when the checkpoint is missing.
    :param latency_repeats: timed onnxruntime runs per round of teacher and student when deploying
        (5 interleaved rounds, one thread, batch 1; ``latency_ms`` is the smallest CPU time of the
        calling thread, ``latency_wall_ms`` the smallest wall time).
    :param name: the component's name (``DeployResult.source``, ``BuiltModel.source``).
    """

    default_objectives = {"fid": "min"}

    def __init__(
        self,
        data: Union[DataConfig, Mapping[str, Any], None] = None,
        teacher: Union[TeacherConfig, Mapping[str, Any], None] = None,
        student: Union[StudentConfig, Mapping[str, Any], None] = None,
        training: Union[TrainingConfig, Mapping[str, Any], None] = None,
        metric: Union[MetricConfig, Mapping[str, Any], None] = None,
        finetune: Union[FinetuneConfig, Mapping[str, Any], None] = None,
        checkpoint_dir: Optional[str] = None,
        train_if_missing: bool = True,
        eval_batch_size: int = 100,
        latency_repeats: int = 30,
        seed: int = 0,
        progress: bool = True,
        name: str = "gan_compress",
    ):
        self.data_cfg = as_config(DataConfig, data, "data")
        self.teacher_cfg = as_config(TeacherConfig, teacher, "teacher")
        self.student_cfg = as_config(StudentConfig, student, "student")
        self.training = as_config(TrainingConfig, training, "training")
        self.metric = as_config(MetricConfig, metric, "metric")
        self.feature_training = as_config(FeatureNetConfig, self.metric.training, "metric.training")
        self.finetune_cfg = as_config(FinetuneConfig, finetune, "finetune")
        self.choices = channel_choices(self.student_cfg.channels, self.student_cfg.ngf)  # checks the choices early
        self.train_if_missing = train_if_missing
        self.eval_batch_size = eval_batch_size
        self.latency_repeats = latency_repeats
        self.seed = seed
        #: the once-for-all generator's (and fine-tuning's) seed
        self.student_seed = seed if self.student_cfg.seed is None else self.student_cfg.seed
        self.progress = progress
        self.name = name
        tr = asdict(self.training)
        del tr["cache_teacher_mb"]  # how, not what, is computed: not part of the cache keys
        teacher_keys = {k: v for k, v in tr.items() if not k.startswith("supernet") and k != "lambda_distill"}
        data_key = asdict(self.data_cfg)
        if data_key["image_size"] is None:
            data_key["image_size"] = 64  # the field's old default: native-size caches keep their names
        elif self.data_cfg.source.startswith("fashion"):
            data_key["fashion_side"] = self.data_cfg.side  # upsampled Fashion-MNIST (image_size used to be ignored there)
        self._teacher_key = _digest({"data": data_key, "teacher": asdict(self.teacher_cfg), "training": teacher_keys, "seed": seed})
        student_key = asdict(self.student_cfg)
        for key in ("init", "seed"):
            if student_key[key] is None:
                del student_key[key]  # the same cache file as before the field existed
        self._supernet_key = _digest({"teacher": self._teacher_key, "student": student_key, "training": tr, "seed": seed})
        root = Path(checkpoint_dir) if checkpoint_dir else cache_dir()
        self.teacher_path = root / f"teacher_{self.data_cfg.source}_{self._teacher_key}.pt"
        self.supernet_path = root / f"supernet_{self.data_cfg.source}_{self._supernet_key}.pt"
        self._data: Optional[TranslationData] = None
        self._teacher: Optional[TeacherState] = None
        self._supernet: Optional[SupernetState] = None
        self._features: Optional[nn.Module] = None
        self._real_stats: Dict[str, Any] = {}
        self._lock = threading.RLock()

    # -- lazily built state -------------------------------------------------------
    def data(self) -> TranslationData:
        with self._lock:
            if self._data is None:
                self._data = load_data(self.data_cfg)
                if self.teacher_cfg.arch == "resnet" and self._data.image_shape[1] % 4:
                    raise ValueError(f"images of {self._data.image_shape}: the ResNet generators need sides divisible by 4")
            return self._data

    def features(self) -> nn.Module:
        """The FID feature network (the user's TorchScript file, or the project's classifier)."""
        with self._lock:
            if self._features is None:
                root = self.data_cfg.root if self.data_cfg.source.startswith("fashion") else None
                self._features = feature_net(self.metric.feature_net, self.feature_training, root, self.progress)
            return self._features

    def _real(self, split: str) -> Dict[str, Any]:
        """Features, Gaussian fit and metric floor of the real B images of a split."""
        with self._lock:
            if split not in self._real_stats:
                images = getattr(self.data(), f"{split}_b")
                feats = extract_features(self.features(), images)
                self._real_stats[split] = {"features": feats, "stats": gaussian_stats(feats), "fid_real_halves": real_halves_fid(self.features(), images, self.seed)}
            return self._real_stats[split]

    def score(self, generator: nn.Module, split: str = "val") -> Dict[str, float]:
        """Quality of ``generator`` on a split: FID and KID against the real B images; PSNR and L1 when paired."""
        data = self.data()
        a, b = getattr(data, f"{split}_a"), getattr(data, f"{split}_b")
        fake = generate(generator, a, self.eval_batch_size)
        real = self._real(split)
        feats = extract_features(self.features(), fake)
        out = {
            "fid": frechet_distance(*real["stats"], *gaussian_stats(feats)),
            "kid": kid(real["features"], feats, subsets=self.metric.kid_subsets, seed=self.seed),
        }
        if data.paired:
            out["psnr"] = psnr(fake, b)
            out["l1"] = float((fake - b).abs().mean())
        for k, v in out.items():
            if not np.isfinite(v):
                raise FloatingPointError(f"{self.name}: {k} is {v} on the {split} split (the generator diverged?)")
        return out

    def teacher(self) -> TeacherState:
        """The trained teacher: loaded from :attr:`teacher_path`, or trained (and saved) when missing."""
        with self._lock:
            if self._teacher is None:
                data = self.data()
                if self.teacher_path.is_file():
                    self._teacher = self._load_teacher(self.teacher_path)
                elif self.train_if_missing:
                    log.info("%s: training the teacher (%s), cached at %s", self.name, data.description, self.teacher_path)
                    state = train_teacher(data, self.teacher_cfg, self.training, self.seed, self.progress, score=lambda g: self.score(g)["fid"])
                    tensors = {"G": state.G.state_dict(), "D": state.D.state_dict()}
                    if state.G_reverse is not None and state.D_reverse is not None:
                        tensors.update({"G_reverse": state.G_reverse.state_dict(), "D_reverse": state.D_reverse.state_dict()})
                    _save(self.teacher_path, tensors, {"teacher": asdict(self.teacher_cfg), "data": asdict(self.data_cfg), "history": state.history})
                    self._teacher = state
                else:
                    raise FileNotFoundError(f"teacher checkpoint {self.teacher_path} does not exist and train_if_missing is false")
            return self._teacher

    def _load_teacher(self, path: Path) -> TeacherState:
        data = self.data()
        state = _load(path)
        G = build_teacher(self.teacher_cfg, data.input_nc, data.output_nc)
        G.load_state_dict(state["G"])
        D = self._discriminator(data.input_nc + data.output_nc if data.paired else data.output_nc)
        D.load_state_dict(state["D"])
        meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
        return TeacherState(G.eval(), D.eval(), history=meta.get("history", []))

    def _discriminator(self, input_nc: int) -> NLayerDiscriminator:
        return NLayerDiscriminator(input_nc, self.training.ndf, self.training.n_layers_D)

    def supernet(self) -> SupernetState:
        """The once-for-all generator: loaded from :attr:`supernet_path`, or distilled from the teacher (and saved)."""
        with self._lock:
            if self._supernet is None:
                if self.supernet_path.is_file():
                    self._supernet = self._load_supernet(self.supernet_path)
                elif self.train_if_missing:
                    teacher = self.teacher()
                    log.info("%s: training the once-for-all generator, cached at %s", self.name, self.supernet_path)
                    init = self._load_supernet(Path(self.student_cfg.init)) if self.student_cfg.init else None
                    state = train_supernet(
                        self.data(), teacher, self.teacher_cfg, self.student_cfg, self.training, self.student_seed, self.progress,
                        score=lambda g: self.score(g)["fid"], init=init,
                    )  # fmt: skip
                    if init is not None:
                        state.history = list(init.history) + state.history
                    tensors = {"G": state.supernet.state_dict(), "A": state.distiller.state_dict(), "D": state.D.state_dict()}
                    meta = {"student": asdict(self.student_cfg), "choices": self.choices, "adapters": [list(a.weight.shape[:2]) for a in state.distiller.adapters], "history": state.history}
                    _save(self.supernet_path, tensors, meta)
                    self._supernet = state
                else:
                    raise FileNotFoundError(f"supernet checkpoint {self.supernet_path} does not exist and train_if_missing is false")
            return self._supernet

    def _load_supernet(self, path: Path) -> SupernetState:
        data = self.data()
        state = _load(path)
        net = build_student(self.student_cfg, data.input_nc, data.output_nc)
        net.load_state_dict(state["G"])
        meta = json.loads(path.with_suffix(".json").read_text())
        shapes = meta["adapters"]  # [out (teacher), in (student)] per layer
        distiller = Distiller([s[1] for s in shapes], [s[0] for s in shapes])
        distiller.load_state_dict(state["A"])
        D = self._discriminator(data.input_nc + data.output_nc if data.paired else data.output_nc)
        D.load_state_dict(state["D"])
        return SupernetState(net.eval(), distiller, D.eval(), meta.get("history", []))

    def subgenerator(self, config: Any) -> MobileResnetGenerator:
        """The static sub-generator of ``config`` with the supernet's shared weights."""
        cfg = ChannelConfig.from_any(config)
        with self._lock:
            return self.supernet().supernet.extract(cfg).eval()

    def macs(self, config: Any) -> int:
        data_shape = self._image_shape()
        return count_config_macs(config, data_shape[0], self._output_nc(), self.student_cfg.n_blocks, data_shape[1], data_shape[2])

    def _image_shape(self):
        return self.data().image_shape

    def _output_nc(self) -> int:
        return self.data().output_nc

    # -- hooks --------------------------------------------------------------------------
    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["fid", "kid", "psnr", "l1"] if self.data_cfg.paired else ["fid", "kid"]

    def space(self) -> SearchSpace:
        """The channel-configuration space (cheap: no training)."""
        dims = [Categorical(key, list(choice)) for key, choice in zip(CHANNEL_KEYS, self.choices)]
        meta = {"channel_keys": list(CHANNEL_KEYS), "channel_choices": self.choices, "student_ngf": self.student_cfg.ngf, "n_blocks": self.student_cfg.n_blocks}
        return SearchSpace(dims, meta=meta, name=f"gan_compress_{self.data_cfg.source}")

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        # the teacher and the once-for-all generator are trained (or loaded) here, once, before any worker starts
        self.supernet()
        return self.space()

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        config = ChannelConfig.from_any(candidate.config)
        config.check_within(self.choices)
        sub = self.subgenerator(config)
        artifacts = {SUPERNET_ARTIFACT: str(self.supernet_path), TEACHER_ARTIFACT: str(self.teacher_path)}
        info: Dict[str, Any] = {"config_str": config.to_str(), "macs": self.macs(config), "split": "val", "val_images": int(len(self.data().val_a))}
        if self.finetune_cfg.epochs + self.finetune_cfg.decay_epochs > 0:
            sub, curve = self._finetune(sub, candidate, ctx)
            path = Path(ctx.run_dir) / "gan_compress" / f"trial{candidate.number}_finetuned.pt"
            _save(path, {"G": sub.state_dict()}, {"config": config.to_dict(), "curve": curve})
            artifacts[FINETUNED_ARTIFACT] = str(path)
            info["finetune_fid"] = curve
        metrics = self.score(sub, "val")
        info["fid_real_halves"] = self._real("val")["fid_real_halves"]
        return EvalResult(metrics, artifacts=artifacts, info=info)

    def _finetune(self, sub: MobileResnetGenerator, candidate: Candidate, ctx: RunContext):
        state, teacher = self.supernet(), self.teacher()
        curve: List[float] = []

        def on_epoch(epoch: int, model: nn.Module) -> None:
            value = self.score(model, "val")["fid"]
            curve.append(value)
            ctx.report(epoch, value)
            if ctx.should_prune():
                raise TrialPruned(f"fine-tune epoch {epoch}: fid {value:.4g}")

        tuned = finetune(
            self.data(), sub, teacher.G, state.distiller, state.D, self.teacher_cfg, self.student_cfg, self.training,
            self.finetune_cfg.epochs, self.finetune_cfg.decay_epochs, self.student_seed, on_epoch, self.progress,
        )  # fmt: skip
        return tuned, curve

    def _input_shape(self) -> tuple:
        if self._data is not None:
            return self._data.image_shape
        side = self.data_cfg.side
        return (1 if self.data_cfg.source.startswith("fashion") else self.data_cfg.channels, side, side)

    @hookimpl
    def build_model(self, candidate: Candidate, trial: Optional[Trial], ctx: RunContext) -> BuiltModel:
        """The candidate as a network.

        ``trial is None`` (costing): the static mobile generator of the
        configuration with weights from a fixed seed (shapes are what costs
        depend on; no training, no data read). A finished trial: the
        sub-generator with its trained weights (fine-tuned ones when the trial
        has them), found through the trial's artifacts, with held-out inputs as
        calibration and the test split as ``test_data``.
        """
        config = ChannelConfig.from_any(candidate.config)
        config.check_within(self.choices)
        shape = self._input_shape()
        out_nc = shape[0] if self.data_cfg.source.startswith("fashion") or self._data is None else self._data.output_nc
        macs = float(count_config_macs(config, shape[0], out_nc, self.student_cfg.n_blocks, shape[1], shape[2]))
        info: Dict[str, Any] = {"config": config.to_dict(), "config_str": config.to_str()}
        if trial is None:
            module = init_weights(MobileResnetGenerator(config, shape[0], out_nc, self.student_cfg.n_blocks), seed=0).eval()
            return BuiltModel(module, shape, trained=False, macs=macs, source=self.name, info=info)
        module = self._trained_subgenerator(trial, config)
        data = self.data()
        return BuiltModel(
            module, shape, trained=True, calibration=data.val_a[:64], test_data=(data.test_a, data.test_b), macs=macs, source=self.name,
            info={**info, "trial": trial.number, "weights": self._weights_of(trial)},
        )  # fmt: skip

    def _weights_of(self, trial: Trial) -> str:
        arts = trial.artifacts or {}
        if FINETUNED_ARTIFACT in arts:
            return str(arts[FINETUNED_ARTIFACT])
        if SUPERNET_ARTIFACT in arts:
            return str(arts[SUPERNET_ARTIFACT])
        raise ValueError(
            f"trial {trial.number} ({trial.status}) lists neither a {FINETUNED_ARTIFACT!r} nor a {SUPERNET_ARTIFACT!r} artifact (it has {sorted(arts)}): "
            f"it was not evaluated by {self.name}, so there are no trained weights"
        )

    def _trained_subgenerator(self, trial: Trial, config: ChannelConfig) -> MobileResnetGenerator:
        path = Path(self._weights_of(trial))
        data = self.data()
        if FINETUNED_ARTIFACT in (trial.artifacts or {}):
            sub = MobileResnetGenerator(config, data.input_nc, data.output_nc, self.student_cfg.n_blocks)
            sub.load_state_dict(_load(path)["G"])
            return sub.eval()
        if path.resolve() == self.supernet_path.resolve():
            return self.subgenerator(config)
        return self._load_supernet(path).supernet.extract(config).eval()

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> Optional[DeployResult]:
        from .export import compare_latency, export_onnx, image_grid
        from .macs import count_module_macs, count_params

        arts = trial.artifacts or {}
        if SUPERNET_ARTIFACT not in arts and FINETUNED_ARTIFACT not in arts:
            return DeployResult({}, ok=False, message=f"trial {trial.number} ({trial.status}) has no trained generator among its artifacts: {self.name} did not evaluate it", source=self.name)
        model = self.build_model(trial.candidate, trial, ctx)
        sub = model.module
        teacher = self.teacher().G
        data = self.data()
        out = Path(ctx.run_dir) / "deploy"
        stem = out / f"gan_subgenerator_trial{trial.number}"
        onnx = export_onnx(sub, stem.with_suffix(".onnx"), data.test_a[:4])
        one = (1, *model.input_shape)
        # interleaved rounds: a change in the machine's load hits both
        student_t, teacher_t = compare_latency([sub, teacher], one, threads=1, rounds=5, repeats=self.latency_repeats)
        student_ms, teacher_ms = student_t["cpu"], teacher_t["cpu"]
        student_q, teacher_q = self.score(sub, "test"), self.score(teacher, "test")
        n = min(8, len(data.test_a))
        rows = [data.test_a[:n], generate(teacher, data.test_a[:n]), generate(sub, data.test_a[:n])]
        if data.paired:
            rows.append(data.test_b[:n])
        grid = image_grid(rows, stem.with_name(stem.name + "_grid.png"))
        teacher_macs = count_module_macs(teacher, model.input_shape)
        student_macs = count_module_macs(sub, model.input_shape)
        weights = stem.with_suffix(".pt")
        _save(weights, {"G": sub.state_dict()}, {"config": ChannelConfig.from_any(trial.candidate.config).to_dict(), "trial": trial.number, "test": student_q})
        metrics = {
            "fid": student_q["fid"],
            "teacher_fid": teacher_q["fid"],
            "fid_real_halves": self._real("test")["fid_real_halves"],
            "macs_m": student_macs / 1e6,
            "teacher_macs_m": teacher_macs / 1e6,
            "macs_reduction": teacher_macs / max(1, student_macs),
            "params_m": count_params(sub) / 1e6,
            "teacher_params_m": count_params(teacher) / 1e6,
            "latency_ms": student_ms,
            "teacher_latency_ms": teacher_ms,
            "speedup": teacher_ms / student_ms,
            "latency_wall_ms": student_t["wall"],
            "teacher_latency_wall_ms": teacher_t["wall"],
            "speedup_wall": teacher_t["wall"] / student_t["wall"],
            "onnx_max_abs_diff": onnx["max_abs_diff"],
        }
        if data.paired:
            metrics.update({"psnr": student_q["psnr"], "teacher_psnr": teacher_q["psnr"]})
        files = {"onnx": onnx["path"], "weights": str(weights), "grid": grid}
        msg = (
            f"sub-generator {ChannelConfig.from_any(trial.candidate.config).to_str()}: {metrics['macs_reduction']:.1f}x fewer MACs, "
            f"{metrics['speedup']:.1f}x faster (onnxruntime, 1 thread, CPU time; {metrics['speedup_wall']:.1f}x wall), test FID {metrics['fid']:.2f} vs teacher {metrics['teacher_fid']:.2f}"
        )
        return DeployResult(files, ok=True, metrics=metrics, message=msg, source=self.name)
