"""Knowledge distillation: a larger teacher, trained by a command, and its top-k soft labels.

As the submission did, the teacher (a wider, deeper MicroNetLM) is trained
once; it then reads the training stream and keeps, for every position, its
``top_k`` most likely next words and their probabilities. The student is
trained on ``r * NLL + (1 - r) * soft cross-entropy`` against those (renormalised)
top-k distributions, ``r`` ramping from 0.5 to 0.95
(:class:`~hwaml_micronet_lm.train.DistillTarget`).

Train a teacher (the folder is what ``evaluator.teacher`` names)::

    python -m hwaml_micronet_lm.distill --corpus python_docs --out ~/.cache/hwaml/micronet_lm/teacher_pydocs

The folder holds ``teacher.pt`` (state dict), ``soft_labels.pt`` (``indices``
int32 and ``probs`` float16, one row per training position) and
``teacher.json`` (model config, corpus fingerprint, training settings,
validation perplexity). Everything is loaded with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from hwaml.progress import bar

from .data import Corpus, batchify, load_corpus
from .model import MicroNetLM, ModelConfig
from .train import DistillTarget, TrainConfig, evaluate_stream, train_lm

__all__ = ["TEACHER_MODEL", "train_teacher", "soft_labels", "load_teacher", "TeacherError", "corpus_fingerprint"]

#: the default teacher: twice the default CPU student's width and depth
TEACHER_MODEL = dict(n_layers=4, d_model=256, n_head=8, d_head=32, d_inner=1024, seq_len=64, mem_len=64, use_cache=False)


class TeacherError(FileNotFoundError):
    """No teacher (or a teacher for another corpus) where the config points."""


def corpus_fingerprint(corpus: Corpus, max_train_tokens: Optional[int]) -> Dict[str, Any]:
    n = corpus.train.numel() if max_train_tokens is None else min(corpus.train.numel(), max_train_tokens + 1)
    return {"name": corpus.name, "vocab": len(corpus.vocab), "train_tokens": int(n), "checksum": int(corpus.train[:n].sum())}


@torch.no_grad()
def soft_labels(model: MicroNetLM, stream: torch.Tensor, top_k: int, batch_size: int = 16, progress: bool = True) -> Dict[str, torch.Tensor]:
    """Top-k next-word distributions of ``model`` at every position of ``stream`` (rows 0..N-2)."""
    model.eval()
    n = stream.numel()
    indices = torch.zeros(n - 1, top_k, dtype=torch.int32)
    probs = torch.zeros(n - 1, top_k, dtype=torch.float16)
    rows = min(batch_size, max(1, (n - 1) // (model.cfg.seq_len + 1)))
    data = batchify(stream, rows)
    row_len = data.shape[1]
    L = model.cfg.seq_len
    mems = None
    with bar(total=(row_len - 1 + L - 1) // L, desc="soft labels", unit="seg", enabled=progress) as pbar:
        for s in range(0, row_len - 1, L):
            e = min(s + L, row_len - 1)
            h, mems = model(data[:, s:e], mems)
            lp = model.softmax.full_log_prob(h.reshape(-1, h.shape[-1]))
            v, i = lp.topk(top_k, dim=1)
            pos = (torch.arange(rows)[:, None] * row_len + torch.arange(s, e)[None, :]).reshape(-1)
            indices[pos] = i.to(torch.int32)
            probs[pos] = v.exp().to(torch.float16)
            pbar.update(1)
    # positions the teacher did not read as inputs (the last column of each row, the stream's
    # last few tokens): the true next word with probability 1
    missing = (probs.float().sum(dim=1) == 0).nonzero().squeeze(1)
    indices[missing, 0] = stream[missing + 1].to(torch.int32)
    probs[missing, 0] = 1.0
    return {"indices": indices, "probs": probs}


def train_teacher(
    corpus: Corpus,
    out: Path,
    model: Optional[Mapping[str, Any]] = None,
    training: Optional[Mapping[str, Any]] = None,
    top_k: int = 32,
    max_eval_tokens: Optional[int] = 20000,
    progress: bool = True,
    seed: int = 0,
) -> Dict[str, Any]:
    """Train a teacher on ``corpus`` and write it and its soft labels to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    V = len(corpus.vocab)
    mcfg = dict(TEACHER_MODEL)
    mcfg.update(model or {})
    mcfg.setdefault("cutoffs", [max(1, V // 10), max(2, V // 3)])
    mcfg.setdefault("bin_widths", [mcfg["d_model"], mcfg["d_model"] // 4, mcfg["d_model"] // 16])
    cfg = ModelConfig.from_dict({**mcfg, "n_vocab": V})
    tcfg = TrainConfig(**dict({"epochs": 2, "batch_size": 16, "lr": 5e-4}, **(training or {})))
    torch.manual_seed(seed)
    teacher = MicroNetLM(cfg)
    stats = train_lm(teacher, corpus.train, tcfg, progress=progress, desc="teacher", seed=seed)
    val = evaluate_stream(teacher, corpus.valid, max_eval_tokens)
    stream = corpus.train if tcfg.max_train_tokens is None else corpus.train[: tcfg.max_train_tokens + 1]
    labels = soft_labels(teacher, stream, top_k, progress=progress)
    torch.save({k: v for k, v in teacher.state_dict().items()}, out / "teacher.pt")
    torch.save(labels, out / "soft_labels.pt")
    hit = float((labels["indices"].long() == stream[1:, None]).any(dim=1).float().mean())
    meta = {
        "model": cfg.to_dict(),
        "training": tcfg.__dict__,
        "top_k": top_k,
        "corpus": corpus_fingerprint(corpus, tcfg.max_train_tokens),
        "valid_perplexity": val,
        "train_tokens_per_s": stats.tokens_per_s(),
        "target_in_top_k": hit,
        "parameters": teacher.num_parameters(),
    }
    (out / "teacher.json").write_text(json.dumps(meta, indent=1))
    return meta


def load_teacher(folder: Path | str, corpus: Corpus, max_train_tokens: Optional[int], hard_min: float = 0.5, hard_max: float = 0.95) -> DistillTarget:
    """The soft labels of the teacher in ``folder``, checked against ``corpus``."""
    folder = Path(folder).expanduser()
    meta_path, labels_path = folder / "teacher.json", folder / "soft_labels.pt"
    if not meta_path.is_file() or not labels_path.is_file():
        raise TeacherError(
            f"no teacher in {folder} (teacher.json and soft_labels.pt): train one with "
            f"`python -m hwaml_micronet_lm.distill --corpus <kind> --out {folder}`"
        )
    meta = json.loads(meta_path.read_text())
    want = corpus_fingerprint(corpus, max_train_tokens)
    have = meta.get("corpus", {})
    if have.get("name") != want["name"] or have.get("vocab") != want["vocab"] or have.get("train_tokens", 0) < want["train_tokens"]:
        raise TeacherError(f"the teacher in {folder} was trained for {have}, not for this corpus {want}; retrain it with the same corpus and max_train_tokens")
    labels = torch.load(labels_path, weights_only=True)
    n = want["train_tokens"] - 1
    return DistillTarget(labels["indices"][:n].long(), labels["probs"][:n], hard_min, hard_max)


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwaml_micronet_lm.distill", description="Train a MicroNet-LM teacher and write its top-k soft labels.")
    p.add_argument("--corpus", default="python_docs", choices=["python_docs", "pydoc_topics", "wikitext"])
    p.add_argument("--root", default=None, help="the corpus folder (required for wikitext)")
    p.add_argument("--out", required=True, help="folder to write teacher.pt, soft_labels.pt, teacher.json")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-train-tokens", type=int, default=None)
    p.add_argument("--top-k", type=int, default=32)
    p.add_argument("--layers", type=int, default=TEACHER_MODEL["n_layers"])
    p.add_argument("--width", type=int, default=TEACHER_MODEL["d_model"])
    p.add_argument("--seq-len", type=int, default=TEACHER_MODEL["seq_len"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    corpus = load_corpus(a.corpus, a.root)
    width = a.width
    model = {"n_layers": a.layers, "d_model": width, "d_head": max(8, width // 8), "d_inner": 4 * width, "seq_len": a.seq_len, "mem_len": a.seq_len}
    meta = train_teacher(corpus, Path(a.out), model=model, training={"epochs": a.epochs, "max_train_tokens": a.max_train_tokens}, top_k=a.top_k, seed=a.seed)
    print(json.dumps({k: meta[k] for k in ("valid_perplexity", "parameters", "target_in_top_k", "train_tokens_per_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
