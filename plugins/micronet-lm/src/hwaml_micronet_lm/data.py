"""Corpora for word-level language modelling: WikiText files, the Python docs, pydoc topics.

Every corpus becomes a :class:`Corpus`: a frequency-sorted :class:`Vocabulary`
(most frequent word first, so adaptive-softmax cutoffs split it into frequency
bins) and three 1-D ``int64`` token streams (train, valid, test).

Tokenisation follows WikiText's published convention: a file is read line by
line, each line is split into words and ends with ``<eos>``; words outside the
vocabulary become ``<unk>``.

* ``wikitext``: the released ``wiki.{train,valid,test}.tokens`` files (already
  tokenised, ``<unk>`` already in place); the vocabulary is every word of the
  training file, as Transformer-XL and MicroNet built it.
* ``python_docs`` (the default): the English reStructuredText sources of
  Debian's ``python3.11-doc`` (``/usr/share/doc/python3.11/html/_sources``, about
  500 files, 11 MB: WikiText-2 scale). Words and punctuation are split
  (``\\w+`` runs and runs of one other character, so a reST
  underline ``=====`` is one word), blank lines are dropped, and the
  split is by file and fixed: a file's bucket is the SHA-1 of its relative path
  (8% valid, 8% test, the rest train). The vocabulary keeps training words seen
  at least ``min_count`` times (3, WikiText's threshold).
* ``pydoc_topics``: the standard library's ``pydoc_data.topics`` text (79
  topics, 0.5 MB), split by topic the same way; small enough for tests.

Token streams are cached (``torch.save`` of plain tensors, vocabulary as JSON
beside them) under ``cache_dir``, keyed by the corpus's files, sizes and
settings, so a second run loads in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch

__all__ = [
    "UNK",
    "EOS",
    "DataError",
    "Vocabulary",
    "Corpus",
    "read_wikitext",
    "python_docs",
    "pydoc_topics",
    "load_corpus",
    "split_of",
    "tokenize_text",
    "batchify",
    "PYTHON_DOCS_ROOT",
    "DEFAULT_CACHE",
]

UNK = "<unk>"
EOS = "<eos>"
PYTHON_DOCS_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
DEFAULT_CACHE = Path.home() / ".cache" / "hwaml" / "micronet_lm"
#: bump when tokenisation changes (invalidates cached streams)
TOKENIZER_VERSION = 2
_WORD = re.compile(r"\w+|([^\w\s])\1*")


class DataError(ValueError):
    """A corpus file is missing or malformed (the message names the file and line)."""


@dataclass(frozen=True)
class Vocabulary:
    """Words in frequency order (index 0 the most frequent); ``counts`` from the training split."""

    words: Tuple[str, ...]
    counts: Tuple[int, ...]

    def __post_init__(self) -> None:
        if UNK not in self.words or EOS not in self.words:
            raise DataError(f"a vocabulary needs {UNK} and {EOS}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def index(self, word: str) -> int:
        return self._index.get(word, self._index[UNK])  # type: ignore[attr-defined]

    def encode(self, words: Iterable[str]) -> List[int]:
        idx, unk = self._index, self._index[UNK]  # type: ignore[attr-defined]
        return [idx.get(w, unk) for w in words]

    def decode(self, ids: Iterable[int]) -> List[str]:
        return [self.words[int(i)] for i in ids]

    @classmethod
    def build(cls, counter: Counter, min_count: int = 1, max_size: Optional[int] = None) -> "Vocabulary":
        """Frequency-sorted vocabulary (ties broken by the word, so it is deterministic).

        Words seen fewer than ``min_count`` times, and beyond the ``max_size``
        most frequent, are folded into ``<unk>`` (their counts too).
        """
        specials = {UNK: int(counter.get(UNK, 0)), EOS: int(counter.get(EOS, 0))}
        words = sorted(((w, int(c)) for w, c in counter.items() if w not in specials), key=lambda wc: (-wc[1], wc[0]))
        kept = [(w, c) for w, c in words if c >= min_count]
        if max_size is not None:
            if max_size < 3:
                raise DataError(f"max_vocab must be >= 3 (two special words and one more), got {max_size}")
            kept = kept[: max_size - 2]
        specials[UNK] += sum(c for _, c in words) - sum(c for _, c in kept)
        kept.extend(specials.items())
        kept.sort(key=lambda wc: (-wc[1], wc[0]))
        return cls(tuple(w for w, _ in kept), tuple(c for _, c in kept))


@dataclass(frozen=True)
class Corpus:
    """A vocabulary and the train/valid/test token streams (1-D ``torch.long``)."""

    name: str
    vocab: Vocabulary
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "valid", "test"):
            raise KeyError(f"no split {name!r} (train, valid, test)")
        return getattr(self, name)

    def summary(self) -> Dict[str, int]:
        return {"vocab": len(self.vocab), "train": int(self.train.numel()), "valid": int(self.valid.numel()), "test": int(self.test.numel())}


# ---------------------------------------------------------------------------
# tokenisation and splits
# ---------------------------------------------------------------------------


def tokenize_text(text: str) -> List[List[str]]:
    """Lines of words (``\\w+`` runs, runs of one punctuation character); blank lines dropped."""
    lines = []
    for line in text.splitlines():
        words = [m.group(0) for m in _WORD.finditer(line)]
        if words:
            lines.append(words)
    return lines


def split_of(key: str, valid_percent: int = 8, test_percent: int = 8) -> str:
    """The fixed split of one file (or topic): SHA-1 of its key, bucket 0-99."""
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % 100
    if bucket < valid_percent:
        return "valid"
    if bucket < valid_percent + test_percent:
        return "test"
    return "train"


def _stream(lines: Iterable[List[str]], vocab: Vocabulary) -> torch.Tensor:
    ids: List[int] = []
    eos = vocab.index(EOS)
    for words in lines:
        ids.extend(vocab.encode(words))
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def _from_documents(name: str, docs: Sequence[Tuple[str, str]], min_count: int, max_vocab: Optional[int]) -> Corpus:
    """Documents ``(key, text)`` -> a corpus split by key."""
    parts: Dict[str, List[List[str]]] = {"train": [], "valid": [], "test": []}
    for key, text in sorted(docs):
        parts[split_of(key)].extend(tokenize_text(text))
    for split, lines in parts.items():
        if not lines:
            raise DataError(f"{name}: the {split} split is empty ({len(docs)} documents); the corpus is too small to split by file")
    counter: Counter = Counter()
    for words in parts["train"]:
        counter.update(words)
    counter[EOS] = len(parts["train"])
    vocab = Vocabulary.build(counter, min_count=min_count, max_size=max_vocab)
    return Corpus(name, vocab, *(_stream(parts[s], vocab) for s in ("train", "valid", "test")))


# ---------------------------------------------------------------------------
# WikiText
# ---------------------------------------------------------------------------


def _wikitext_lines(path: Path) -> Iterator[List[str]]:
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read WikiText file {path}: {exc}") from exc
    with handle:
        for lineno, line in enumerate(handle, 1):
            if "\x00" in line:
                raise DataError(f"{path}:{lineno}: NUL byte; not a WikiText .tokens file")
            yield line.split()


def read_wikitext(folder: Path | str, prefix: str = "wiki") -> Corpus:
    """``{prefix}.train.tokens``, ``.valid.tokens``, ``.test.tokens`` in ``folder``.

    As Transformer-XL and MicroNet read them: every line (blank ones too) is its
    words plus ``<eos>``; the vocabulary is every word of the training file
    (WikiText already mapped rare words to ``<unk>``), sorted by frequency.
    """
    folder = Path(folder)
    paths = {s: folder / f"{prefix}.{s}.tokens" for s in ("train", "valid", "test")}
    for split, p in paths.items():
        if not p.is_file():
            raise DataError(f"WikiText {split} file {p} not found (expected {prefix}.train/valid/test.tokens in {folder})")
    counter: Counter = Counter()
    n_lines = 0
    for words in _wikitext_lines(paths["train"]):
        counter.update(words)
        n_lines += 1
    if n_lines == 0:
        raise DataError(f"{paths['train']} is empty")
    counter[EOS] += n_lines
    vocab = Vocabulary.build(counter, min_count=1)
    streams = {}
    for split, p in paths.items():
        lines = list(_wikitext_lines(p))
        streams[split] = _stream(lines, vocab)
        unseen = sum(1 for words in lines for w in words if w not in vocab._index)  # type: ignore[attr-defined]
        if split == "train" and unseen:
            raise DataError(f"{p}: {unseen} training words missing from its own vocabulary")  # pragma: no cover - cannot happen
    return Corpus(f"wikitext:{folder.name}", vocab, streams["train"], streams["valid"], streams["test"])


# ---------------------------------------------------------------------------
# Python docs and pydoc topics
# ---------------------------------------------------------------------------


def _doc_files(root: Path) -> List[Path]:
    if not root.is_dir():
        raise DataError(
            f"Python docs sources not found at {root}: install Debian's python3.11-doc "
            "(scripts/setup.sh does) or set evaluator.data.root / choose another corpus"
        )
    files = sorted(root.rglob("*.rst.txt"))
    if not files:
        raise DataError(f"no *.rst.txt files under {root}")
    return files


def python_docs(root: Path | str = PYTHON_DOCS_ROOT, min_count: int = 3, max_vocab: Optional[int] = None) -> Corpus:
    """The reStructuredText sources of the Python docs, split by file."""
    root = Path(root)
    docs = []
    for f in _doc_files(root):
        try:
            docs.append((f.relative_to(root).as_posix(), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {f}: {exc}") from exc
    return _from_documents("python_docs", docs, min_count, max_vocab)


def pydoc_topics(min_count: int = 2, max_vocab: Optional[int] = None) -> Corpus:
    """The standard library's ``pydoc_data.topics`` (79 topics), split by topic name."""
    from pydoc_data.topics import topics

    return _from_documents("pydoc_topics", list(topics.items()), min_count, max_vocab)


