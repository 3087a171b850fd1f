"""Corpora: the WikiText reader on written files, the fixed docs split, caching, errors."""

import pytest
import torch

from hwaml_micronet_lm.data import EOS, UNK, DataError, Vocabulary, batchify, load_corpus, read_wikitext, split_of, tokenize_text


def _write_wikitext(folder, train, valid, test):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"wiki.{name}.tokens").write_text(text, encoding="utf-8")


def test_wikitext_reader_follows_the_published_convention(tmp_path):
    train = " = Title = \n \n the cat sat on the mat . \n the <unk> sat . \n"
    _write_wikitext(tmp_path / "wt", train, " the dog sat . \n", " the cat . \n")
    corpus = read_wikitext(tmp_path / "wt")
    v = corpus.vocab
    # every line (blank ones too) ends with <eos>; frequency order, most frequent first
    assert v.counts[v.index(EOS)] == 4
    assert v.words[0] == EOS and v.words[1] == "the"
    assert list(v.counts) == sorted(v.counts, reverse=True)
    assert corpus.train.numel() == len(train.split()) + 4
    # words never seen in training become <unk>
    assert v.decode(corpus.valid.tolist()) == ["the", UNK, "sat", ".", EOS]
    assert corpus.test.dtype == torch.long


def test_wikitext_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="wiki.train.tokens"):
        read_wikitext(tmp_path)
    _write_wikitext(tmp_path / "bad", "a b\x00 c\n", "a\n", "b\n")
    with pytest.raises(DataError, match=r"wiki.train.tokens:1: NUL"):
        read_wikitext(tmp_path / "bad")
    with pytest.raises(DataError, match="needs root"):
        load_corpus("wikitext")
    with pytest.raises(DataError, match="unknown corpus kind"):
        load_corpus("ptb")


def test_wikitext_through_load_corpus_is_cached(tmp_path):
    _write_wikitext(tmp_path / "wt", "a b a c\n a\n", "a b\n", "c a\n")
    first = load_corpus("wikitext", str(tmp_path / "wt"), cache_dir=str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    second = load_corpus("wikitext", str(tmp_path / "wt"), cache_dir=str(tmp_path / "cache"))
    assert torch.equal(first.train, second.train) and first.vocab == second.vocab


def test_tokenizer_and_vocabulary_rules():
    assert tokenize_text("Use ``json.dumps()``:\n\n=====\n") == [["Use", "``", "json", ".", "dumps", "(", ")", "``", ":"], ["====="]]
    v = Vocabulary.build({"a": 5, "b": 1, "c": 3, EOS: 4}, min_count=2)
    assert v.words == ("a", EOS, "c", UNK) and v.counts[-1] == 1
    capped = Vocabulary.build({"a": 5, "b": 2, "c": 3, EOS: 4}, max_size=4)
    assert len(capped) == 4 and capped.index("b") == capped.index(UNK)


def test_split_by_file_is_fixed():
    keys = [f"library/m{i}.rst.txt" for i in range(400)]
    splits = [split_of(k) for k in keys]
    assert splits == [split_of(k) for k in keys]
    share = {s: splits.count(s) / len(keys) for s in ("train", "valid", "test")}
    assert 0.75 < share["train"] < 0.92 and 0.03 < share["valid"] < 0.14 and 0.03 < share["test"] < 0.14


def test_pydoc_topics_corpus(token_cache):
    c = load_corpus("pydoc_topics", cache_dir=token_cache)
    s = c.summary()
    assert s["train"] > 50_000 and s["valid"] > 1000 and s["test"] > 1000
    assert c.vocab.counts[0] >= c.vocab.counts[-1]
    rows = batchify(c.train, 8)
    assert rows.shape[0] == 8 and torch.equal(rows[1, :5], c.train[rows.shape[1] : rows.shape[1] + 5])


def test_python_docs_corpus_is_wikitext2_scale(tmp_path):
    c = load_corpus("python_docs", cache_dir=str(tmp_path))
    s = c.summary()
    assert 1.5e6 < s["train"] < 3e6 and s["valid"] > 1e5 and s["test"] > 1e5
    assert 10_000 < s["vocab"] < 40_000
    assert c.vocab.words[0] == EOS


def test_missing_docs_are_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="python3.11-doc"):
        load_corpus("python_docs", str(tmp_path / "nowhere"), cache_dir="")
