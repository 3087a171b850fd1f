"""``evaluator=tinytl_<target>``: transfer accuracy of a method and lite-residual configuration.

The evaluator reads top-down as the paper's steps:

1. the backbone (GroupNorm + WS, ProxylessNAS layout) pretrained on the source
   task, loaded from its cache or pretrained once when missing;
2. a fresh classifier for the target, lite residual modules where the candidate
   places them (kernel and groups per block), the method's trainable set;
3. frozen weights quantised to 8 bits (per-layer k-means, 256 clusters);
4. transfer with the published recipe, per-epoch validation accuracy reported
   through ``ctx.report`` (the trial stops when ``ctx.should_prune()``);
5. the trained parameters and the frozen 8-bit backbone saved as the trial's
   ``adapted`` artifact, its analytic memory as ``memory_report``.

``build_model`` answers the adapted network (trainable set in ``requires_grad``,
so the ``tinytl_memory`` backend costs it); untrained while costing, the trial's
weights when deploying. ``deploy`` writes the adapted weights and the memory report.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from hwaml import BuiltModel, Candidate, Categorical, DeployResult, EvalResult, Group, RunContext, SearchSpace, Trial, TrialPruned, hookimpl
from hwaml.config import as_config

from .backbone import MobileNetV2Backbone, backbone_config, replace_classifier
from .data import TARGETS, TargetData, load_target
from .lite_residual import LiteResidualModule, LiteSpec, MobileBlock, find_mobile_blocks, published_kernel
from .memory import profile_training_memory
from .methods import METHODS, check_method, configure_method, trainable_summary, uses_lite_residual
from .quantize import Codebook, quantize_frozen_weights
from .training import PretrainConfig, TransferRecipe, load_pretrained, pretrain_backbone, pretrained_path, transfer

log = logging.getLogger("hwaml.tinytl")

__all__ = ["TinyTLEvaluator", "DataConfig", "SearchConfig", "ADAPTED_ARTIFACT", "MEMORY_ARTIFACT", "save_adapted", "load_adapted"]

ADAPTED_ARTIFACT = "adapted"
MEMORY_ARTIFACT = "memory_report"


@dataclass(frozen=True)
class DataConfig:
    """The target's data (``data:`` in the config).

    :param root: Fashion-MNIST IDX folder, image folder, or font folder (letters); null: the defaults.
    :param n_train: training images per class (None: all available).
    :param n_val: validation images per class (what the search optimises).
    :param n_test: test images per class (reported, never optimised).
    :param seed: which images go to which split.
    """

    root: Optional[str] = None
    n_train: Optional[int] = 100
    n_val: int = 50
    n_test: Optional[int] = 200
    seed: int = 0


@dataclass(frozen=True)
class SearchConfig:
    """What the search space holds (``search:`` in the config).

    :param kernels: lite-residual kernel choices (each block keeps those its resolution allows).
    :param groups: lite-residual group-conv choices (each block keeps those dividing its width).
    :param lrs: learning-rate choices (one value: fixed).
    :param methods: method choices; empty: only the evaluator's ``method``.
    """

    kernels: List[int] = field(default_factory=lambda: [3, 5])
    groups: List[int] = field(default_factory=lambda: [2, 4])
    lrs: List[float] = field(default_factory=list)
    methods: List[str] = field(default_factory=list)


def save_adapted(net: nn.Module, books: Mapping[str, Codebook], path: Path, meta: Mapping[str, Any]) -> Dict[str, str]:
    """Only what transfer produced plus the frozen backbone at 8 bits: trainable
    parameters at fp32, frozen conv/linear weights as uint8 codes + codebooks, the
    remaining frozen tensors (norm scales/shifts) at fp32. Weights load with
    ``weights_only=True``; the metadata is JSON beside them."""
    state: Dict[str, torch.Tensor] = {}
    coded = {f"{name}.weight" for name in books}
    for name, p in net.state_dict().items():
        if name in coded:
            continue
        state[name] = p.detach().clone()
    for name, book in books.items():
        state[f"{name}.weight.codes"] = book.codes.clone()
        state[f"{name}.weight.centroids"] = book.centroids.clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    path.with_suffix(".json").write_text(json.dumps(dict(meta), indent=2, default=str))
    return {"weights": str(path), "meta": str(path.with_suffix(".json"))}


def load_adapted(net: nn.Module, path: Union[str, Path]) -> nn.Module:
    """Load :func:`save_adapted`'s file into a network of the same structure."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    full: Dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name.endswith(".weight.codes"):
            base = name[: -len(".codes")]
            full[base] = state[base + ".centroids"][t.long()]
        elif not name.endswith(".weight.centroids"):
            full[name] = t
    net.load_state_dict(full, strict=True)
    return net


