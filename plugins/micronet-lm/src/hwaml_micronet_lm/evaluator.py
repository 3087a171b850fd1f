"""``micronet_pydocs`` / ``micronet_wikitext``: the MicroNet pipeline as an hwaml evaluator.

Each candidate is one pass of the submission's pipeline, its stages switched
and sized by the search space:

1. **train** the Transformer-XL-style model (:mod:`.model`), with adaptive input
   and softmax when ``cutoffs`` is not ``none``, the trainable cache when
   ``cache``, the Hebbian softmax update when ``hebbian``, and distillation from
   the teacher's top-k soft labels when ``distill`` (:mod:`.distill`);
2. **prune** by gradual magnitude pruning to ``sparsity`` while fine-tuning;
3. **search the cache** parameters (theta, lambda) on the validation split;
4. **quantize** to ``bits`` with quantization-aware fine-tuning (0: stay float);

then report the validation perplexity (the objective), the test perplexity and
the trained model's MicroNet score. After every epoch of every stage the
validation perplexity goes to ``ctx.report`` and ``ctx.should_prune`` may stop
the trial (``hwaml.TrialPruned``).

It is an NN evaluator: ``build_model`` gives the candidate's network to the
``micronet_score`` backend (untrained while costing, with the target sparsity's
masks and the bit-width already applied, so the count before training equals the
count after; with the trial's trained weights when deploying). ``deploy`` writes
the compressed model (integer codes, masks, scales) and its score sheet.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

import hwaml
from hwaml import BuiltModel, Candidate, Categorical, DeployResult, EvalResult, RunContext, SearchSpace, Trial, hookimpl
from hwaml.config import as_config

from .cache import search_cache
from .compress import GradualPruner, enable_quantization, prunable, prune_to, sparsity_of
from .data import Corpus, load_corpus
from .distill import load_teacher
from .hebbian import HebbianSoftmax
from .lstm import LSTMLM
from .model import MicroNetLM, ModelConfig
from .score import bin_fractions, score_model
from .train import TrainConfig, collect_stream, evaluate_stream, train_lm

__all__ = ["MicroNetEvaluator", "DataConfig", "SpaceConfig", "StagesConfig", "METRICS", "SOURCE", "load_checkpoint"]

log = logging.getLogger(__name__)

SOURCE = "micronet_lm"
CHECKPOINT_DIR = "micronet_lm"
#: what ``evaluate`` reports
METRICS = ("perplexity", "test_perplexity", "trained_score", "trained_params_eq", "trained_ops_eq", "sparsity", "train_tokens_per_s")


@dataclass(frozen=True)
class DataConfig:
    """Which corpus (:func:`hwaml_micronet_lm.data.load_corpus`)."""

    kind: str = "python_docs"
    root: Optional[str] = None
    min_count: Optional[int] = None
    max_vocab: Optional[int] = None
    cache_dir: Optional[str] = None
    prefix: str = "wiki"


@dataclass(frozen=True)
class SpaceConfig:
    """The choices of each searched dimension (a single choice fixes it)."""

    n_layers: List[int] = field(default_factory=lambda: [2, 3, 4])
    d_model: List[int] = field(default_factory=lambda: [64, 96, 128])
    #: each "a,b" is a list of cutoffs; "none" is a single full softmax and plain embedding
    cutoffs: List[str] = field(default_factory=lambda: ["2000,8000", "1000,6000", "none"])
    sparsity: List[float] = field(default_factory=lambda: [0.0, 0.3, 0.5])
    #: 0: float (16 bits counted for free)
    bits: List[int] = field(default_factory=lambda: [0, 9])
    cache: List[bool] = field(default_factory=lambda: [True, False])
    hebbian: List[bool] = field(default_factory=lambda: [True, False])
    distill: List[bool] = field(default_factory=lambda: [False])


@dataclass(frozen=True)
class StageTraining:
    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 50
    clip: float = 0.25
    max_train_tokens: Optional[int] = None


@dataclass(frozen=True)
class CacheSearchConfig:
    #: theta grid: the trained theta times these factors
    theta_factors: List[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])
    lambdas: List[float] = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.15, 0.2, 0.3])


@dataclass(frozen=True)
class StagesConfig:
    """Training of each stage; evaluation sizes."""

    train: StageTraining = field(default_factory=StageTraining)
    prune: StageTraining = field(default_factory=lambda: StageTraining(epochs=1, lr=3e-4, warmup_steps=0))
    quantize: StageTraining = field(default_factory=lambda: StageTraining(epochs=1, lr=1e-4, warmup_steps=0))
    cache_search: CacheSearchConfig = field(default_factory=CacheSearchConfig)
    #: validation / test tokens read online at batch 1 (None: the whole split)
    max_eval_tokens: Optional[int] = 20000
    max_test_tokens: Optional[int] = None
    #: pruning reaches the target sparsity at this fraction of the fine-tuning steps
    prune_end: float = 0.75
    prune_frequency: int = 10


@dataclass(frozen=True)
class HebbianConfig:
    T: int = 500
    gamma: float = 0.01
    match_norm: bool = True


@dataclass(frozen=True)
class DistillConfig:
    hard_min: float = 0.5
    hard_max: float = 0.95


@dataclass(frozen=True)
class BaselineConfig:
    """The same-corpus LSTM baseline whose counts normalise ``same_corpus_score``."""

    d_embed: int = 256
    d_hidden: int = 1024
    project: bool = True


def _train_config(stage: StageTraining) -> TrainConfig:
    return TrainConfig(**asdict(stage))


class MicroNetEvaluator:
    """Evaluator: the MicroNet pipeline on one corpus; objective ``perplexity`` (validation, min).

    :param data: the corpus (:class:`DataConfig`).
    :param model: fixed model settings (:class:`~hwaml_micronet_lm.model.ModelConfig`
        fields; ``n_vocab`` comes from the corpus). ``n_layers``, ``d_model`` and
        ``cutoffs`` are the searched ones; head size, feed-forward width and bin
        widths scale with ``d_model`` from these.
    :param space: the searched choices (:class:`SpaceConfig`).
    :param stages: training of each stage (:class:`StagesConfig`).
    :param hebbian, distill, baseline: settings of those parts.
    :param teacher: the folder a teacher command wrote (needed when ``distill`` can be true).
    :param save_checkpoints: write each trial's trained model (deploy needs it).
    :param progress: progress bars (also subject to the run's ``progress``).
    :param threads: torch threads (``None``: what the executor gives, ``ctx.threads``).
    :param seed: initialisation and data order.
    """

    default_objectives = {"perplexity": "min"}

    def __init__(
        self,
        data: Optional[Mapping[str, Any]] = None,
        model: Optional[Mapping[str, Any]] = None,
        space: Optional[Mapping[str, Any]] = None,
        stages: Optional[Mapping[str, Any]] = None,
        hebbian: Optional[Mapping[str, Any]] = None,
        distill: Optional[Mapping[str, Any]] = None,
        baseline: Optional[Mapping[str, Any]] = None,
        teacher: Optional[str] = None,
        save_checkpoints: bool = True,
        progress: bool = True,
        threads: Optional[int] = None,
        seed: int = 0,
    ):
        self.data = as_config(DataConfig, data, "data")
        model = dict(model or {})
        if "n_vocab" in model:
            raise ValueError("model.n_vocab comes from the corpus; do not set it")
        self.model_base = dict(model)
        bad = sorted(set(model) - set(ModelConfig.__dataclass_fields__))
        if bad:
            raise ValueError(f"unknown model key(s) {bad} (valid: {sorted(set(ModelConfig.__dataclass_fields__) - {'n_vocab'})})")
        self.space_cfg = as_config(SpaceConfig, space, "space")
        for name in ("n_layers", "d_model", "cutoffs", "sparsity", "bits", "cache", "hebbian", "distill"):
            if not getattr(self.space_cfg, name):
                raise ValueError(f"space.{name} needs at least one choice")
        for c in self.space_cfg.cutoffs:
            _parse_cutoffs(c)
        for b in self.space_cfg.bits:
            if b != 0 and not 2 <= b <= 16:
                raise ValueError(f"space.bits: {b} is not 0 (float) or in [2, 16]")
        for s in self.space_cfg.sparsity:
            if not 0 <= s < 1:
                raise ValueError(f"space.sparsity: {s} is not in [0, 1)")
        self.stages = as_config(StagesConfig, stages, "stages")
        self.hebbian_cfg = as_config(HebbianConfig, hebbian, "hebbian")
        self.distill_cfg = as_config(DistillConfig, distill, "distill")
        self.baseline_cfg = as_config(BaselineConfig, baseline, "baseline")
        if True in self.space_cfg.distill and not teacher:
            raise ValueError("space.distill allows true but no teacher is set: train one with `python -m hwaml_micronet_lm.distill --out DIR` and set evaluator.teacher=DIR")
        self.teacher = teacher
        self.save_checkpoints = save_checkpoints
        self.progress = progress
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {threads}")
        self.threads = threads
        self.seed = seed
        self._corpus: Optional[Corpus] = None

    # ------------------------------------------------------------------ parts
    def corpus(self) -> Corpus:
        """The corpus (loaded once, from the token cache when it is there)."""
        if self._corpus is None:
            d = self.data
            self._corpus = load_corpus(d.kind, d.root, d.min_count, d.max_vocab, d.cache_dir, d.prefix)
        return self._corpus

    def model_config(self, config: Mapping[str, Any]) -> ModelConfig:
        """The :class:`ModelConfig` of a candidate configuration."""
        V = len(self.corpus().vocab)
        base = {**asdict(ModelConfig()), **{"n_layers": 2, "d_model": 128, "n_head": 4, "d_head": 32, "d_inner": 512, "seq_len": 64, "mem_len": 64, "n_cache": 500}, **self.model_base}
        d0 = int(base["d_model"])
        d = int(config["d_model"])
        cut = _parse_cutoffs(str(config["cutoffs"]))
        cut = tuple(c for c in cut if c < V) if cut else ()
        widths0 = list(self.model_base.get("bin_widths") or [d0, max(1, d0 // 4), max(1, d0 // 16)])
        widths = [d] + [max(1, round(w * d / d0)) for w in widths0[1:]]
        widths = (widths + [widths[-1]] * 4)[: len(cut) + 1]
        return ModelConfig(
            n_vocab=V,
            n_layers=int(config["n_layers"]),
            d_model=d,
            n_head=int(base["n_head"]),
            d_head=max(4, round(int(base["d_head"]) * d / d0)),
            d_inner=max(4, round(int(base["d_inner"]) * d / d0)),
            seq_len=int(base["seq_len"]),
            mem_len=int(base["mem_len"]),
            cutoffs=cut,
            bin_widths=tuple(widths),
            dropout=float(base["dropout"]),
            final_norm=bool(base["final_norm"]),
            use_cache=bool(config["cache"]),
            n_cache=int(base["n_cache"]),
            cache_theta=float(base["cache_theta"]),
            cache_lambda=float(base["cache_lambda"]),
        )

    def stats_info(self, cfg: ModelConfig) -> Dict[str, Any]:
        """Corpus statistics the scorer needs: test tokens per bin, the baseline's counts."""
        corpus = self.corpus()
        test = corpus.test
        b = self.baseline_cfg
        with torch.device("meta"):
            lstm = LSTMLM(cfg.n_vocab, b.d_embed, b.d_hidden, b.project)
        sheet = score_model(lstm)
        return {
            "input_fractions": bin_fractions(test[:-1], cfg.edges),
            "target_fractions": bin_fractions(test[1:], cfg.edges),
            "baseline_params": float(sheet.raw_params()),
            "baseline_ops": float(sheet.raw_ops()),
            "corpus": corpus.name,
            # the network takes token ids: (batch, seq_len) int64, not images
            "input_dtype": "int64",
            "input": "token ids (batch, seq_len)",
        }

    def _threads(self, ctx: RunContext) -> None:
        n = self.threads or getattr(ctx, "threads", None)
        if n:
            torch.set_num_threads(int(n))

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return list(METRICS)

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        s = self.space_cfg
        return SearchSpace(
            [
                Categorical("n_layers", [int(x) for x in s.n_layers]),
                Categorical("d_model", [int(x) for x in s.d_model]),
                Categorical("cutoffs", [str(x) for x in s.cutoffs]),
                Categorical("cache", [bool(x) for x in s.cache]),
                Categorical("hebbian", [bool(x) for x in s.hebbian]),
                Categorical("distill", [bool(x) for x in s.distill]),
                Categorical("sparsity", [float(x) for x in s.sparsity]),
                Categorical("bits", [int(x) for x in s.bits]),
            ],
            meta={"task": "language_model"},
        )

    @hookimpl
    def build_model(self, candidate: Candidate, trial: Optional[Trial], ctx: RunContext) -> BuiltModel:
        cfg = self.model_config(candidate.config)
        info = self.stats_info(cfg)
        if trial is None:
            torch.manual_seed(self.seed)
            model = MicroNetLM(cfg)
            apply_planned_compression(model, float(candidate.config["sparsity"]), int(candidate.config["bits"]))
            trained = False
        else:
            path = trial.artifacts.get("checkpoint")
            if not path:
                raise FileNotFoundError(f"trial {trial.number} lists no checkpoint in its artifacts (was save_checkpoints false?)")
            model, meta = load_checkpoint(path)
            trained = True
            info["trained"] = meta
        model.eval()
        return BuiltModel(module=model, input_shape=(cfg.seq_len,), trained=trained, source=SOURCE, info=info, input_dtype="int64")

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        self._threads(ctx)
        conf = dict(candidate.config)
        corpus = self.corpus()
        cfg = self.model_config(conf)
        st = self.stages
        torch.manual_seed(self.seed + int(ctx.seed))
        model = MicroNetLM(cfg)
        desc = f"trial {candidate.number}"
        stages: List[Dict[str, Any]] = []
        epoch_counter = [0]
        last = {"perplexity": math.nan}  # the validation perplexity of the model as it is now

        def validate() -> float:
            return evaluate_stream(model, corpus.valid, st.max_eval_tokens)

        def on_epoch(stage: str):
            def _cb(epoch: int) -> None:
                ppl = validate()
                last["perplexity"] = ppl
                step = epoch_counter[0]
                epoch_counter[0] += 1
                ctx.report(step, ppl)
                log.info("%s %s epoch %d: validation perplexity %.2f", desc, stage, epoch, ppl)
                if ctx.should_prune():
                    raise hwaml.TrialPruned(f"{stage} epoch {epoch}: validation perplexity {ppl:.2f}")

            return _cb

        def record(stage: str) -> None:
            sheet = score_model(model, info["input_fractions"], info["target_fractions"])
            if not math.isfinite(last["perplexity"]):
                last["perplexity"] = validate()
            stages.append({"stage": stage, "perplexity": last["perplexity"], **{k: sheet.totals()[k] for k in ("params_eq", "ops_eq", "micronet_score")}})

        info = self.stats_info(cfg)
        hebb = HebbianSoftmax([b - a for a, b in zip(cfg.edges, cfg.edges[1:])], self.hebbian_cfg.T, self.hebbian_cfg.gamma, self.hebbian_cfg.match_norm) if conf["hebbian"] else None
        distill = None
        tcfg = _train_config(st.train)
        if conf["distill"]:
            if not self.teacher:
                raise ValueError("candidate asks for distillation but evaluator.teacher is not set")
            distill = load_teacher(self.teacher, corpus, tcfg.max_train_tokens, self.distill_cfg.hard_min, self.distill_cfg.hard_max)
        stats = train_lm(model, corpus.train, tcfg, hebbian=hebb, distill=distill, on_epoch=on_epoch("train"), progress=self.progress, desc=f"{desc} train", seed=self.seed)
        record("train")
        sparsity = float(conf["sparsity"])
        if sparsity > 0:
            pcfg = _train_config(st.prune)
            steps = _steps(corpus, pcfg, cfg)
            pruner = GradualPruner(model, sparsity, begin=0, end=max(1, int(st.prune_end * steps)), frequency=max(1, min(st.prune_frequency, steps // 4 or 1)))
            train_lm(model, corpus.train, pcfg, hebbian=None, pruner=pruner, on_epoch=on_epoch("prune"), progress=self.progress, desc=f"{desc} prune", seed=self.seed + 1)
            _finish_pruning(model, sparsity)
            record("prune")
        search = None
        if cfg.use_cache:
            hidden, logp, target = collect_stream(model, corpus.valid, st.max_eval_tokens)
            theta0, lam0 = (float(t.detach()) for t in model.cache_params())
            cs = st.cache_search
            search = search_cache(hidden, logp, target, cfg.n_cache, [theta0 * f for f in cs.theta_factors], list(cs.lambdas) + [lam0])
            model.set_cache_params(search.theta, search.lam)
            last["perplexity"] = search.perplexity  # the same stream, tokens and pair: no second pass
            record("cache_search")
        bits = int(conf["bits"])
        if bits:
            qcfg = _train_config(st.quantize)
            enable_quantization(model, bits)
            keep = GradualPruner(model, max(sparsity, 0.0), begin=0, end=1, frequency=1) if sparsity > 0 else None
            if keep is not None:
                keep.current = sparsity  # masks stay as they are; only re-applied after each step
            train_lm(model, corpus.train, qcfg, pruner=keep, on_epoch=on_epoch("quantize"), progress=self.progress, desc=f"{desc} quantize", seed=self.seed + 2)
            record("quantize")
        val = last["perplexity"]
        test = evaluate_stream(model, corpus.test, st.max_test_tokens)
        sheet = score_model(model, info["input_fractions"], info["target_fractions"])
        totals = sheet.totals()
        metrics = {
            "perplexity": val,
            "test_perplexity": test,
            "trained_score": totals["micronet_score"],
            "trained_params_eq": totals["params_eq"],
            "trained_ops_eq": totals["ops_eq"],
            "sparsity": sparsity_of(model),
            "train_tokens_per_s": stats.tokens_per_s(),
        }
        out_info: Dict[str, Any] = {"model": cfg.to_dict(), "stages": stages, "corpus": corpus.summary()}
        if search is not None:
            out_info["cache_search"] = {"theta": search.theta, "lambda": search.lam, "perplexity": search.perplexity, "grid": search.grid}
        artifacts: Dict[str, str] = {}
        if self.save_checkpoints:
            folder = Path(ctx.run_dir) / CHECKPOINT_DIR
            number = candidate.number if candidate.number is not None else 0
            artifacts = save_checkpoint(model, folder / f"trial_{number}", {"candidate": conf, "metrics": metrics})
        return EvalResult(metrics=metrics, artifacts=artifacts, info=out_info)

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> Optional[DeployResult]:
        if not trial.artifacts.get("checkpoint"):
            return None
        built = ctx.build_model(trial.candidate, trial) if ctx.build_model is not None else self.build_model(trial.candidate, trial, ctx)
        model = built.module
        sheet = score_model(model, built.info["input_fractions"], built.info["target_fractions"])
        out = Path(ctx.run_dir) / "deploy" / f"micronet_lm_trial_{trial.number}"
        out.mkdir(parents=True, exist_ok=True)
        torch.save(compressed_state(model), out / "model_compressed.pt")
        (out / "model.json").write_text(json.dumps({"model": model.cfg.to_dict(), "quant_bits": model.quant_bits}, indent=1))
        (out / "score_sheet.json").write_text(sheet.to_json())
        (out / "score_sheet.csv").write_text(sheet.to_csv())
        totals = sheet.totals()
        same = totals["params_eq"] / built.info["baseline_params"] + totals["ops_eq"] / built.info["baseline_ops"]
        return DeployResult(
            artifacts={"model": str(out / "model_compressed.pt"), "config": str(out / "model.json"), "score_sheet": str(out / "score_sheet.json"), "score_sheet_csv": str(out / "score_sheet.csv")},
            metrics={**totals, "same_corpus_score": same},
            message=f"MicroNet score {totals['micronet_score']:.5f} ({totals['params_eq']:.0f} parameter- and {totals['ops_eq']:.0f} op-equivalents); score sheet in {out}",
            source=SOURCE,
        )


def _parse_cutoffs(text: str) -> Tuple[int, ...]:
    text = text.strip()
    if text.lower() == "none":
        return ()
    try:
        cut = tuple(int(x) for x in text.split(","))
    except ValueError as exc:
        raise ValueError(f"cutoffs {text!r}: expected 'none' or comma-separated increasing integers like '2000,8000'") from exc
    if any(a >= b for a, b in zip(cut, cut[1:])) or cut[0] < 1:
        raise ValueError(f"cutoffs {text!r} must be positive and increasing")
    return cut


def _steps(corpus: Corpus, tcfg: TrainConfig, cfg: ModelConfig) -> int:
    n = corpus.train.numel() if tcfg.max_train_tokens is None else min(corpus.train.numel(), tcfg.max_train_tokens + 1)
    return max(1, ((n // tcfg.batch_size) - 1) // cfg.seq_len) * max(1, tcfg.epochs)


def _finish_pruning(model: MicroNetLM, sparsity: float) -> None:
    """Make sure every prunable tensor is at the target (a short schedule may end early)."""
    for _, m in prunable(model):
        prune_to(m, sparsity)


def apply_planned_compression(model: MicroNetLM, sparsity: float, bits: int) -> None:
    """Masks at the target sparsity (by magnitude of the current weights) and the bit-width:
    what the pipeline will produce, so that costing before training counts the same."""
    if sparsity > 0:
        for _, m in prunable(model):
            prune_to(m, sparsity)
    enable_quantization(model, bits or None)


# ---------------------------------------------------------------------------
# checkpoints and compressed export
# ---------------------------------------------------------------------------


def save_checkpoint(model: MicroNetLM, stem: Path, extra: Mapping[str, Any]) -> Dict[str, str]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors, meta = stem.with_suffix(".pt"), stem.with_suffix(".json")
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, tensors)
    meta.write_text(json.dumps({"model": model.cfg.to_dict(), "quant_bits": model.quant_bits, **extra}, indent=1, default=float))
    return {"checkpoint": str(tensors), "checkpoint_meta": str(meta)}


def load_checkpoint(path: str | Path) -> Tuple[MicroNetLM, Dict[str, Any]]:
    """A trained model from ``trial_<n>.pt`` and the JSON beside it."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"checkpoint {path} or its metadata {meta_path} is missing")
    meta = json.loads(meta_path.read_text())
    model = MicroNetLM(ModelConfig.from_dict(meta["model"]))
    state = torch.load(path, weights_only=True)
    for name, m in model.named_modules():
        if f"{name}.weight_mask" in state:
            m.weight_mask = torch.ones_like(m.weight)
    model.load_state_dict(state)
    enable_quantization(model, meta.get("quant_bits"))
    return model, meta


def compressed_state(model: MicroNetLM) -> Dict[str, torch.Tensor]:
    """What the device stores: per quantized weight its non-zero integer codes, bitmask and scale."""
    out: Dict[str, torch.Tensor] = {}
    bits = model.quant_bits
    done = set()
    for name, m in prunable(model):
        if id(m.weight) in done:
            continue
        done.add(id(m.weight))
        w = m.effective_weight().detach()
        mask = m.weight_mask.bool() if m.weight_mask is not None else torch.ones_like(w, dtype=torch.bool)
        if bits:
            levels = 2 ** (bits - 1) - 1
            scale = (m.weight * (m.weight_mask if m.weight_mask is not None else 1)).detach().abs().max().clamp(min=1e-8) / levels
            out[f"{name}.codes"] = torch.round(w / scale)[mask].to(torch.int16)
            out[f"{name}.scale"] = scale.reshape(1)
        else:
            out[f"{name}.values"] = w[mask].to(torch.float16)
        out[f"{name}.mask"] = mask
    prunable_ids = {id(m.weight) for _, m in prunable(model)}
    for name, p in model.named_parameters():
        if id(p) not in prunable_ids:
            out[name] = p.detach().clone()
    return out
