"""``evaluator=tinynas_digits``: TinyNAS's two stages inside one hwaml run.

``search_space(ctx)`` (called once per run):

1. stage 1 - search-space optimisation (:mod:`hwaml_tinynas.space_optimization`)
   over ``widths x resolutions`` for the run's MCU: the device profile of the
   run's TinyEngine backend (or ``device``), tightened by the run's
   ``peak_sram_kb`` / ``flash_kb`` constraints;
2. stage 2a - trains the once-for-all supernet of the chosen space with
   ofa-nas's progressive shrinking (full network, then elastic kernel, depth,
   expand ratio, with distillation from the full network);

and returns the supernet's sub-network space (OFA's, so ``searcher=ofa_evolution``
and every generic searcher apply). Everything is cached in
``<run_dir>/<state_dir>/`` (``space_opt.{json,csv,png}``, ``arch.json``,
``supernet.pt``), so a resumed run neither re-plans nor retrains.

``evaluate`` (stage 2b, per candidate): selects the sub-network in the supernet,
recalibrates its batch norm on training images and measures validation
accuracy (optionally after a short fine-tune of the extracted network). It
saves ``<run_dir>/<state_dir>/checkpoints/trial_<n>.pt`` (static weights,
calibration images, the test split) where the TinyEngine backend's ``deploy``
reads them to compile the int8 C and score it on the test split.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hwaml import Candidate, EvalResult, RunContext, SearchSpace, hookimpl

log = logging.getLogger("hwaml.tinynas")

__all__ = ["TinyNASDigits", "DIGITS_EPOCHS", "DIGITS_LRS"]

#: progressive shrinking on digits: the published phase order, short phases
DIGITS_EPOCHS: Dict[str, Any] = {"full": 10, "kernel": 3, "depth": [2, 3], "expand": [2, 3]}
DIGITS_LRS: Dict[str, Any] = {"full": 0.1, "kernel": 0.03, "depth": [0.01, 0.03], "expand": [0.01, 0.03]}


def _tinyengine_backend_nodes(cfg: Any) -> List[tuple]:
    """(name, node) of the run's backends that are TinyEngine backends."""
    from hwaml.config import _locate
    from hwaml_tinyengine.backend import TinyEngineBackend

    out = []
    for name, node in ((cfg.get("backend") if cfg is not None else None) or {}).items():
        target = node.get("_target_") if hasattr(node, "get") else None
        if not target:
            continue
        try:
            cls = _locate(str(target))
        except Exception:  # noqa: BLE001 - not ours to judge
            continue
        if isinstance(cls, type) and issubclass(cls, TinyEngineBackend):
            out.append((name, node))
    return out


