"""Shared fixtures: tiny training data, and a tiny BERT built locally at random."""

from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from .tiny_data import EN_TRAIN, ZH_TRAIN, en_docs, zh_docs


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT of width 32 with random weights and a small WordPiece
    vocabulary (English words and Chinese characters), saved to a folder that
    transformers and spacy-transformers load by path. Nothing is downloaded."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    words = {w.lower() for text, _ in EN_TRAIN for w in text.split()} | {"the", "is", "a"}
    chars = {c for text, _ in ZH_TRAIN for c in text}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words) + sorted(chars)
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz.,")
    vocab = list(dict.fromkeys(vocab))  # unique, in order
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def en_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.spacy and dev.spacy with the English examples."""
    path = tmp_path_factory.mktemp("en-corpus")
    docs = en_docs(spacy.blank("en"))
    DocBin(docs=docs).to_disk(path / "train.spacy")
    DocBin(docs=docs).to_disk(path / "dev.spacy")
    return path


@pytest.fixture(scope="session")
def zh_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.spacy and dev.spacy with the Chinese examples."""
    path = tmp_path_factory.mktemp("zh-corpus")
    docs = zh_docs(spacy.blank("zh"))
    DocBin(docs=docs).to_disk(path / "train.spacy")
    DocBin(docs=docs).to_disk(path / "dev.spacy")
    return path