# ---------------------------------------------------------------------------
# cached loading
# ---------------------------------------------------------------------------


def _fingerprint(kind: str, root: Optional[Path], settings: Dict[str, object]) -> str:
    h = hashlib.sha1(json.dumps({"kind": kind, "v": TOKENIZER_VERSION, **settings}, sort_keys=True).encode())
    if kind == "python_docs" and root is not None:
        for f in _doc_files(root):
            st = f.stat()
            h.update(f"{f.relative_to(root)}:{st.st_size}:{int(st.st_mtime)}".encode())
    elif kind == "wikitext" and root is not None:
        for s in ("train", "valid", "test"):
            p = root / f"{settings.get('prefix', 'wiki')}.{s}.tokens"
            if p.is_file():
                st = p.stat()
                h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    elif kind == "pydoc_topics":
        import sys

        h.update(sys.version.encode())
    return h.hexdigest()[:16]


def load_corpus(
    kind: str = "python_docs",
    root: Optional[str] = None,
    min_count: Optional[int] = None,
    max_vocab: Optional[int] = None,
    cache_dir: Optional[str] = None,
    prefix: str = "wiki",
) -> Corpus:
    """A corpus by kind (``python_docs``, ``pydoc_topics``, ``wikitext``), cached on disk.

    ``root``: the docs folder or the WikiText folder (required for ``wikitext``).
    ``cache_dir``: where token streams are kept (``None``: ``~/.cache/hwaml/micronet_lm``;
    ``""``: no caching).
    """
    if kind not in ("python_docs", "pydoc_topics", "wikitext"):
        raise DataError(f"unknown corpus kind {kind!r} (python_docs, pydoc_topics, wikitext)")
    if kind == "wikitext" and not root:
        raise DataError("corpus kind 'wikitext' needs root: the folder holding wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens")
    root_path = Path(root) if root else (PYTHON_DOCS_ROOT if kind == "python_docs" else None)
    mc = min_count if min_count is not None else {"python_docs": 3, "pydoc_topics": 2, "wikitext": 1}[kind]
    settings = {"min_count": mc, "max_vocab": max_vocab, "prefix": prefix, "root": str(root_path) if root_path else None}
    cache = None if cache_dir == "" else Path(cache_dir) if cache_dir else DEFAULT_CACHE
    key = _fingerprint(kind, root_path, settings)
    if cache is not None:
        tensors, meta = cache / f"{kind}-{key}.pt", cache / f"{kind}-{key}.json"
        if tensors.is_file() and meta.is_file():
            saved = torch.load(tensors, weights_only=True)
            info = json.loads(meta.read_text())
            return Corpus(info["name"], Vocabulary(tuple(info["words"]), tuple(info["counts"])), saved["train"], saved["valid"], saved["test"])
    if kind == "python_docs":
        corpus = python_docs(root_path, min_count=mc, max_vocab=max_vocab)  # type: ignore[arg-type]
    elif kind == "pydoc_topics":
        corpus = pydoc_topics(min_count=mc, max_vocab=max_vocab)
    else:
        corpus = read_wikitext(root_path, prefix=prefix)  # type: ignore[arg-type]
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f"{kind}-{key}.pt.tmp"
        torch.save({"train": corpus.train, "valid": corpus.valid, "test": corpus.test}, tmp)
        tmp.replace(tensors)
        meta.write_text(json.dumps({"name": corpus.name, "words": list(corpus.vocab.words), "counts": list(corpus.vocab.counts), "summary": corpus.summary()}))
    return corpus


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a stream into ``batch_size`` contiguous rows: shape ``(batch_size, n)``."""
    n = stream.numel() // batch_size
    if n < 2:
        raise DataError(f"a stream of {stream.numel()} tokens is too short for batch size {batch_size}")
    return stream[: n * batch_size].view(batch_size, n)