class TinyNASDigits:
    """TinyNAS on scikit-learn's digits.

    :param base_arch: backbone at width 1.0 (``mcunet_digits``, ``mcunet_test``,
        ``mcunet_imagenet`` or a dict of :class:`hwaml_ofa_nas.supernet.SupernetConfig`).
    :param widths, resolutions: the stage-1 grid of search spaces.
    :param samples_per_space: models sampled per space in stage 1.
    :param min_fit_fraction: fraction of a space's samples that must fit for it to qualify.
    :param device: TinyEngine profile for stage 1; ``null``: the run's TinyEngine backend.
    :param epochs, lrs: progressive-shrinking epochs / learning rates per phase.
    :param finetune_epochs: fine-tune each extracted sub-network this long before scoring (0: none).
    :param calib_images: training images stored for int8 calibration at deploy.
    :param stage1_workers: processes for stage 1.
    """

    default_objectives = {"accuracy": "max"}

    def __init__(
        self,
        base_arch: Any = "mcunet_digits",
        widths: Optional[List[float]] = None,
        resolutions: Optional[List[int]] = None,
        samples_per_space: int = 40,
        min_fit_fraction: float = 0.1,
        device: Optional[str] = None,
        epochs: Optional[Dict[str, Any]] = None,
        lrs: Optional[Dict[str, Any]] = None,
        batch_size: int = 64,
        subnets_per_step: int = 2,
        kd_ratio: float = 1.0,
        calibration_size: int = 300,
        eval_batch_size: int = 500,
        finetune_epochs: int = 0,
        finetune_lr: float = 0.01,
        calib_images: int = 64,
        val_fraction: float = 0.2,
        stage1_workers: int = 1,
        state_dir: str = "tinynas",
        threads: int = 0,
        seed: int = 0,
        progress: bool = True,
    ):
        from .supernet import base_arch as check_base

        self.base = base_arch if isinstance(base_arch, str) else dict(base_arch)
        check_base(self.base)
        self.widths = [float(w) for w in (widths or [0.5, 0.75, 1.0, 1.25, 1.5])]
        self.resolutions = [int(r) for r in (resolutions or [12, 16, 20, 24])]
        if samples_per_space < 1:
            raise ValueError(f"samples_per_space must be >= 1, got {samples_per_space}")
        if not 0.0 <= min_fit_fraction <= 1.0:
            raise ValueError(f"min_fit_fraction must be in [0, 1], got {min_fit_fraction}")
        if finetune_epochs < 0 or calib_images < 1:
            raise ValueError("finetune_epochs must be >= 0 and calib_images >= 1")
        self.samples_per_space = int(samples_per_space)
        self.min_fit_fraction = float(min_fit_fraction)
        self.device = device
        self.epochs = dict(epochs or DIGITS_EPOCHS)
        self.lrs = dict(lrs or DIGITS_LRS)
        self.batch_size = batch_size
        self.subnets_per_step = subnets_per_step
        self.kd_ratio = kd_ratio
        self.calibration_size = calibration_size
        self.eval_batch_size = eval_batch_size
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.calib_images = calib_images
        self.val_fraction = val_fraction
        self.stage1_workers = stage1_workers
        self.state_dir = state_dir
        self.threads = threads
        self.seed = seed
        self.progress = progress
        self.space_opt: Any = None
        self._net: Any = None
        self._run_dir: Optional[Path] = None
        self._calib: Any = None
        self._lock = threading.RLock()

    # -- device and memory limits ---------------------------------------------------
    def device_backend(self, ctx: RunContext) -> Any:
        """The TinyEngine backend whose profile and planner settings stage 1 uses."""
        from hwaml_tinyengine.backend import TinyEngineBackend

        if self.device:
            return TinyEngineBackend(profile=self.device)
        nodes = _tinyengine_backend_nodes(ctx.cfg)
        if len(nodes) != 1:
            found = [n for n, _ in nodes]
            raise ValueError(
                f"evaluator tinynas_digits: stage 1 needs exactly one TinyEngine device, the run has {found or 'none'}; "
                f"add backend=[tinynas_mcu64k] (or another tinynas_*/tinyengine profile) or set evaluator.device=<profile>"
            )
        from hydra.utils import instantiate

        return instantiate(nodes[0][1], _convert_="all")

    def memory_limits(self, ctx: RunContext) -> tuple:
        """``(sram_kb, flash_kb, patch, max_overhead, device)``: the device's memory, tightened by run constraints."""
        from hwaml.config import normalise_constraints

        backend = self.device_backend(ctx)
        sram, flash = float(backend.profile.sram_kb), float(backend.profile.flash_kb)
        bounds = normalise_constraints(ctx.constraints or {})
        if "max" in bounds.get("peak_sram_kb", {}):
            sram = min(sram, bounds["peak_sram_kb"]["max"])
        if "max" in bounds.get("flash_kb", {}):
            flash = min(flash, bounds["flash_kb"]["max"])
        return sram, flash, bool(backend.patch), float(backend.max_overhead), backend.profile.device

    # -- stage 1 ----------------------------------------------------------------------
    def state_path(self, ctx_or_dir: Any) -> Path:
        run_dir = ctx_or_dir.run_dir if hasattr(ctx_or_dir, "run_dir") else ctx_or_dir
        return Path(run_dir) / self.state_dir

    def optimise_space(self, ctx: RunContext) -> Any:
        """Stage 1 (cached in the run directory when its settings match)."""
        from .space_optimization import SpaceOptimization, optimize_search_space

        sram, flash, patch, max_overhead, device = self.memory_limits(ctx)
        state = self.state_path(ctx)
        cached = state / "space_opt.json"
        want = dict(widths=sorted(self.widths), resolutions=sorted(self.resolutions), samples_per_space=self.samples_per_space, seed=int(self.seed), patch=patch, max_overhead=max_overhead, min_fit_fraction=self.min_fit_fraction)
        if cached.is_file():
            prev = SpaceOptimization.load(cached)
            same = all(prev.settings.get(k) == v for k, v in want.items()) and (prev.sram_limit_kb, prev.flash_limit_kb) == (sram, flash)
            if same:
                log.info("tinynas: stage 1 result loaded from %s (w=%g r=%d)", cached, prev.width, prev.resolution)
                return prev
            log.info("tinynas: %s was made with other settings; running stage 1 again", cached)
        log.info("tinynas: stage 1 on %s: %d spaces x %d samples, SRAM <= %g KB, Flash <= %g KB", device, len(self.widths) * len(self.resolutions), self.samples_per_space, sram, flash)
        result = optimize_search_space(
            self.base,
            self.widths,
            self.resolutions,
            sram,
            flash,
            self.samples_per_space,
            seed=self.seed,
            patch=patch,
            max_overhead=max_overhead,
            min_fit_fraction=self.min_fit_fraction,
            workers=self.stage1_workers,
            progress=self.progress,
        )
        result.settings["device"] = device
        files = result.save(state)
        log.info("tinynas: stage 1 chose width %g, resolution %d; table %s, CDF plot %s", result.width, result.resolution, files["csv"], files.get("png"))
        return result

    # -- stage 2a: the supernet ----------------------------------------------------------
    def _train_settings(self) -> Dict[str, Any]:
        return dict(epochs=self.epochs, lrs=self.lrs, batch_size=self.batch_size, subnets_per_step=self.subnets_per_step, kd_ratio=self.kd_ratio, seed=self.seed, val_fraction=self.val_fraction)

    def schedule(self, arch: Any) -> tuple:
        """``(epochs, lrs)`` per phase for this shape: a per-choice list (depth,
        expand) longer than the shape's phases keeps its last entries, so the
        digits schedule also serves shapes with fewer choices."""
        need = {"depth": len(arch.depth_choices) - 1, "expand": len(arch.expand_choices) - 1}
        out = []
        for table, name in ((self.epochs, "epochs"), (self.lrs, "lrs")):
            t = dict(table)
            for key, n in need.items():
                v = t.get(key)
                if isinstance(v, (list, tuple)) and len(v) > n:
                    t[key] = list(v)[len(v) - n :] if n else []
                    if not n:
                        t[key] = list(v)[:0]
            out.append(t)
        return tuple(out)

    def _load_or_train(self, arch: Any, state: Path, train: bool) -> Any:
        import torch

        from hwaml_ofa_nas.progressive_shrinking import build_schedule, save_supernet, train_progressive_shrinking

        from .data import digits_splits
        from .supernet import MCUSupernet

        path = state / "supernet.pt"
        settings = self._train_settings()
        if path.is_file():
            blob = torch.load(path, map_location="cpu", weights_only=False)
            if blob.get("arch") == arch.to_dict() and blob.get("tinynas_settings") == json.loads(json.dumps(settings)):
                net = MCUSupernet(arch)
                net.load_state_dict(blob["state_dict"])
                log.info("tinynas: supernet loaded from %s", path)
                return net.eval()
            if not train:
                raise ValueError(f"{path} holds a supernet of another shape or training setting than this run's")
        elif not train:
            raise FileNotFoundError(f"{path} does not exist: the supernet is trained in search_space(), which this process has not run")
        torch.manual_seed(self.seed)
        net = MCUSupernet(arch)
        data = digits_splits(arch.resolutions[0], self.seed, self.val_fraction).ofa()
        phases = build_schedule(arch.kernel_choices, arch.depth_choices, arch.expand_choices, *self.schedule(arch))
        log.info("tinynas: training the supernet of w=%g r=%d with progressive shrinking (%s)", arch.width_mult, arch.resolutions[0], " -> ".join(p.name for p in phases))
        # The full phase trains one network (the largest): one pass per step is
        # enough; the elastic phases sample ``subnets_per_step`` sub-networks.
        common = dict(batch_size=self.batch_size, kd_ratio=self.kd_ratio, seed=self.seed, calibration_size=self.calibration_size, progress=self.progress)
        full = [p for p in phases if p.name == "full"]
        report = train_progressive_shrinking(net, data, full, subnets_per_step=1, **common) if full else None
        rest = [p for p in phases if p.name != "full"]
        if rest:
            later = train_progressive_shrinking(net, data, rest, subnets_per_step=self.subnets_per_step, **common)
            report = later if report is None else type(later)(report.phases + later.phases)
        save_supernet(net, path, report)
        blob = torch.load(path, map_location="cpu", weights_only=False)
        blob["tinynas_settings"] = settings
        torch.save(blob, path)
        (state / "training.json").write_text(json.dumps(report.to_dict(), indent=1))
        return net.eval()

    def prepare(self, ctx: RunContext, train: bool) -> Any:
        """Stage 1 and the supernet for ``ctx.run_dir`` (run them when ``train``,
        else load what ``search_space`` left there, as executor workers do)."""
        from .space_optimization import SpaceOptimization
        from .supernet import space_arch

        with self._lock:
            run_dir = Path(ctx.run_dir)
            if self._net is not None and self._run_dir == run_dir:
                return self._net
            if self.threads:
                import torch

                torch.set_num_threads(int(self.threads))
            state = self.state_path(run_dir)
            state.mkdir(parents=True, exist_ok=True)
            if train:
                self.space_opt = self.optimise_space(ctx)
            else:
                path = state / "space_opt.json"
                if not path.is_file():
                    raise FileNotFoundError(f"{path} does not exist: search_space() runs stage 1 before any evaluation")
                self.space_opt = SpaceOptimization.load(path)
            arch = space_arch(self.base, self.space_opt.width, self.space_opt.resolution)
            (state / "arch.json").write_text(json.dumps(arch.to_dict(), indent=1))
            self._net = self._load_or_train(arch, state, train)
            self._run_dir = run_dir
            self._calib = None
            return self._net

    @property
    def arch(self) -> Any:
        if self._net is None:
            raise RuntimeError("the supernet is not built yet (search_space has not run)")
        return self._net.arch

    def data(self) -> Any:
        from .data import digits_splits

        return digits_splits(self.arch.resolutions[0], self.seed, self.val_fraction)

    # -- hooks ------------------------------------------------------------------------------
    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        net = self.prepare(ctx, train=True)
        space = net.space()
        space.meta["tinynas"] = {"width": self.space_opt.width, "resolution": self.space_opt.resolution, "state_dir": self.state_dir, "base_arch": self.base}
        space.name = "tinynas"
        return space

    def subnet(self, config: Mapping[str, Any]) -> Any:
        """The static (ReLU6) sub-network ``config`` with batch norm recalibrated."""
        from hwaml_ofa_nas.progressive_shrinking import calibration_images, recalibrate_batchnorm

        net = self._net
        d = self.data()
        if self._calib is None:
            self._calib = calibration_images(d.ofa().train, self.calibration_size, self.seed)
        cfg = net.set_active_subnet(config)
        recalibrate_batchnorm(net, self._calib, cfg["resolution"])
        return net.get_active_subnet().eval()

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        import torch

        from hwaml_ofa_nas.progressive_shrinking import evaluate_accuracy, train_static

        with self._lock:
            self.prepare(ctx, train=False)
            sub = self.subnet(candidate.config)
            d = self.data()
            splits = d.ofa()
            if self.finetune_epochs:
                seed = int(ctx.seed) * 1000 + int(candidate.number or 0)
                train_static(sub, splits, self.finetune_epochs, self.finetune_lr, d.resolution, batch_size=self.batch_size, seed=seed)
            val_acc = evaluate_accuracy(sub, splits.val, None, self.eval_batch_size)
            with torch.no_grad():
                test_acc = float((sub(d.x_test).argmax(1) == d.y_test).double().mean())
        artifacts: Dict[str, str] = {}
        if candidate.number is not None:
            path = self.state_path(ctx) / "checkpoints" / f"trial_{candidate.number}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "config": dict(candidate.config),
                    "arch": self.arch.to_dict(),
                    "state_dict": sub.state_dict(),
                    "calib": d.x_train[: self.calib_images].clone(),
                    "x_test": d.x_test,
                    "y_test": d.y_test,
                    "float_accuracy": test_acc,
                },
                path,
            )
            artifacts["checkpoint"] = str(path)
        n_params = sum(p.numel() for p in sub.parameters())
        metrics = {"accuracy": val_acc, "test_accuracy": test_acc, "params_k": n_params / 1000.0}
        return EvalResult(metrics, artifacts=artifacts, info={"width": self.space_opt.width, "resolution": self.space_opt.resolution, "finetune_epochs": self.finetune_epochs})