class TinyTLEvaluator:
    """Transfer a pretrained backbone to a target with one of the six TinyTL methods.

    :param target: ``fashion_5_9``, ``digits``, ``letters`` or ``imagefolder``.
    :param method: one of :data:`~hwaml_tinytl.methods.METHODS` (``tinytl_lb`` as published).
    :param arch: backbone preset (``proxyless_tiny``, ``test``) or a mapping; ``arch_overrides`` changes keys.
    :param data: a :class:`DataConfig` or mapping.
    :param pretrain: a :class:`~hwaml_tinytl.training.PretrainConfig` or mapping.
    :param training: a :class:`~hwaml_tinytl.training.TransferRecipe` or mapping.
    :param search: a :class:`SearchConfig` or mapping.
    :param name: the component's name.

    Constructing it does no work; data and the pretrained backbone are loaded by
    :meth:`target_data` and :meth:`pretrained` on first use.
    """

    default_objectives = {"accuracy": "max"}

    def __init__(
        self,
        target: str = "fashion_5_9",
        method: str = "tinytl_lb",
        arch: Any = "proxyless_tiny",
        arch_overrides: Optional[Mapping[str, Any]] = None,
        data: Union[DataConfig, Mapping[str, Any], None] = None,
        pretrain: Union[PretrainConfig, Mapping[str, Any], None] = None,
        training: Union[TransferRecipe, Mapping[str, Any], None] = None,
        search: Union[SearchConfig, Mapping[str, Any], None] = None,
        seed: int = 0,
        progress: bool = True,
        name: str = "",
    ):
        if target not in TARGETS:
            raise ValueError(f"target {target!r} is not one of {TARGETS}")
        check_method(method)
        self.target = target
        self.method = method
        self.arch = backbone_config(arch, arch_overrides)
        self.data = as_config(DataConfig, data, "data")
        self.pretrain = as_config(PretrainConfig, pretrain, "pretrain")
        self.training = as_config(TransferRecipe, training, "training")
        self.search = as_config(SearchConfig, search, "search")
        for m in self.search.methods:
            check_method(m)
        self.seed = seed
        self.progress = progress
        self.name = name or f"tinytl_{target}"
        self.input_shape = (self.arch.in_channels, self.arch.resolution, self.arch.resolution)
        self._lock = threading.RLock()
        self._data: Optional[TargetData] = None
        self._backbone: Optional[MobileNetV2Backbone] = None
        self._blocks: Optional[List[MobileBlock]] = None

    # -- lazily built state --------------------------------------------------
    def checkpoint(self) -> Path:
        return pretrained_path(self.arch, self.pretrain, self.seed)

    def pretrained(self) -> MobileNetV2Backbone:
        """The source-pretrained backbone (cache, or pretrained now when missing)."""
        with self._lock:
            if self._backbone is None:
                path = self.checkpoint()
                if path.is_file():
                    self._backbone = load_pretrained(path, self.arch, self.pretrain.lite_residual)
                elif self.pretrain.train_if_missing:
                    log.info("%s: no pretrained backbone at %s, pretraining on %s", self.name, path, self.pretrain.source)
                    src = load_target(self.pretrain.source, self.arch.resolution, self.arch.in_channels, self.pretrain.n_train, self.pretrain.n_val, self.pretrain.n_val, self.seed, self.pretrain.data_root)
                    self._backbone = pretrain_backbone(self.arch, src, self.pretrain, self.seed, out=path, show=self.progress)
                else:
                    raise FileNotFoundError(
                        f"pretrained backbone {path} does not exist and pretrain.train_if_missing is false; "
                        f"make it with `hwaml-tinytl pretrain --out {path}` (same arch and pretrain settings) or set pretrain.checkpoint"
                    )
            return self._backbone

    def target_data(self) -> TargetData:
        with self._lock:
            if self._data is None:
                d = self.data
                self._data = load_target(self.target, self.arch.resolution, self.arch.in_channels, d.n_train, d.n_val, d.n_test, d.seed, d.root)
            return self._data

    def blocks(self) -> List[MobileBlock]:
        """The backbone's mobile blocks (from its structure; no weights needed)."""
        with self._lock:
            if self._blocks is None:
                self._blocks = find_mobile_blocks(MobileNetV2Backbone(self.arch), self.input_shape)
            return self._blocks

    # -- the search space ----------------------------------------------------
    def _block_choices(self, block: MobileBlock) -> Tuple[List[int], List[int]]:
        k_max, down = published_kernel(block.in_resolution)
        kernels = sorted({min(int(k), k_max) for k in self.search.kernels}) if down is not None else [1]
        groups = [g for g in self.search.groups if block.in_channels % g == 0] or [1]
        return kernels, groups

    def space(self) -> SearchSpace:
        dims: List[Any] = []
        methods = list(self.search.methods) or [self.method]
        dims.append(Categorical("method", methods))
        dims.append(Categorical("lr", list(self.search.lrs) or [self.training.lr]))
        lite_methods = [m for m in methods if uses_lite_residual(m)]
        if lite_methods:
            # the blocks' choices exist only where the method trains lite residuals: FT-Full,
            # FT-Last and FT-Norm+Last ignore them (otherwise a search re-trains identical networks)
            when = {"method": lite_methods} if len(lite_methods) < len(methods) else None
            for b in self.blocks():
                kernels, groups = self._block_choices(b)
                dims.append(Group(f"block{b.index}", [Categorical("lite", [False, True]), Categorical("kernel", kernels), Categorical("groups", groups)], when=when))
        return SearchSpace(dims, meta={"blocks": [asdict(b) for b in self.blocks()]}, name=self.name)

    def default_config(self) -> Dict[str, Any]:
        """The published TinyTL configuration: lite residuals on every block but the first, published kernels, groups 2."""
        cfg: Dict[str, Any] = {"method": self.method, "lr": self.training.lr}
        if uses_lite_residual(self.method):
            for b in self.blocks():
                kernels, groups = self._block_choices(b)
                k = published_kernel(b.in_resolution)[0]
                cfg[f"block{b.index}"] = {"lite": b.index > 0, "kernel": k if k in kernels else max(kernels), "groups": 2 if 2 in groups else groups[0]}
        return cfg

    def lite_specs(self, config: Mapping[str, Any]) -> List[LiteSpec]:
        specs = []
        for b in self.blocks():
            c = config.get(f"block{b.index}")
            specs.append(LiteSpec(enabled=False) if not c else LiteSpec(bool(c["lite"]), int(c["kernel"]), int(c["groups"])))
        return specs

    # -- the network of a candidate -------------------------------------------
    def adapted_network(self, config: Mapping[str, Any], pretrained: bool) -> Tuple[nn.Module, List[Dict[str, Any]]]:
        """The pretrained network (or an untrained one of the same structure, for
        costing) with the target's classifier, the candidate's lite residuals and the
        method's trainable set.

        With ``pretrain.lite_residual`` (default, as published) the pretrained network
        already holds lite residual modules at the published placement. A candidate's
        block with ``lite: true`` trains that block's pretrained module when its kernel
        and groups are the pretrained ones; with other kernel/groups (or on a block
        without one) a fresh module (scale 0) is added around it and trained, the
        pretrained one staying frozen, so the network starts as the pretrained function.
        ``lite: false`` leaves the block's pretrained module frozen (part of the feature
        extractor, as for the methods without lite residuals). As published, TinyTL-L+B
        does not train a lite module's last norm shift (the block's own shift does that job).
        """
        from .training import source_network

        method = str(config.get("method", self.method))
        check_method(method)
        lite_pre = self.pretrain.lite_residual
        if pretrained:
            with self._lock:
                net = source_network(self.arch, lite_pre)
                net.load_state_dict(self.pretrained().state_dict())
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                net = source_network(self.arch, lite_pre)
        n_classes = self.target_data().n_classes if pretrained else self._n_target_classes()
        replace_classifier(net, n_classes, seed=self.seed)
        inserted: List[Dict[str, Any]] = []
        trained: List[nn.Module] = []
        if uses_lite_residual(method):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                inserted, trained = self._place_lite(net, self.lite_specs(config))
        # a searched placement may enable no block: the method then trains its biases / classifier only
        configure_method(net, method, allow_no_lite=True)
        if method != "ft_full":
            chosen = {id(m) for m in trained}
            for m in net.modules():
                if isinstance(m, LiteResidualModule):
                    on = id(m) in chosen
                    for p in m.lite_residual.parameters():
                        p.requires_grad_(on)
                    if on and method == "tinytl_lb":
                        m.lite_residual.final_norm.bias.requires_grad_(False)
        for m in net.modules():
            if isinstance(m, nn.Dropout):
                m.p = self.training.dropout
        return net, inserted

    def _place_lite(self, net: nn.Module, specs: List[LiteSpec]) -> Tuple[List[Dict[str, Any]], List[nn.Module]]:
        inserted: List[Dict[str, Any]] = []
        trained: List[nn.Module] = []
        for block, spec in zip(self.blocks(), specs):
            if not spec.enabled:
                continue
            k_max, down = published_kernel(block.in_resolution)
            k = 1 if down is None else (k_max if spec.kernel is None else int(spec.kernel))
            if k > k_max:
                raise ValueError(f"block {block.index} ({block.path}): kernel {k} exceeds the pooled resolution {block.in_resolution // 2}")
            here = net.get_submodule(block.path)
            if isinstance(here, LiteResidualModule) and here.config["kernel_size"] == k and here.config["groups"] == spec.groups and here.config["expand"] == spec.expand:
                if self.training.lite_init == "random":
                    here.reset_lite()
                trained.append(here)
                inserted.append({"block": block.index, "path": block.path, "kernel": k, "groups": spec.groups, "stride": block.stride, "downsample": down, "pretrained": True})
                continue
            module = LiteResidualModule(here, block.in_channels, block.out_channels, k, block.stride, spec.groups, spec.expand, down)
            parent, _, attr = block.path.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, attr, module)
            trained.append(module)
            inserted.append({"block": block.index, "path": block.path, "kernel": k, "groups": spec.groups, "stride": block.stride, "downsample": down, "pretrained": False})
        return inserted, trained

    def _n_target_classes(self) -> int:
        return {"fashion_5_9": 5, "digits": 10, "letters": 10}.get(self.target) or self.target_data().n_classes

    # -- hooks -------------------------------------------------------------
    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["accuracy", "test_accuracy", "trainable_params_k"]

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        self.pretrained()  # pretraining (if needed) happens once, before any worker starts
        return self.space()

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        config = dict(candidate.config)
        method = str(config.get("method", self.method))
        net, inserted = self.adapted_network(config, pretrained=True)
        books = quantize_frozen_weights(net)
        data = self.target_data()
        recipe = TransferRecipe(**{**asdict(self.training), "lr": float(config.get("lr", self.training.lr))})

        def on_epoch(epoch: int, acc: float) -> None:
            ctx.report(epoch, acc)
            if ctx.should_prune():
                raise TrialPruned(f"epoch {epoch}: validation accuracy {acc:.4f}")

        result = transfer(net, data, recipe, self.seed, books, on_epoch, show=self.progress)
        trial_dir = Path(ctx.run_dir) / "tinytl" / f"trial{candidate.number if candidate.number is not None else 'x'}"
        meta = {
            "target": self.target,
            "method": method,
            "config": config,
            "arch": self.arch.to_dict(),
            "lite_residuals": inserted,
            "pretrained": str(self.checkpoint()),
            **result,
        }
        files = save_adapted(net, books, trial_dir / "adapted.pt", meta)
        memory = {f"batch{b}": profile_training_memory(net.train(), self.input_shape, b).summary() for b in (8, 1)}
        mem_path = trial_dir / "memory_report.json"
        mem_path.write_text(json.dumps(memory, indent=2))
        summary = trainable_summary(net)
        return EvalResult(
            {"accuracy": result["val_accuracy"], "test_accuracy": result["test_accuracy"], "trainable_params_k": summary["trainable_params"] / 1e3},
            artifacts={ADAPTED_ARTIFACT: files["weights"], MEMORY_ARTIFACT: str(mem_path)},
            info={"val_history": result["val_history"], "lite_residuals": inserted, **summary},
        )

    @hookimpl
    def build_model(self, candidate: Candidate, trial: Optional[Trial], ctx: RunContext) -> BuiltModel:
        """The adapted network, with the method's trainable set in ``requires_grad``
        (what ``tinytl_memory`` costs). Untrained while costing (``trial is None``);
        the trial's adapted weights (its ``adapted`` artifact) when deploying."""
        config = dict(candidate.config)
        info = {"method": str(config.get("method", self.method)), "config": config}
        if trial is None:
            net, inserted = self.adapted_network(config, pretrained=False)
            return BuiltModel(net.eval(), self.input_shape, trained=False, source=self.name, info={**info, "lite_residuals": inserted})
        path = (trial.artifacts or {}).get(ADAPTED_ARTIFACT)
        if not path:
            raise ValueError(f"trial {trial.number} ({trial.status}) lists no {ADAPTED_ARTIFACT!r} artifact (it has {sorted(trial.artifacts)}): it was not evaluated by {self.name}")
        net, inserted = self.adapted_network(config, pretrained=False)
        load_adapted(net, path)
        data = self.target_data()
        return BuiltModel(
            net.eval(),
            self.input_shape,
            trained=True,
            calibration=data.train.x[:64],
            test_data=(data.test.x, data.test.y),
            source=self.name,
            info={**info, "lite_residuals": inserted, "trial": trial.number},
        )

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> Optional[DeployResult]:
        from .training import accuracy
        from .data import Split

        if ADAPTED_ARTIFACT not in trial.artifacts:
            return DeployResult({}, ok=False, message=f"trial {trial.number} ({trial.status}) has no adapted weights: {self.name} did not evaluate it", source=self.name)
        model = self.build_model(trial.candidate, trial, ctx)
        x, y = model.test_data
        acc = accuracy(model.module, Split(x, y))
        out = Path(ctx.run_dir) / "deploy"
        out.mkdir(parents=True, exist_ok=True)
        src = Path(trial.artifacts[ADAPTED_ARTIFACT])
        dst = out / f"tinytl_trial{trial.number}.pt"
        dst.write_bytes(src.read_bytes())
        meta_src = src.with_suffix(".json")
        if meta_src.is_file():
            dst.with_suffix(".json").write_text(meta_src.read_text())
        files = {"weights": str(dst), "meta": str(dst.with_suffix(".json"))}
        mem = trial.artifacts.get(MEMORY_ARTIFACT)
        if mem and Path(mem).is_file():
            mdst = out / f"tinytl_trial{trial.number}_memory.json"
            mdst.write_text(Path(mem).read_text())
            files["memory_report"] = str(mdst)
        recorded = float(trial.metrics.get("test_accuracy", float("nan")))
        ok = abs(acc - recorded) < 1e-9 if recorded == recorded else True
        return DeployResult(
            files,
            ok=ok,
            metrics={"test_accuracy": acc, "file_kb": dst.stat().st_size / 1024},
            message=f"wrote {dst.name} (trained parameters + 8-bit frozen backbone)" + ("" if ok else f"; reloaded test accuracy {acc:.4f} != recorded {recorded:.4f}"),
            source=self.name,
        )
