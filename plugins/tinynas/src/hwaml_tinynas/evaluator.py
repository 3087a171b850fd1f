"""``evaluator=tinynas_digits``: TinyNAS's two stages inside one hwaml run.

The evaluator reads top-down as the paper's steps:

1. stage 1, :meth:`TinyNASDigits.optimise_space` - search-space optimisation
   (:mod:`hwaml_tinynas.space_optimization`) over ``stage1.widths x
   stage1.resolutions`` for the run's MCU (:mod:`hwaml_tinynas.memory`: the
   ``device`` profile, or the run's TinyEngine backend's, tightened by the
   run's ``peak_sram_kb`` / ``flash_kb`` constraints);
2. stage 2a, :meth:`TinyNASDigits.load_or_train_supernet` - the once-for-all
   supernet of the chosen space trained with ofa-nas's progressive shrinking
   (:mod:`hwaml_tinynas.training`);
3. stage 2b, ``evaluate`` per candidate - the sub-network selected in the
   supernet, batch norm recalibrated on training images, validation accuracy
   (optionally after a short fine-tune); its weights are saved as the trial's
   ``checkpoint`` / ``checkpoint_meta`` artifacts (:mod:`hwaml_tinynas.checkpoints`).

``search_space`` runs steps 1 and 2a (cached in ``<run_dir>/<state_dir>/``:
``space_opt.{json,csv,png}``, ``supernet.{pt,json}``, so a resumed run and an
executor worker reload instead of re-planning or retraining) and returns the
supernet's sub-network space (OFA's, so ``searcher=ofa_evolution`` and every
generic searcher apply).

``build_model`` gives backends the network: while costing (no trial) the
static ReLU6 sub-network of the candidate in the chosen supernet shape,
untrained (cheap: no supernet needed); for a finished trial the trained
sub-network from its checkpoint, with calibration images and the test split
for TinyEngine's int8 deploy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from hwaml import BuiltModel, Candidate, EvalResult, RunContext, SearchSpace, Trial, TrialPruned, hookimpl

from .config import DIGITS_EPOCHS, DIGITS_LRS, DataConfig, FinetuneConfig, Stage1Config, TrainingConfig

log = logging.getLogger("hwaml.tinynas")

__all__ = ["TinyNASDigits", "DIGITS_EPOCHS", "DIGITS_LRS", "DataConfig", "Stage1Config", "TrainingConfig", "FinetuneConfig"]

SOURCE = "tinynas_digits"


def _config_key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


class TinyNASDigits:
    """TinyNAS on scikit-learn's digits.

    :param base_arch: backbone at width 1.0 (``mcunet_digits``, ``mcunet_test``,
        ``mcunet_imagenet`` or a dict of :class:`hwaml_ofa_nas.supernet.SupernetConfig`).
    :param device: TinyEngine profile whose memory stage 1 fits; ``null``: the
        profile of the run's TinyEngine backend.
    :param stage1: :class:`~hwaml_tinynas.config.Stage1Config` (``widths``,
        ``resolutions``, ``samples_per_space``, ``min_fit_fraction``, ``workers``).
    :param training: :class:`~hwaml_tinynas.config.TrainingConfig` (progressive
        shrinking ``epochs``/``lrs`` per phase, ``batch_size``,
        ``subnets_per_step``, ``kd_ratio``, ``calibration_size``).
    :param finetune: :class:`~hwaml_tinynas.config.FinetuneConfig` (``epochs``,
        ``lr``) of each extracted sub-network before scoring (0 epochs: none).
    :param data: :class:`~hwaml_tinynas.config.DataConfig` (``dataset``:
        ``digits`` | ``fashion_mnist`` | ``idx``, ``root``, ``val_images``,
        ``train_images``, ``test_images``).
    :param eval_batch_size: images per batch when scoring.
    :param calib_images: training images a deploy step gets for int8 calibration.
    :param val_fraction: share of the training split held out for ranking (digits).
    :param state_dir: the evaluator's folder in the run directory.
    :param threads: torch threads (0: leave as set, e.g. by the executor).
    :param seed: data split, supernet initialisation and training order.
    :param progress: progress bars (only when the run's ``progress`` allows them).
    """

    default_objectives = {"accuracy": "max"}
    #: what ``evaluate`` reports (``metric_names``)
    METRICS = ("accuracy", "test_accuracy", "params_k")

    def __init__(
        self,
        base_arch: Any = "mcunet_digits",
        device: Optional[str] = None,
        stage1: Optional[Union[Stage1Config, Mapping[str, Any]]] = None,
        training: Optional[Union[TrainingConfig, Mapping[str, Any]]] = None,
        finetune: Optional[Union[FinetuneConfig, Mapping[str, Any]]] = None,
        data: Optional[Union[DataConfig, Mapping[str, Any]]] = None,
        eval_batch_size: int = 500,
        calib_images: int = 64,
        val_fraction: float = 0.2,
        state_dir: str = "tinynas",
        threads: int = 0,
        seed: int = 0,
        progress: bool = True,
    ):
        from hwaml.config import as_config

        from .supernet import base_arch as check_base

        self.base = base_arch if isinstance(base_arch, str) else dict(base_arch)
        check_base(self.base)
        self.device = device
        self.stage1 = as_config(Stage1Config, stage1, "stage1")
        self.training = as_config(TrainingConfig, training, "training")
        self.finetune = as_config(FinetuneConfig, finetune, "finetune")
        self.data = as_config(DataConfig, data, "data")
        if calib_images < 1 or eval_batch_size < 1:
            raise ValueError("calib_images and eval_batch_size must be >= 1")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.eval_batch_size = int(eval_batch_size)
        self.calib_images = int(calib_images)
        self.val_fraction = float(val_fraction)
        self.state_dir = state_dir
        self.threads = int(threads)
        self.seed = int(seed)
        self.progress = progress
        # lazy state of one run directory (filled by prepare())
        self.space_opt: Any = None
        self._net: Any = None
        self._run_dir: Optional[Path] = None
        self._calib: Any = None
        self._lock = threading.RLock()

    # -- where things live -------------------------------------------------------------
    def state_path(self, ctx_or_dir: Any) -> Path:
        """``<run_dir>/<state_dir>``: stage 1's result and the trained supernet."""
        run_dir = ctx_or_dir.run_dir if isinstance(ctx_or_dir, RunContext) else ctx_or_dir
        return Path(run_dir) / self.state_dir

    # -- stage 1 ------------------------------------------------------------------------
    def memory_budget(self, ctx: RunContext) -> Any:
        """The :class:`~hwaml_tinynas.memory.MemoryBudget` stage 1 fits."""
        from .memory import memory_budget

        return memory_budget(self.device, ctx.cfg, ctx.constraints)

    def optimise_space(self, ctx: RunContext) -> Any:
        """Stage 1 (its saved result reused when the settings and memory match)."""
        from .space_optimization import SpaceOptimization, optimize_search_space

        budget = self.memory_budget(ctx)
        s = self.stage1
        state = self.state_path(ctx)
        cached = state / "space_opt.json"
        want = dict(widths=sorted(s.widths), resolutions=sorted(s.resolutions), samples_per_space=s.samples_per_space, seed=self.seed, patch=budget.patch, max_overhead=budget.max_overhead, min_fit_fraction=s.min_fit_fraction)
        if cached.is_file():
            prev = SpaceOptimization.load(cached)
            if all(prev.settings.get(k) == v for k, v in want.items()) and (prev.sram_limit_kb, prev.flash_limit_kb) == (budget.sram_kb, budget.flash_kb):
                log.info("tinynas: stage 1 result loaded from %s (w=%g r=%d)", cached, prev.width, prev.resolution)
                return prev
            log.info("tinynas: %s was made with other settings; running stage 1 again", cached)
        log.info("tinynas: stage 1 on %s: %d spaces x %d samples, SRAM <= %g KB, Flash <= %g KB", budget.device, len(s.widths) * len(s.resolutions), s.samples_per_space, budget.sram_kb, budget.flash_kb)
        result = optimize_search_space(
            self.base,
            s.widths,
            s.resolutions,
            budget.sram_kb,
            budget.flash_kb,
            s.samples_per_space,
            seed=self.seed,
            patch=budget.patch,
            max_overhead=budget.max_overhead,
            min_fit_fraction=s.min_fit_fraction,
            workers=s.workers,
            progress=self.progress,
        )
        result.settings["device"] = budget.device
        files = result.save(state)
        log.info("tinynas: stage 1 chose width %g, resolution %d; table %s, CDF plot %s", result.width, result.resolution, files["csv"], files.get("png"))
        return result

    def load_space_opt(self, run_dir: Any) -> Any:
        """Stage 1's result that ``search_space`` left in the run directory."""
        from .space_optimization import SpaceOptimization

        path = self.state_path(run_dir) / "space_opt.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: search_space() runs stage 1 before any evaluation")
        return SpaceOptimization.load(path)

    def arch_of(self, space_opt: Any) -> Any:
        """The supernet shape of the space stage 1 chose."""
        from .supernet import space_arch

        return space_arch(self.base, space_opt.width, space_opt.resolution)

    # -- stage 2a: the supernet --------------------------------------------------------------
    def supernet_settings(self) -> Dict[str, Any]:
        """What a saved supernet must have been trained with to be reused."""
        from dataclasses import asdict

        return json.loads(json.dumps(dict(asdict(self.training), seed=self.seed, val_fraction=self.val_fraction, data=self.data_settings())))

    def data_settings(self) -> Dict[str, Any]:
        """The data options a checkpoint records (so deploy reloads the same splits)."""
        from dataclasses import asdict

        return asdict(self.data)

    def load_or_train_supernet(self, arch: Any, state: Path, train: bool) -> Any:
        """The supernet saved in ``state`` when its shape and settings match,
        else (``train``) a newly trained one, saved there."""
        from .training import load_supernet, read_supernet_meta, save_supernet, train_supernet

        meta = read_supernet_meta(state)
        if meta is not None and meta.get("arch") == arch.to_dict() and meta.get("settings") == self.supernet_settings():
            log.info("tinynas: supernet loaded from %s", state)
            return load_supernet(state)
        if not train:
            if meta is None:
                raise FileNotFoundError(f"{state / 'supernet.json'} does not exist: the supernet is trained in search_space(), which this run has not run")
            raise ValueError(f"{state} holds a supernet of another shape or training setting than this run's")
        data = self.splits(arch.resolutions[0]).ofa()
        net, report = train_supernet(arch, self.training, data, self.seed, self.progress)
        save_supernet(net, state, self.supernet_settings(), report)
        (state / "training.json").write_text(json.dumps(report.to_dict(), indent=1))
        return net

    def prepare(self, ctx: RunContext, train: bool) -> Any:
        """Stage 1 and the supernet for ``ctx.run_dir``: run them (``train``, as
        ``search_space`` does) or load what ``search_space`` left there (as
        executor workers do). Returns the supernet."""
        with self._lock:
            run_dir = Path(ctx.run_dir)
            if self._net is not None and self._run_dir == run_dir:
                return self._net
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            state = self.state_path(run_dir)
            state.mkdir(parents=True, exist_ok=True)
            space_opt = self.optimise_space(ctx) if train else self.load_space_opt(run_dir)
            net = self.load_or_train_supernet(self.arch_of(space_opt), state, train)
            self.space_opt, self._net, self._run_dir, self._calib = space_opt, net, run_dir, None
            return net

    def supernet(self) -> Any:
        """The trained supernet of the prepared run (``prepare`` / ``search_space`` first)."""
        if self._net is None:
            raise RuntimeError("the supernet is not built yet: call search_space(ctx) or prepare(ctx, train=...) first")
        return self._net

    def chosen_arch(self, ctx: RunContext) -> Any:
        """The supernet shape of this run, cheaply: the prepared supernet's, else
        the one ``search_space`` put in ``ctx.space.meta``, else stage 1's saved result."""
        from hwaml_ofa_nas.supernet import supernet_config

        if self._net is not None and self._run_dir == Path(ctx.run_dir):
            return self._net.arch
        meta = (getattr(ctx.space, "meta", None) or {}).get("tinynas") if ctx.space is not None else None
        if meta and "arch" in meta:
            return supernet_config(meta["arch"])
        return self.arch_of(self.load_space_opt(ctx.run_dir))

    # -- data and sub-networks ----------------------------------------------------------------
    def splits(self, resolution: int, seed: Optional[int] = None, val_fraction: Optional[float] = None, data: Optional[Mapping[str, Any]] = None) -> Any:
        """Train / validation / test images at ``resolution`` (this evaluator's
        data set and split by default; ``data``: the options a checkpoint recorded)."""
        from .data import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, digits_splits, idx_splits

        seed = self.seed if seed is None else int(seed)
        cfg = self.data if data is None else DataConfig(**dict(data))
        if cfg.dataset == "digits":
            return digits_splits(int(resolution), seed, self.val_fraction if val_fraction is None else float(val_fraction))
        fashion = cfg.dataset == "fashion_mnist"
        root = cfg.root or FASHION_MNIST_ROOT
        return idx_splits(int(resolution), seed, str(root), int(cfg.val_images), cfg.train_images, cfg.test_images, FASHION_MNIST_CLASSES if fashion else None)

    def subnet(self, config: Mapping[str, Any]) -> Any:
        """The static (ReLU6) sub-network ``config`` of the prepared supernet,
        batch norm recalibrated on training images."""
        from hwaml_ofa_nas.progressive_shrinking import calibration_images, recalibrate_batchnorm

        net = self.supernet()
        if self._calib is None:
            self._calib = calibration_images(self.splits(net.arch.resolutions[0]).ofa().train, self.training.calibration_size, self.seed)
        cfg = net.set_active_subnet(config)
        recalibrate_batchnorm(net, self._calib, cfg["resolution"])
        return net.get_active_subnet().eval()

    # -- hooks ------------------------------------------------------------------------------
    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return list(self.METRICS)

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        net = self.prepare(ctx, train=True)
        space = net.space()
        opt = self.space_opt
        space.meta["tinynas"] = {
            "width": opt.width,
            "resolution": opt.resolution,
            "device": opt.settings.get("device"),
            "sram_limit_kb": opt.sram_limit_kb,
            "flash_limit_kb": opt.flash_limit_kb,
            "arch": net.arch.to_dict(),
            "state_dir": self.state_dir,
            "base_arch": self.base,
        }
        space.name = "tinynas"
        return space

    @hookimpl
    def build_model(self, candidate: Candidate, trial: Optional[Trial], ctx: RunContext) -> BuiltModel:
        from hwaml_ofa_nas.predictors import count_macs
        from hwaml_ofa_nas.supernet import supernet_config

        from .supernet import static_subnet

        if trial is None:
            arch = self.chosen_arch(ctx)
            module = static_subnet(arch, candidate.config).eval()
            return BuiltModel(module, tuple(module.input_shape), trained=False, macs=float(count_macs(arch, candidate.config)), source=SOURCE, info={"width": arch.width_mult})
        from .checkpoints import load_checkpoint

        state, meta = load_checkpoint(trial.artifacts, ctx.run_dir, f"trial {trial.number}")
        if _config_key(meta["config"]) != _config_key(candidate.config):
            raise ValueError(f"trial {trial.number}: its checkpoint holds config {meta['config']}, not the candidate's {dict(candidate.config)}")
        arch = supernet_config(meta["arch"])
        module = static_subnet(arch, meta["config"])
        module.load_state_dict(state)
        module.eval()
        d = self.splits(meta["resolution"], meta["seed"], meta["val_fraction"], meta.get("data", {"dataset": "digits"}))
        return BuiltModel(
            module,
            tuple(module.input_shape),
            trained=True,
            calibration=d.x_train[: int(meta["calib_images"])].clone(),
            test_data=(d.x_test, d.y_test),
            macs=float(count_macs(arch, meta["config"])),
            source=SOURCE,
            info={"float_accuracy": meta["float_accuracy"], "checkpoint": trial.artifacts["checkpoint"]},
        )

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        import torch

        from hwaml_ofa_nas.progressive_shrinking import evaluate_accuracy, train_static

        from .checkpoints import save_checkpoint

        with self._lock:
            net = self.prepare(ctx, train=False)
            sub = self.subnet(candidate.config)
            d = self.splits(net.arch.resolutions[0])
            splits = d.ofa()
            if self.finetune.epochs:
                seed = int(ctx.seed) * 1000 + int(candidate.number or 0)

                def report(epoch: int, model: Any) -> None:
                    # validation accuracy per fine-tuning epoch: what a pruner (pruner=median, hyperband) watches
                    acc = evaluate_accuracy(model, splits.val, None, self.eval_batch_size)
                    ctx.report(epoch, acc)
                    if ctx.should_prune():
                        raise TrialPruned(f"fine-tuning epoch {epoch}: validation accuracy {acc:.4f}")

                train_static(sub, splits, self.finetune.epochs, self.finetune.lr, d.resolution, batch_size=self.training.batch_size, seed=seed, on_epoch=report)
            val_acc = evaluate_accuracy(sub, splits.val, None, self.eval_batch_size)
            with torch.no_grad():
                test_acc = float((sub(d.x_test).argmax(1) == d.y_test).double().mean())
            arch = net.arch.to_dict()
        stem = f"trial_{candidate.number}" if candidate.number is not None else "config_" + hashlib.sha1(_config_key(candidate.config).encode()).hexdigest()[:12]
        meta = {
            "config": dict(candidate.config),
            "arch": arch,
            "resolution": d.resolution,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "data": self.data_settings(),
            "calib_images": self.calib_images,
            "val_accuracy": val_acc,
            "float_accuracy": test_acc,
        }
        artifacts = save_checkpoint(self.state_path(ctx) / "checkpoints", stem, sub, meta)
        n_params = sum(p.numel() for p in sub.parameters())
        metrics = {"accuracy": val_acc, "test_accuracy": test_acc, "params_k": n_params / 1000.0}
        return EvalResult(metrics, artifacts=artifacts, info={"width": self.space_opt.width, "resolution": self.space_opt.resolution, "finetune_epochs": self.finetune.epochs})
